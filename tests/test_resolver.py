"""HeadlessResolver against real DNS servers on loopback: Knot DNS, BIND 9 and ClusterDNS.

Every test runs with both backends. Where time matters the resolver gets a fake clock, so
"no query before expiry" is checked at exact instants instead of by sleeping.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headless_resolver import (
    Endpoint,
    EndpointSet,
    HeadlessResolver,
    InvalidServiceName,
    ResolutionError,
    ResolverClosed,
    ServiceNotFound,
)
from headless_resolver.testing import ClusterDNS
from headless_resolver.testing._model import ServiceSpec
from tests.clocks import FakeClock
from tests.servers import AuthoritativeServer
from tests.waiting import eventually

ServerFactory = Callable[..., AuthoritativeServer]
WEB_PODS = (("10.0.0.1", "web-0"), ("10.0.0.2", "web-1"), ("10.0.0.3", "web-2"))


def web(pods: tuple[tuple[str, str | None], ...] = WEB_PODS, name: str = "web") -> ServiceSpec:
    return ServiceSpec(name, endpoints=pods, ports=(("http", "tcp", 8080), ("dns", "udp", 53)))


def ips(endpoints: EndpointSet) -> set[str]:
    return {e.ip for e in endpoints}


@pytest.fixture(params=["dnspython", "aiodns"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


OpenResolver = Callable[..., HeadlessResolver]


@pytest.fixture
async def open_resolver(backend: str) -> AsyncIterator[OpenResolver]:
    """``open_resolver(server_or_nameserver, **options)``; closed when the test ends."""
    opened: list[HeadlessResolver] = []

    def open_(server: AuthoritativeServer | str, **options: Any) -> HeadlessResolver:
        nameserver = server if isinstance(server, str) else server.nameserver
        options.setdefault("namespace", "default")
        options.setdefault("cluster_domain", "cluster.local")
        options.setdefault("rng", random.Random(7))
        resolver = HeadlessResolver([nameserver], backend=backend, **options)  # type: ignore[arg-type]
        opened.append(resolver)
        return resolver

    yield open_
    for resolver in opened:
        await resolver.aclose()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A UDP port that receives queries and never answers: a nameserver that is down."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture
async def cluster_dns() -> AsyncIterator[ClusterDNS]:
    """ClusterDNS (TTL 5) serving ``web`` with three pods and a named port."""
    async with ClusterDNS(ttl=5) as dns:
        dns.add_service("web", endpoints=WEB_PODS, ports=[("http", "tcp", 8080)])
        yield dns


WEB_FQDN = "web.default.svc.cluster.local."


def resolver_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


# -- what a name resolves to ------------------------------------------------------------------


async def test_service_resolves_to_every_pod_address_v4_and_v6(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    pods = (*WEB_PODS, ("fd00::4", None))
    resolver = open_resolver(make_knot_dns([web(pods)]))

    found = await resolver.resolve("web")

    assert ips(found) == {"10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::4"}
    assert {e.port for e in found} == {None}
    assert {e.hostname for e in found} == {None}
    assert found.name == "web.default.svc.cluster.local."
    assert (found.version, found.stale) == (1, False)
    assert resolver.stats.queries == 2


async def test_every_spelling_of_a_service_shares_one_entry(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(make_knot_dns([web()]))
    first = await resolver.resolve("web.default.svc.cluster.local.")
    for spelling in ("web", "web.default.svc", "WEB.default.svc.cluster.local", "web.default"):
        assert await resolver.resolve(spelling) is first
    # "web.default" first asked web.default.default.svc.cluster.local (a pod reading): NXDOMAIN.
    assert resolver.stats.queries == 2 + 2


async def test_srv_gives_ports_pod_hostnames_and_weights(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(make_knot_dns([web()]))

    http = await resolver.resolve("web", port="http")
    dns_port = await resolver.resolve("_dns._udp.web.default.svc.cluster.local.")

    assert set(http) == {Endpoint(ip, 8080, host) for ip, host in WEB_PODS}
    assert {(e.priority, e.weight) for e in http} == {(0, 33)}
    assert {e.port for e in dns_port} == {53}
    assert resolver.stats.queries == 2  # glue in the additional section: no target lookups


async def test_per_pod_names_resolve_to_one_endpoint(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(make_knot_dns([web()]))
    for spelling in ("web-1.web", "web-1.web.default", "web-1.web.default.svc.cluster.local."):
        found = await resolver.resolve(spelling)
        assert list(found) == [Endpoint("10.0.0.2", None, "web-1")]


async def test_two_label_name_remembers_which_reading_answered(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    knot = make_knot_dns([ServiceSpec("api", "shop", endpoints=(("10.1.0.1", None),))])
    clock = FakeClock()
    resolver = open_resolver(knot, clock=clock, refresh_ahead=None)

    assert ips(await resolver.resolve("api.shop")) == {"10.1.0.1"}
    assert resolver.stats.queries == 4  # api.shop.default.svc... (NXDOMAIN), then api.shop.svc...
    clock.advance(5)
    await resolver.resolve("api.shop")
    assert resolver.stats.queries == 6  # from now on only the reading that answered


async def test_int_port_is_set_on_each_address(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(make_knot_dns([web()]))
    found = await resolver.resolve("web", port=8443)
    assert {e.netloc() for e in found} == {f"{ip}:8443" for ip, _ in WEB_PODS}


async def test_missing_service_and_missing_port_raise_service_not_found(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(make_knot_dns([web()]))
    with pytest.raises(ServiceNotFound, match="NXDOMAIN") as missing:
        await resolver.resolve("nope")
    assert missing.value.name == "nope.default.svc.cluster.local."
    with pytest.raises(ServiceNotFound, match="port 'grpc'"):
        await resolver.resolve("web", port="grpc")


async def test_invalid_names_fail_before_any_query(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(make_knot_dns([web()]))
    for bad in ("", "web_1", "a" * 64, "web.example.com."):
        with pytest.raises(InvalidServiceName):
            await resolver.resolve(bad)
    with pytest.raises(InvalidServiceName):
        await resolver.resolve(["web"])  # type: ignore[arg-type]
    assert resolver.stats.queries == 0


# -- TTLs on a fake clock ---------------------------------------------------------------------


async def test_ttl_is_honoured_no_query_before_expiry(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    clock = FakeClock()
    resolver = open_resolver(make_knot_dns([web()], ttl=5), clock=clock, refresh_ahead=None)
    first = await resolver.resolve("web")
    clock.advance(4.99)
    assert await resolver.resolve("web") is first
    assert resolver.stats.queries == 2
    assert resolver.stats.cache_hits == 1
    clock.advance(0.01)
    again = await resolver.resolve("web")
    assert resolver.stats.queries == 4
    assert again.version == first.version  # same content, same version, new expiry
    assert again.expires_at == clock.now + 5


@pytest.mark.parametrize(
    ("server_ttl", "options", "lives"),
    [(1, {"min_ttl": 3.0}, 3.0), (30, {"max_ttl": 2.0}, 2.0)],
)
async def test_ttl_is_clamped(
    make_knot_dns: ServerFactory,
    open_resolver: OpenResolver,
    server_ttl: int,
    options: dict[str, float],
    lives: float,
) -> None:
    clock = FakeClock()
    knot = make_knot_dns([web()], ttl=server_ttl)
    resolver = open_resolver(knot, clock=clock, refresh_ahead=None, **options)
    await resolver.resolve("web")
    clock.advance(lives - 0.01)
    await resolver.resolve("web")
    assert resolver.stats.queries == 2
    clock.advance(0.01)
    await resolver.resolve("web")
    assert resolver.stats.queries == 4


@pytest.mark.parametrize("cap", [30.0, 2.0])
async def test_negative_answer_is_cached_for_the_soa_ttl_capped(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver, cap: float
) -> None:
    lives = min(5.0, cap)
    clock = FakeClock()
    knot = make_knot_dns([web()], ttl=5)  # SOA MINIMUM = 5
    resolver = open_resolver(knot, clock=clock, negative_ttl_cap=cap)
    with pytest.raises(ServiceNotFound):
        await resolver.resolve("db")
    clock.advance(lives - 0.01)
    with pytest.raises(ServiceNotFound):
        await resolver.resolve("db")
    assert (resolver.stats.queries, resolver.stats.negative_hits) == (2, 1)
    knot.set_service(ServiceSpec("db", endpoints=(("10.2.0.1", None),)))
    clock.advance(0.01)
    assert ips(await resolver.resolve("db")) == {"10.2.0.1"}
    assert resolver.stats.queries == 4


async def test_refresh_due_on_a_hit_answers_from_cache_and_refreshes_in_background(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    clock = FakeClock()
    resolver = open_resolver(make_knot_dns([web()], ttl=10), clock=clock)
    first = await resolver.resolve("web")
    clock.advance(9.0)  # past 80 % +- 10 %: refresh due, answer still fresh
    assert await resolver.resolve("web") is first
    await eventually(lambda: resolver.stats.queries == 4 and resolver.peek("web") is not first)
    clock.advance(2.0)  # past the first answer's expiry
    assert (await resolver.resolve("web")).expires_at == 1000.0 + 9.0 + 10.0
    assert resolver.stats.queries == 4
    assert resolver.stats.refreshes == 1


async def test_a_caller_after_expiry_gets_the_stale_set_while_a_slow_refresh_is_out(
    cluster_dns: ClusterDNS, open_resolver: OpenResolver
) -> None:
    clock = FakeClock()
    resolver = open_resolver(cluster_dns.nameserver, clock=clock, timeout=30.0)
    first = await resolver.resolve("web")
    cluster_dns.delay = 30.0  # DNS stops answering in time, without failing
    clock.advance(4.5)  # refresh due: answered from cache, refresh starts in the background
    assert await resolver.resolve("web") is first
    await eventually(lambda: cluster_dns.query_count(WEB_FQDN, "A") == 2)
    clock.advance(1.0)  # past expiry, the refresh still out

    async with asyncio.timeout(5.0):  # far less than the 30 s the refresh will take
        served = await resolver.resolve("web")

    assert served.stale
    assert served.members == first.members
    assert cluster_dns.query_count(WEB_FQDN, "A") == 2


async def expired_idle_name(
    cluster_dns: ClusterDNS,
    open_resolver: OpenResolver,
    stale_answer_timeout: float | None,
    *,
    dns_delay: float,
) -> tuple[HeadlessResolver, EndpointSet]:
    """A resolver whose "web" has expired with no refresh ahead, and DNS now ``dns_delay`` slow."""
    clock = FakeClock()
    resolver = open_resolver(
        cluster_dns.nameserver,
        clock=clock,
        timeout=30.0,
        refresh_ahead=None,
        stale_answer_timeout=stale_answer_timeout,
    )
    first = await resolver.resolve("web")
    cluster_dns.delay = dns_delay  # slow, not failing
    clock.advance(6.0)  # past the TTL of 5
    return resolver, first


async def test_a_cold_caller_after_expiry_waits_stale_answer_timeout_then_gets_the_stale_set(
    cluster_dns: ClusterDNS, open_resolver: OpenResolver
) -> None:
    resolver, first = await expired_idle_name(cluster_dns, open_resolver, 0.05, dns_delay=3.0)

    async with asyncio.timeout(2.0):  # far less than the refresh takes
        served = await resolver.resolve("web")
    assert served.stale
    assert served.members == first.members

    # The refresh the caller started lives on, and answers later callers fresh.
    await eventually(lambda: resolver.peek("web") is not None)
    assert not (await resolver.resolve("web")).stale
    assert cluster_dns.query_count(WEB_FQDN, "A") == 2
    assert resolver.stats.stale_served == 1


async def test_without_stale_answer_timeout_a_cold_caller_waits_for_the_refresh(
    cluster_dns: ClusterDNS, open_resolver: OpenResolver
) -> None:
    resolver, _ = await expired_idle_name(cluster_dns, open_resolver, None, dns_delay=0.3)

    served = await resolver.resolve("web")

    assert not served.stale
    assert cluster_dns.query_count(WEB_FQDN, "A") == 2
    assert resolver.stats.stale_served == 0


# -- refresh-ahead and change on a real clock -------------------------------------------------


async def test_refresh_ahead_keeps_resolve_off_the_network(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    # Refresh at half the 1 s TTL: half a second of slack for a loaded test machine.
    resolver = open_resolver(make_knot_dns([web()], ttl=1), refresh_ahead=0.5)
    await resolver.resolve("web")
    calls = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.6
    while loop.time() < deadline:
        found = await resolver.resolve("web")
        calls += 1
        assert not found.stale
        await asyncio.sleep(0.02)
    assert resolver.stats.cache_hits == calls  # not one call waited for DNS
    assert resolver.stats.refreshes >= 2
    assert resolver.stats.queries == 2 + 2 * resolver.stats.refreshes


def resolver_without_fixture(
    server: AuthoritativeServer, backend: str, **options: Any
) -> HeadlessResolver:
    """For tests that run their own event loops: ``open_resolver`` needs pytest's."""
    return HeadlessResolver(
        [server.nameserver],
        backend=backend,  # type: ignore[arg-type]
        namespace="default",
        cluster_domain="cluster.local",
        rng=random.Random(7),
        **options,
    )


