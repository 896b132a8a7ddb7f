"""Reliability: DNS outages and lies, pods dying under load, TLS and routing, cancellation.

Everything runs against real sockets: a cluster DNS (or a scripted authority) on loopback and
HTTP pods on their own 127.0.0.x addresses. Time that only matters to TTLs and ejections is a
fake clock, so outages "longer than the TTL" take milliseconds.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import dns.rcode
import httpx
import pytest

from headless_resolver import (
    Endpoint,
    HeadlessResolver,
    HeadlessTransport,
    PassiveHealth,
    ResolutionError,
    RoundRobin,
    ServiceNotFound,
    Verdict,
)
from headless_resolver.testing import ClusterDNS, LocalCluster, PodServer
from tests.clocks import FakeClock
from tests.leaks import open_fds, pending_tasks
from tests.servers.hostile import HostileDns, Reply, response
from tests.waiting import eventually

pytestmark = pytest.mark.usefixtures("pod_engine")

WEB = "web.default.svc.cluster.local"
URL = f"http://{WEB}:8080/"
GRACE = 10.0
SETTLE = 10.0
"""Seconds to wait for an effect that has no event to await (a background refresh, a count)."""


def client(transport: HeadlessTransport, **options: Any) -> httpx.AsyncClient:
    options.setdefault("timeout", 5.0)
    return httpx.AsyncClient(transport=transport, trust_env=False, **options)


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    async with LocalCluster(ttl=1) as cluster:
        yield cluster


# -- DNS outage --------------------------------------------------------------------------------


async def test_a_dns_outage_longer_than_the_ttl_fails_no_request(
    cluster: LocalCluster, clock: FakeClock
) -> None:
    pods = await cluster.add_service("web", pods=3)
    ips = {pod.ip for pod in pods}
    resolver = HeadlessResolver(
        [cluster.nameserver], clock=clock, timeout=0.5, attempts=1, failure_backoff=0.05
    )
    async with resolver, client(HeadlessTransport(resolver, RoundRobin())) as http:

        async def traffic(requests: int) -> list[int]:
            responses = await asyncio.gather(*(http.get(URL) for _ in range(requests)))
            return [r.status_code for r in responses]

        assert await traffic(30) == [200] * 30
        await cluster.dns.stop()
        for _ in range(10):  # ten TTLs without DNS
            clock.now += 1.0
            assert await traffic(20) == [200] * 20
        during = resolver.peek(WEB)
        assert during is not None
        assert during.stale
        assert {e.ip for e in during} == ips
        assert resolver.stats.stale_served > 0
        assert resolver.stats.errors > 0

        before = cluster.dns.query_count(WEB, "A")
        await cluster.dns.start()
        clock.now += 1.0
        assert await traffic(5) == [200] * 5
        await eventually(lambda: not resolver.peek(WEB).stale, within=SETTLE)  # type: ignore[union-attr]
        assert cluster.dns.query_count(WEB, "A") - before == 1
        after = resolver.peek(WEB)
        assert after is not None
        assert {e.ip for e in after} == ips


@pytest.mark.slow
async def test_after_an_outage_the_set_is_fresh_again_within_about_a_ttl() -> None:
    """Refreshes failing fast (the server is down) back off, but never past the TTL: however
    long the outage, the stale set is replaced about a TTL after DNS is back."""
    async with ClusterDNS(ttl=1) as cluster_dns:
        cluster_dns.add_service("web")
        cluster_dns.set_endpoints("web", endpoints=[("127.0.0.41", "web-0")])
        resolver = HeadlessResolver(
            [cluster_dns.nameserver], timeout=0.5, attempts=1, failure_backoff=0.02
        )
        async with resolver:
            await resolver.resolve(WEB)
            await cluster_dns.stop()
            # Five seconds of refused queries: unbounded, the backoff would reach 0.02 * 2**8 s.
            await asyncio.sleep(5.0)
            assert resolver.stats.errors >= 6
            assert (await resolver.resolve(WEB)).stale

            cluster_dns.set_endpoints("web", endpoints=[("127.0.0.42", "web-1")])
            await cluster_dns.start()

            def replaced() -> bool:
                current = resolver.peek(WEB)
                return current is not None and [e.ip for e in current] == ["127.0.0.42"]

            await eventually(replaced, within=2.5)


# -- transient negative answers ------------------------------------------------------------------


class Authority:
    """A scripted authority for ``web``: good answers, or what ``mode`` says."""

    def __init__(self) -> None:
        self.mode = "good"

    def script(self, query: dns.message.Message, over_tcp: bool) -> Reply:
        name = query.question[0].name.to_text()
        if self.mode == "servfail":
            failed = dns.message.make_response(query)
            failed.set_rcode(dns.rcode.SERVFAIL)
            return Reply((failed.to_wire(),))
        if self.mode == "nxdomain":
            missing = dns.message.make_response(query)
            missing.set_rcode(dns.rcode.NXDOMAIN)
            zone = "cluster.local."
            soa = f"ns.dns.{zone} hostmaster.{zone} 1 7200 1800 86400 5"
            missing.authority.append(dns.rrset.from_text(zone, 5, "IN", "SOA", soa))
            return Reply((missing.to_wire(),))
        if self.mode == "empty" or query.question[0].rdtype != dns.rdatatype.A:
            return Reply((response(query),))  # NOERROR, no records, the SOA
        return Reply((response(query, [(name, "A", ["10.0.0.1", "10.0.0.2"])], ttl=5),))


def graceful_resolver(server: HostileDns, clock: FakeClock) -> HeadlessResolver:
    """One attempt per lookup, and ``GRACE`` seconds of the last good set after DNS says no."""
    return HeadlessResolver(
        [server.nameserver], clock=clock, attempts=1, timeout=0.5, negative_grace=GRACE
    )


@pytest.mark.parametrize("failure", ["nxdomain", "empty", "servfail"])
async def test_transient_negative_or_failed_answers_keep_the_last_good_set(
    clock: FakeClock, failure: str
) -> None:
    authority = Authority()
    async with HostileDns(authority.script) as server:
        resolver = graceful_resolver(server, clock)
        async with resolver:
            good = await resolver.resolve(WEB)
            assert {e.ip for e in good} == {"10.0.0.1", "10.0.0.2"}
            authority.mode = failure
            started = len(server.queries)
            clock.now += 6.0  # past the TTL: the next lookup asks DNS, which says no
            for _ in range(int(GRACE)):  # through the grace, up to a second before its end
                during = await resolver.resolve(WEB)
                assert {e.ip for e in during} == {"10.0.0.1", "10.0.0.2"}
                assert during.stale
                clock.now += 0.9
            assert len(server.queries) > started  # DNS was asked, and said no
            authority.mode = "good"
            clock.now += 6.0
            await resolver.resolve(WEB)
            await eventually(lambda: not resolver.peek(WEB).stale, within=SETTLE)  # type: ignore[union-attr]


@pytest.mark.parametrize("failure", ["nxdomain", "empty"])
async def test_a_persistent_negative_answer_fails_fast_with_service_not_found(
    clock: FakeClock, failure: str
) -> None:
    authority = Authority()
    async with HostileDns(authority.script) as server:
        resolver = graceful_resolver(server, clock)
        async with resolver, client(HeadlessTransport(resolver)) as http:
            await resolver.resolve(WEB)
            authority.mode = failure
            clock.now += GRACE + 6.0

            async def resolve_until_it_fails() -> None:
                async with asyncio.timeout(5.0):  # a bound against hanging, not a speed test
                    while True:
                        await resolver.resolve(WEB)
                        clock.now += 1.0

            with pytest.raises(ServiceNotFound):
                await resolve_until_it_fails()
            queries = len(server.queries)
            for _ in range(20):
                with pytest.raises(httpx.ConnectError) as failed:
                    await http.get(URL)
                assert isinstance(failed.value.__cause__, ServiceNotFound)
            assert len(server.queries) - queries <= 2  # the negative answer is cached


# -- pods dying under load ---------------------------------------------------------------------


class Spy:
    """Records, in order, every pick of the strategy and every outcome its health is told."""

    def __init__(self, strategy: RoundRobin) -> None:
        self.events: list[tuple[str, Endpoint, bool]] = []
        pick, record = strategy.pick, strategy.health.record

        def spied_pick(*args: Any, **kwargs: Any) -> Endpoint:
            endpoint = pick(*args, **kwargs)
            self.events.append(("pick", endpoint, True))
            return endpoint

        def spied_record(endpoint: Endpoint, verdict: Verdict) -> None:
            self.events.append(("outcome", endpoint, bool(verdict)))
            record(endpoint, verdict)

        strategy.pick = spied_pick  # type: ignore[method-assign]
        strategy.health.record = spied_record  # type: ignore[method-assign]

    def picks_after_first_failure(self, ip: str) -> int:
        failed = next(i for i, (kind, ep, ok) in enumerate(self.events) if ep.ip == ip and not ok)
        return sum(1 for kind, ep, _ in self.events[failed:] if kind == "pick" and ep.ip == ip)


async def test_a_pod_dying_under_50_concurrent_clients_fails_no_get_and_resends_no_post(
    cluster: LocalCluster, clock: FakeClock
) -> None:
    web = await cluster.add_service("web", pods=3)
    orders = await cluster.add_service("orders", pods=3)
    for pod in web + orders:
        pod.latency = 0.002
    orders[0].latency = 0.5  # POSTs sit on the pod that will die
    health = PassiveHealth(clock=clock, base_ejection=30.0)
    strategy = RoundRobin(health=health)
    spy = Spy(strategy)
    async with (
        HeadlessResolver([cluster.nameserver]) as resolver,
        client(HeadlessTransport(resolver, strategy)) as http,
    ):
        stop = asyncio.Event()
        statuses: list[int] = []

        async def get_until_stopped() -> None:
            while not stop.is_set():
                statuses.append((await http.get(URL)).status_code)

        async def post(n: int) -> int | BaseException:
            url = "http://orders.default.svc.cluster.local:8080/"
            try:
                return (await http.post(url, content=b"order %d" % n)).status_code
            except httpx.TransportError as exc:
                return exc

        clients = [asyncio.create_task(get_until_stopped()) for _ in range(50)]
        await eventually(lambda: len(statuses) >= 300, within=SETTLE)
        posts = [asyncio.create_task(post(n)) for n in range(9)]
        await eventually(lambda: orders[0].requests >= 3, within=SETTLE)
        for dying in (web[0], orders[0]):
            dying.refuse = True
            dying.reset_connections()
        await eventually(lambda: len(statuses) >= 1200, within=SETTLE)
        stop.set()
        await asyncio.gather(*clients)
        post_outcomes = await asyncio.gather(*posts)

        assert set(statuses) == {200}
        assert web[1].requests + web[2].requests > 0
        failed_posts = [o for o in post_outcomes if not isinstance(o, int)]
        assert failed_posts  # the POSTs in flight on the dying pod failed...
        assert sum(pod.requests for pod in orders) == len(post_outcomes)  # ...and none was resent
        assert health.times_ejected(Endpoint(web[0].ip, None)) == 1
        assert spy.picks_after_first_failure(web[0].ip) == 0

        # Back: readmitted once its ejection time has passed.
        web[0].refuse = False
        served = web[0].requests
        clock.now += 31.0
        for _ in range(9):
            assert (await http.get(URL)).status_code == 200
        assert web[0].requests > served


# -- TLS and routing -----------------------------------------------------------------------------


async def test_a_pod_with_a_certificate_for_another_name_is_never_sent_a_request(
    cluster: LocalCluster,
) -> None:
    await cluster.add_service("web", pods=2, tls=True)
    impostors = await cluster.add_service("other", pods=2, tls=True)
    cluster.dns.set_endpoints("web", endpoints=[(p.ip, p.hostname) for p in impostors])
    verify = ssl.create_default_context(cafile=str(cluster.ca_cert))
    async with (
        HeadlessResolver([cluster.nameserver]) as resolver,
        client(HeadlessTransport(resolver, RoundRobin(), verify=verify)) as http,
    ):
        for _ in range(5):
            with pytest.raises(httpx.ConnectError) as failed:
                await http.get(f"https://{WEB}:8080/")
            assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value)
    assert [pod.requests for pod in impostors] == [0, 0]  # no request ever got through


async def test_the_host_header_is_the_service_name_never_the_pod_ip(
    cluster: LocalCluster,
) -> None:
    pods = await cluster.add_service("web", pods=3, tls=True)
    verify = ssl.create_default_context(cafile=str(cluster.ca_cert))
    urls = [
        f"https://{WEB}:8080/",
        f"https://{WEB.upper()}:8080/path?q=1",
        f"https://web-1.{WEB}:8080/",
    ]
    async with (
        HeadlessResolver([cluster.nameserver]) as resolver,
        client(HeadlessTransport(resolver, RoundRobin(), verify=verify)) as http,
    ):
        for url in urls * 3:
            seen = (await http.get(url)).json()
            host = httpx.URL(url).host
            assert seen["host"] == f"{host}:8080"
            assert seen["sni"] == host.rstrip(".")
            assert seen["ip"] not in seen["host"]
    assert all(pod.requests > 0 for pod in pods)


async def test_hosts_that_do_not_match_never_reach_a_pod(cluster: LocalCluster) -> None:
    pods = await cluster.add_service("web", pods=2)
    async with PodServer("127.0.0.1", 0, hostname="outside") as outside:
        async with (
            HeadlessResolver([cluster.nameserver]) as resolver,
            client(HeadlessTransport(resolver, RoundRobin())) as http,
        ):
            for url in (
                f"http://127.0.0.1:{outside.port}/",
                f"http://localhost:{outside.port}/",
                f"http://127.0.0.1:{outside.port}/{WEB}",
            ):
                seen = (await http.get(url)).json()
                assert seen["pod"] == "outside"
            assert resolver.stats.queries == 0
        assert outside.requests == 3
    assert [pod.requests for pod in pods] == [0, 0]


# -- cancellation ------------------------------------------------------------------------------


async def test_cancelled_resolves_leak_nothing_and_leave_the_shared_query_to_the_others(
    cluster: LocalCluster,
) -> None:
    pods = await cluster.add_service("web", pods=3)
    tasks_before = pending_tasks()
    cluster.dns.delay = 0.2
    async with HeadlessResolver([cluster.nameserver], timeout=2.0) as resolver:
        callers = [asyncio.create_task(resolver.resolve(WEB)) for _ in range(20)]
        await eventually(lambda: cluster.dns.query_count(WEB, "A") == 1, within=SETTLE)
        for caller in callers[::2]:
            caller.cancel()
        outcomes = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes[::2])
        assert all({e.ip for e in o} == {p.ip for p in pods} for o in outcomes[1::2])  # type: ignore[union-attr]
        assert cluster.dns.query_count(WEB, "A") == 1

        # Every caller of a fresh name cancelled: the query goes, and the name is not poisoned.
        other = await cluster.add_service("other", pods=1)
        lone = asyncio.create_task(resolver.resolve("other"))
        await eventually(
            lambda: cluster.dns.query_count(f"other.{WEB[4:]}", "A") == 1, within=SETTLE
        )
        lone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await lone
        cluster.dns.delay = 0.0
        again = await resolver.resolve("other")
        assert [e.ip for e in again] == [other[0].ip]
    await eventually(lambda: pending_tasks() <= tasks_before, within=SETTLE)


async def test_cancelled_requests_release_their_pool_slots_and_sockets(
    cluster: LocalCluster,
) -> None:
    pods = await cluster.add_service("web", pods=2)
    fds_before, tasks_before = open_fds(), pending_tasks()
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with (
        HeadlessResolver([cluster.nameserver]) as resolver,
        client(
            HeadlessTransport(resolver, RoundRobin(), limits=limits),
            timeout=httpx.Timeout(5.0, pool=1.0),
        ) as http,
    ):
        for pod in pods:
            pod.latency = 1.0
        requests = [asyncio.create_task(http.get(URL)) for _ in range(4)]
        await eventually(lambda: sum(pod.requests for pod in pods) == 4, within=SETTLE)
        for request in requests:
            request.cancel()
        await asyncio.gather(*requests, return_exceptions=True)
        for pod in pods:
            pod.latency = 0.0
        # Every slot (2 per pod) was taken by a cancelled request: a leak would be a PoolTimeout.
        for _ in range(3):
            responses = await asyncio.gather(*(http.get(URL) for _ in range(8)))
            assert {r.status_code for r in responses} == {200}
    await eventually(lambda: all(pod.open_connections == 0 for pod in pods), within=SETTLE)
    await eventually(lambda: open_fds() <= fds_before, within=SETTLE)
    await eventually(lambda: pending_tasks() <= tasks_before, within=SETTLE)


async def test_a_dead_dns_server_is_a_typed_error_not_a_hang(cluster: LocalCluster) -> None:
    await cluster.dns.stop()
    async with HeadlessResolver([cluster.nameserver], timeout=0.3, attempts=2) as resolver:
        with pytest.raises(ResolutionError):
            async with asyncio.timeout(5.0):
                await resolver.resolve(WEB)