def test_one_resolver_refreshes_ahead_on_each_of_two_event_loops_in_turn(
    make_knot_dns: ServerFactory, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Two asyncio.run() calls in turn, as scripts and tests do: the second loop takes over the
    # refreshes, and nothing of the first loop's (events, tasks) is used from the second.
    knot = make_knot_dns([web()], ttl=1)
    resolver = resolver_without_fixture(knot, backend, refresh_ahead=0.5)

    async def first_run() -> None:
        await resolver.resolve("web")
        await resolver.resolve("web", port="http")
        await asyncio.sleep(0.1)  # its refreshers now wait on this loop

    async def second_run() -> None:
        await asyncio.sleep(1.1)  # past the TTL: the next resolve() goes the slow way
        await resolver.resolve("web")
        watch = resolver.watch("web", port="http")
        assert len(await anext(watch)) == 3
        knot.set_service(web(WEB_PODS[:2]))
        async with asyncio.timeout(3.0):
            assert len(await anext(watch)) == 2  # the watcher woke on this loop
        refreshes, hits, calls = resolver.stats.refreshes, resolver.stats.cache_hits, 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.6
        while loop.time() < deadline:
            found = await resolver.resolve("web")
            calls += 1
            await asyncio.sleep(0.02)
        assert resolver.stats.cache_hits - hits == calls  # refreshed ahead, on this loop
        assert len(found) == 2
        assert resolver.stats.refreshes - refreshes >= 2
        await watch.aclose()
        await resolver.aclose()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        asyncio.run(first_run())
        asyncio.run(second_run())
        gc.collect()  # an unretrieved task exception is reported when the task is collected
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert resolver.stats.errors == 0


def test_a_resolver_serves_a_second_loop_while_the_first_still_runs(
    make_knot_dns: ServerFactory, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Two threads, each with its own running loop (two SyncHeadlessTransports sharing one
    # resolver do this): the first loop keeps the refreshes, the second is served beside it.
    knot = make_knot_dns([web()], ttl=1)
    resolver = resolver_without_fixture(knot, backend)
    owner = asyncio.new_event_loop()
    thread = threading.Thread(target=owner.run_forever)
    thread.start()

    async def elsewhere() -> None:
        assert len(await resolver.resolve("web", port="http")) == 3  # never cached before
        watch = resolver.watch("web")
        assert len(await anext(watch)) == 3
        knot.set_service(web(WEB_PODS[:1]))
        async with asyncio.timeout(4.0):
            assert len(await anext(watch)) == 1
        await watch.aclose()

    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            asyncio.run_coroutine_threadsafe(resolver.resolve("web"), owner).result(5)
            asyncio.run(elsewhere())
            asyncio.run_coroutine_threadsafe(resolver.aclose(), owner).result(5)
            gc.collect()
    finally:
        owner.call_soon_threadsafe(owner.stop)
        thread.join()
        owner.close()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_scale_up_and_down_visible_within_ttl_plus_one_second(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    knot = make_knot_dns([web(WEB_PODS[:1])], ttl=1)
    resolver = open_resolver(knot)
    assert len(await resolver.resolve("web")) == 1
    loop = asyncio.get_running_loop()
    for pods in (WEB_PODS, WEB_PODS[:2]):
        knot.set_service(web(pods))
        changed_at = loop.time()
        while len(await resolver.resolve("web")) != len(pods):
            assert loop.time() - changed_at < 2.0
            await asyncio.sleep(0.02)


async def test_scale_to_zero_empties_the_set_only_after_the_grace(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    knot = make_knot_dns([web()], ttl=1)
    resolver = open_resolver(knot, negative_grace=1.5, min_ttl=0.2)
    await resolver.resolve("web")
    knot.set_service(web(()))  # no ready pod: NXDOMAIN
    loop = asyncio.get_running_loop()
    start = loop.time()
    seen_stale = False
    while True:
        try:
            found = await resolver.resolve("web")
        except ServiceNotFound:
            break
        assert len(found) == 3
        seen_stale = seen_stale or found.stale
        assert loop.time() - start < 5.0
        await asyncio.sleep(0.05)
    assert seen_stale  # the last good set was kept, flagged, during the grace


async def test_spurious_nxdomain_inside_the_grace_changes_nothing(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    clock = FakeClock()
    knot = make_knot_dns([web()], ttl=5)
    resolver = open_resolver(knot, clock=clock, refresh_ahead=None, negative_grace=10.0)
    first = await resolver.resolve("web")
    knot.remove_service("web")
    clock.advance(5)
    during = await resolver.resolve("web")
    assert (len(during), during.stale, during.version) == (3, True, first.version)
    knot.set_service(web())
    clock.advance(5)
    assert (await resolver.resolve("web")).stale  # re-check due: still served, in background
    await eventually(lambda: not resolver.peek("web").stale)  # type: ignore[union-attr]
    after = await resolver.resolve("web")
    assert (after.stale, after.version) == (False, first.version)


# -- failures ---------------------------------------------------------------------------------


async def test_serve_stale_through_a_server_outage(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    knot = make_knot_dns([web()], ttl=5)
    resolver = open_resolver(
        knot, clock=clock, timeout=0.2, attempts=2, stale_ttl=60.0, failure_backoff=0.05
    )
    first = await resolver.resolve("web")
    knot.stop()
    clock.advance(5)
    with caplog.at_level(logging.WARNING, logger="headless_resolver"):
        stale = await resolver.resolve("web")
    assert (stale.stale, stale.version, ips(stale)) == (True, first.version, ips(first))
    assert "serving the last good set" in caplog.text
    assert (await resolver.resolve("web")).stale
    assert resolver.stats.stale_served == 2
    knot.start()
    await eventually(lambda: resolver.stats.errors > 0 and not resolver.peek("web").stale)  # type: ignore[union-attr]
    clock.advance(30)
    recovered = await resolver.resolve("web")
    assert (recovered.stale, recovered.version) == (False, first.version)


async def test_stale_set_is_dropped_after_stale_ttl(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    clock = FakeClock()
    knot = make_knot_dns([web()], ttl=5)
    resolver = open_resolver(knot, clock=clock, timeout=0.2, attempts=1, stale_ttl=20.0)
    await resolver.resolve("web")
    knot.stop()
    clock.advance(5)
    assert (await resolver.resolve("web")).stale
    clock.advance(20)
    with pytest.raises(ResolutionError):
        await resolver.resolve("web")


async def test_dead_nameserver_gives_resolution_error_after_the_attempts(
    black_hole: str, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(black_hole, timeout=0.2, attempts=3)
    async with asyncio.timeout(5):  # never a hang
        with pytest.raises(ResolutionError):
            await resolver.resolve("web")
    assert resolver.stats.queries == 3 * 2
    assert resolver.stats.errors == 1
    assert resolver_tasks() == []


async def test_cancelled_caller_leaves_no_task_behind(
    black_hole: str, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(black_hole, timeout=1.0, attempts=3)
    caller = asyncio.create_task(resolver.resolve("web"))
    await eventually(lambda: resolver.stats.queries == 2)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await eventually(lambda: resolver_tasks() == [])


async def test_aclose_stops_refreshes_and_watchers(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(make_knot_dns([web()], ttl=1))
    await resolver.resolve("web", port="http")
    watch = resolver.watch("web")
    assert len(await anext(watch)) == 3
    waiting: asyncio.Future[EndpointSet] = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.05)
    assert len(resolver_tasks()) >= 3  # two refreshers and the watcher
    await resolver.aclose()
    with pytest.raises(StopAsyncIteration):
        await waiting
    assert resolver_tasks() == []


@pytest.mark.parametrize(
    "spelling",
    ["web", "web.default", "web.default.svc", WEB_FQDN, "WEB.Default.svc.cluster.local", "other"],
)
async def test_a_closed_resolver_raises_its_own_error_under_every_spelling(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver, spelling: str
) -> None:
    resolver = open_resolver(make_knot_dns([web()]))
    for cached in ("web", WEB_FQDN):  # in the cache under two spellings, both fresh
        await resolver.resolve(cached)
        await resolver.resolve(cached, port="http")
    await resolver.aclose()

    for port in (None, "http", 8080):
        with pytest.raises(ResolverClosed) as closed:
            await resolver.resolve(spelling, port=port)
        assert not isinstance(closed.value, RuntimeError)
        with pytest.raises(ResolverClosed):
            resolver.peek(spelling, port=port)
        with pytest.raises(ResolverClosed):
            await anext(resolver.watch(spelling, port=port))


async def test_a_unicode_name_is_refused_before_any_packet(open_resolver: OpenResolver) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        resolver = open_resolver(f"127.0.0.1:{sink.getsockname()[1]}")
        for port in (None, "http", 8080):
            with pytest.raises(InvalidServiceName, match="other than a-z"):
                await resolver.resolve("wéb", port=port)
            with pytest.raises(InvalidServiceName):
                resolver.peek("wéb.default", port=port)
            with pytest.raises(InvalidServiceName):
                await anext(resolver.watch("web-0.wéb", port=port))
        await asyncio.sleep(0.1)
        with pytest.raises(BlockingIOError):
            sink.recv(512)  # not one query arrived
    assert resolver.stats.queries == 0


# -- watch ------------------------------------------------------------------------------------


async def test_watch_yields_current_then_each_change_and_watchers_share_one_refresh(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    knot = make_knot_dns([web(WEB_PODS[:1])], ttl=1)
    resolver = open_resolver(knot)
    watches = [resolver.watch("web") for _ in range(5)]
    firsts = [await anext(w) for w in watches]
    assert {len(s) for s in firsts} == {1}
    refreshers = [t for t in resolver_tasks() if "fresh" in t.get_name()]
    assert len(refreshers) == 1
    knot.set_service(web(WEB_PODS))
    async with asyncio.timeout(5):
        seconds = [await anext(w) for w in watches]
    assert {len(s) for s in seconds} == {3}
    assert {s.version for s in seconds} == {firsts[0].version + 1}
    for w in watches:
        await w.aclose()


async def test_watch_of_a_missing_service_starts_empty_and_sees_it_appear(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    knot = make_knot_dns([], ttl=1)
    resolver = open_resolver(knot, min_ttl=0.2)
    watch = resolver.watch("web")
    assert len(await anext(watch)) == 0
    knot.set_service(web())
    async with asyncio.timeout(5):
        appeared = await anext(watch)
    assert len(appeared) == 3
    await watch.aclose()


# -- no I/O helpers ---------------------------------------------------------------------------


async def test_peek_never_queries(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(make_knot_dns([web()]))
    assert resolver.peek("web") is None
    found = await resolver.resolve("web")
    assert resolver.peek("web") is found
    assert resolver.peek("web.default.svc.cluster.local") is found
    assert resolver.stats.queries == 2


async def test_cluster_names_and_namespace(open_resolver: OpenResolver, black_hole: str) -> None:
    resolver = open_resolver(black_hole, namespace="shop", cluster_domain="k8s.example")
    assert (resolver.namespace, resolver.cluster_domain) == ("shop", "k8s.example")
    assert resolver.is_cluster_name("web.shop.svc.k8s.example.")
    assert not resolver.is_cluster_name("example.com")
    assert resolver.parse("web").candidates[0].fqdn == "web.shop.svc.k8s.example."


# -- size -------------------------------------------------------------------------------------


def many_pods(count: int) -> ServiceSpec:
    return ServiceSpec(
        "big", endpoints=tuple(f"10.9.{i // 250}.{i % 250 + 1}" for i in range(count))
    )


async def test_two_thousand_pod_service(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(make_knot_dns([many_pods(2000)]))
    found = await resolver.resolve("big")
    assert len(found) == 2000
    assert len(ips(found)) == 2000


async def test_srv_targets_without_glue_are_looked_up(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    # 1,000 SRV records fill a TCP answer: Knot sends glue for only some targets.
    spec = many_pods(1000)
    knot = make_knot_dns(
        [ServiceSpec("big", endpoints=spec.endpoints, ports=(("http", "tcp", 80),))]
    )
    resolver = open_resolver(knot)
    found = await resolver.resolve("big", port="http")
    assert len(found) == 1000
    assert {e.ip for e in found} == {e.ip for e in spec.endpoints}
    assert {e.hostname for e in found} == {e.dns_label for e in spec.endpoints}
    assert resolver.stats.queries > 1  # the SRV query, then A/AAAA for targets without glue


async def test_answer_truncated_even_over_tcp_keeps_what_arrived(
    open_resolver: OpenResolver, caplog: pytest.LogCaptureFixture
) -> None:
    huge = ServiceSpec(
        "huge", endpoints=tuple(f"10.{i // 250}.0.{i % 250 + 1}" for i in range(4500))
    )
    async with ClusterDNS(ttl=5) as dns:
        dns.set_services([huge])
        resolver = open_resolver(dns.nameserver)
        with caplog.at_level(logging.WARNING, logger="headless_resolver"):
            found = await resolver.resolve("huge")
    assert 4000 < len(found) < 4500
    assert ips(found) <= {e.ip for e in huge.endpoints}
    assert "truncated even over TCP" in caplog.text


async def test_truncated_answer_with_no_records_is_an_error_not_an_empty_service(
    make_bind_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    huge = ServiceSpec(
        "huge", endpoints=tuple(f"10.{i // 250}.0.{i % 250 + 1}" for i in range(4500))
    )
    resolver = open_resolver(make_bind_dns([huge]), attempts=1)
    with pytest.raises(ResolutionError, match="too large even over TCP") as failed:
        await resolver.resolve("huge")
    assert (failed.value.reason, failed.value.rcode) == ("TRUNCATED", None)


# -- single flight and failures, counted at the server (ClusterDNS) -----------------------------


async def test_a_thousand_concurrent_cold_lookups_send_one_query_per_type(
    cluster_dns: ClusterDNS, open_resolver: OpenResolver
) -> None:
    resolver = open_resolver(cluster_dns.nameserver)
    results = await asyncio.gather(*(resolver.resolve("web") for _ in range(1000)))
    assert all(r is results[0] for r in results)
    assert len(results[0]) == 3
    assert cluster_dns.query_count(WEB_FQDN, "A") == 1
    assert cluster_dns.query_count(WEB_FQDN, "AAAA") == 1


async def test_cancelling_one_caller_leaves_the_shared_query_to_the_others(
    cluster_dns: ClusterDNS, open_resolver: OpenResolver
) -> None:
    cluster_dns.delay = 0.3
    resolver = open_resolver(cluster_dns.nameserver)
    leaving = asyncio.create_task(resolver.resolve("web"))
    staying = asyncio.create_task(resolver.resolve("web"))
    await eventually(lambda: cluster_dns.query_count(WEB_FQDN, "A") == 1)
    leaving.cancel()
    assert len(await staying) == 3
    assert leaving.cancelled()
    assert cluster_dns.query_count(WEB_FQDN, "A") == 1
    assert cluster_dns.query_count(WEB_FQDN, "AAAA") == 1


async def test_servfail_is_retried_then_raised_with_its_rcode(
    cluster_dns: ClusterDNS, open_resolver: OpenResolver
) -> None:
    cluster_dns.servfail = True
    resolver = open_resolver(cluster_dns.nameserver, attempts=3)
    with pytest.raises(ResolutionError) as failed:
        await resolver.resolve("web")
    assert (failed.value.reason, failed.value.rcode) == ("RCODE", "SERVFAIL")
    counts = {cluster_dns.query_count(WEB_FQDN, t) for t in ("A", "AAAA")}
    assert max(counts) == 3
    assert resolver.stats.errors == 1


async def test_servfail_on_refresh_serves_stale_then_recovers(
    cluster_dns: ClusterDNS, open_resolver: OpenResolver
) -> None:
    clock = FakeClock()
    resolver = open_resolver(cluster_dns.nameserver, clock=clock, attempts=1, failure_backoff=0.05)
    first = await resolver.resolve("web")
    cluster_dns.servfail = True
    clock.advance(5)
    assert (await resolver.resolve("web")).stale
    cluster_dns.servfail = False
    await eventually(lambda: not resolver.peek("web").stale)  # type: ignore[union-attr]
    assert (await resolver.resolve("web")).version == first.version


# -- lifecycle of entries ---------------------------------------------------------------------


async def test_unused_names_stop_being_refreshed(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    clock = FakeClock()
    resolver = open_resolver(make_knot_dns([web()], ttl=1), clock=clock, idle_after=30.0)
    await resolver.resolve("web")
    clock.advance(31)  # unused for longer than idle_after when the refresh comes due
    await eventually(lambda: not [t for t in resolver_tasks() if "fresh" in t.get_name()])
    assert (resolver.stats.refreshes, resolver.stats.queries) == (0, 2)
    await resolver.resolve("web")  # used again: expired, so this one asks DNS
    assert resolver.stats.queries == 4
    assert [t for t in resolver_tasks() if "fresh" in t.get_name()]


async def test_entries_are_bounded(
    make_knot_dns: ServerFactory, open_resolver: OpenResolver
) -> None:
    knot = make_knot_dns([web(name=n) for n in ("a", "b", "c")])
    resolver = open_resolver(knot, max_entries=2)
    for name in ("a", "b", "c"):
        await resolver.resolve(name)
    assert resolver.stats.queries == 6
    await resolver.resolve("c")
    assert resolver.stats.queries == 6
    await resolver.resolve("a")  # the least recently refreshed entry was dropped
    assert resolver.stats.queries == 8


async def test_namespace_and_nameservers_come_from_resolv_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\nsearch shop.svc.k8s.example svc.k8s.example\n")
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    async with HeadlessResolver(resolv_conf=conf) as resolver:
        assert (resolver.namespace, resolver.cluster_domain) == ("shop", "k8s.example")
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    async with HeadlessResolver(resolv_conf=conf) as resolver:
        assert (resolver.namespace, resolver.cluster_domain) == ("ops", "k8s.example")
    with pytest.raises(ValueError, match="no nameservers"):
        HeadlessResolver(resolv_conf=tmp_path / "missing")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"attempts": 0}, "attempts"),
        ({"timeout": 0}, "timeout"),
        ({"max_entries": 0}, "max_entries"),
        ({"min_ttl": 5.0, "max_ttl": 1.0}, "min_ttl"),
        ({"refresh_ahead": 1.0}, "refresh_ahead"),
        ({"backend": "bind"}, "backend"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        HeadlessResolver(["127.0.0.1:53"], **options)


async def test_ipv6_nameserver_and_ipv6_only_pods(open_resolver: OpenResolver) -> None:
    async with ClusterDNS(host="::1") as dns:
        dns.add_service("web", endpoints=[("fd00::1", "web-0"), ("fd00::2", "web-1")])
        resolver = open_resolver(dns.nameserver)  # "[::1]:PORT"
        found = await resolver.resolve("web")
        pod = await resolver.resolve("web-1.web")
    assert ips(found) == {"fd00::1", "fd00::2"}
    assert all(e.is_ipv6 for e in found)
    assert list(pod) == [Endpoint("fd00::2", None, "web-1")]
