"""HeadlessTransport against loopback pods named by a real cluster DNS server."""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence

import httpx
import pytest
import trustme

from headless_resolver import (
    Endpoint,
    EndpointSet,
    HeadlessResolver,
    HeadlessTransport,
    InvalidArgument,
    LeastLatency,
    NoEndpointsAvailable,
    RoundRobin,
    ServiceNotFound,
    Sticky,
)
from headless_resolver._transports._pools import shard_limits
from headless_resolver._transports._routes import pod_url
from headless_resolver.testing import LocalCluster, PodServer
from tests.clocks import FakeClock
from tests.waiting import eventually

pytestmark = pytest.mark.usefixtures("pod_engine")

WEB = "web.default.svc.cluster.local"
URL = f"http://{WEB}:8080/"


def client(
    transport: HeadlessTransport,
    *,
    follow_redirects: bool = False,
    timeout: httpx.Timeout | float = 5.0,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport, trust_env=False, timeout=timeout, follow_redirects=follow_redirects
    )


def served(pods: list[PodServer]) -> list[int]:
    return [pod.requests for pod in pods]


# --- distribution per strategy ---------------------------------------------------------------


async def test_round_robin_spreads_300_requests_100_per_pod(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    async with client(HeadlessTransport(resolver, RoundRobin())) as http:
        for _ in range(300):
            assert (await http.get(URL)).status_code == 200
    assert all(99 <= n <= 101 for n in served(pods)), served(pods)


async def test_round_robin_spreads_concurrent_requests(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    async with client(HeadlessTransport(resolver, RoundRobin())) as http:
        for _ in range(6):
            await asyncio.gather(*(http.get(URL) for _ in range(50)))
    assert all(99 <= n <= 101 for n in served(pods)), served(pods)


async def test_least_latency_avoids_the_slow_pod(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    slow = pods[0]
    # Far above what a fast pod takes even on a loaded machine (a test ran once saw ~20 ms),
    # so the slow pod loses every comparison once timed; a fair share would be 20 requests.
    slow.latency = 0.25
    strategy = LeastLatency()
    async with client(HeadlessTransport(resolver, strategy)) as http:
        for _ in range(10):
            await asyncio.gather(*(http.get(URL) for _ in range(6)))
    rtt = {}
    for endpoint in await resolver.resolve(WEB):
        estimate = strategy.estimate(endpoint)
        assert estimate is not None, endpoint
        assert estimate.state is not None, endpoint
        rtt[endpoint.ip] = estimate.state[0]
    fast_rtt = [rtt[pod.ip] for pod in pods[1:]]
    # The transport timed each pod (an idle pod's estimate drifts toward the set's typical one).
    assert rtt[slow.ip] > slow.latency / 2 > max(fast_rtt), rtt
    assert slow.requests < 10 < min(pods[1].requests, pods[2].requests), served(pods)


async def test_sticky_sends_each_key_to_one_pod_and_spreads_keys(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    await cluster.add_service("web", pods=3)
    async with client(HeadlessTransport(resolver, Sticky(key="x-user"))) as http:
        seen: dict[str, set[str]] = collections.defaultdict(set)
        for _ in range(3):
            for user in range(30):
                response = await http.get(URL, headers={"x-user": f"user-{user}"})
                seen[f"user-{user}"].add(response.json()["pod"])
    assert all(len(pods) == 1 for pods in seen.values())
    assert len(set.union(*seen.values())) == 3


# --- names: URL, Host, TLS server name -------------------------------------------------------


async def test_pods_see_the_service_name_as_host_and_url_keeps_it(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=2)
    async with client(HeadlessTransport(resolver)) as http:
        request = http.build_request("GET", URL + "path?q=1")
        response = await http.send(request)
    body = response.json()
    assert body["ip"] in {pod.ip for pod in pods}
    assert body["host"] == f"{WEB}:8080"
    assert body["path"] == "/path?q=1"
    assert response.url == URL + "path?q=1"
    assert response.request is request
    assert request.url.host == WEB  # the caller's request is never rewritten


async def test_tls_is_verified_against_the_service_name(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3, tls=True)
    verify = ssl.create_default_context(cafile=str(cluster.ca_cert))
    async with client(HeadlessTransport(resolver, verify=verify)) as http:
        bodies = [(await http.get(f"https://{WEB}:8080/")).json() for _ in range(3)]
    assert {b["ip"] for b in bodies} == {pod.ip for pod in pods}
    assert all(b["sni"] == WEB and b["host"] == f"{WEB}:8080" for b in bodies)


async def test_tls_fails_for_a_certificate_from_another_authority(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=1, tls=True)
    other_ca = ssl.create_default_context()
    trustme.CA().configure_trust(other_ca)
    async with client(HeadlessTransport(resolver, verify=other_ca, retries=0)) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(f"https://{WEB}:8080/")
    assert pods[0].requests == 0


async def test_redirects_and_cookies_follow_the_service_name(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    seen_cookies: list[str | None] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            lines = head.decode().split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            if lines[0].startswith("GET /old "):
                writer.write(
                    b"HTTP/1.1 302 Found\r\nlocation: /new\r\n"
                    b"set-cookie: session=abc; Path=/\r\ncontent-length: 0\r\n\r\n"
                )
            else:
                seen_cookies.append(headers.get("cookie"))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cluster.dns.add_service(
        "moved", endpoints=[("127.0.0.1", "moved-0")], ports=[("http", "tcp", port)]
    )
    base = f"http://moved.default.svc.cluster.local:{port}"
    try:
        async with client(HeadlessTransport(resolver), follow_redirects=True) as http:
            response = await http.get(base + "/old")
            assert {c.domain for c in http.cookies.jar} == {"moved.default.svc.cluster.local"}
    finally:
        server.close()
        await server.wait_closed()
    assert response.status_code == 200
    assert response.url == base + "/new"
    assert [r.url for r in response.history] == [base + "/old"]
    assert seen_cookies == ["session=abc"]


async def test_port_from_a_named_port_rule_via_srv(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3, port=0, port_name="api")
    async with client(HeadlessTransport(resolver, ports={WEB: "api"})) as http:
        bodies = [(await http.get(f"http://{WEB}/")).json() for _ in range(6)]
    assert sorted(b["ip"] for b in bodies) == sorted(pod.ip for pod in pods for _ in range(2))
    assert {b["host"] for b in bodies} == {WEB}


async def test_port_from_the_scheme_named_port(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=2, port=0, port_name="http")
    async with client(HeadlessTransport(resolver, srv_from_scheme=True)) as http:
        bodies = [(await http.get(f"http://{WEB}/")).json() for _ in range(4)]
    assert sorted(b["ip"] for b in bodies) == sorted(pod.ip for pod in pods for _ in range(2))


async def test_per_pod_name_goes_to_that_pod_only(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    async with client(HeadlessTransport(resolver)) as http:
        for _ in range(5):
            response = await http.get(f"http://web-1.{WEB}:8080/")
            assert response.json()["host"] == f"web-1.{WEB}:8080"
        pods[1].refuse = True
        pods[1].reset_connections()
        await eventually(lambda: pods[1].open_connections == 0)
        with pytest.raises(httpx.ConnectError) as failure:
            await http.get(f"http://web-1.{WEB}:8080/")
    assert served(pods) == [0, 5, 0]
    assert any(pods[1].ip in note for note in failure.value.__notes__)


async def test_hosts_outside_the_cluster_pass_straight_through(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=1)
    transport = HeadlessTransport(resolver)
    async with client(transport) as http:
        response = await http.get(f"http://{pods[0].ip}:{pods[0].port}/")
    assert response.json()["host"] == f"{pods[0].ip}:{pods[0].port}"
    assert transport.pools() == []
    assert resolver.stats.queries == 0


async def test_match_routes_extra_host_names(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    async with client(HeadlessTransport(resolver, match={"web"})) as http:
        bodies = [(await http.get("http://web:8080/")).json() for _ in range(3)]
    assert sorted(b["ip"] for b in bodies) == sorted(pod.ip for pod in pods)
    assert {b["host"] for b in bodies} == {"web:8080"}


# --- pools ----------------------------------------------------------------------------------


async def test_one_pool_per_pod_and_gone_pods_pools_are_closed(
    cluster: LocalCluster, resolver: HeadlessResolver, clock: FakeClock
) -> None:
    pods = await cluster.add_service("web", pods=3)
    transport = HeadlessTransport(resolver)
    async with client(transport) as http:
        for _ in range(6):
            await http.get(URL)
        assert sorted(transport.pools()) == sorted((p.ip, 8080, WEB) for p in pods)
        assert [p.open_connections for p in pods] == [1, 1, 1]

        scaling = asyncio.create_task(cluster.scale("web", 1, grace=30))
        await eventually(lambda: len(cluster.pods("web")) == 1)
        clock.now += 6  # the old answer's TTL has passed
        for _ in range(2):
            assert (await http.get(URL)).json()["ip"] == pods[0].ip
        assert transport.pools() == [(pods[0].ip, 8080, WEB)]
        await eventually(lambda: pods[1].open_connections == pods[2].open_connections == 0)
        assert not scaling.done()  # the gone pods still run: we closed, not they
        assert pods[0].open_connections == 1
    assert transport.pools() == []
    await eventually(lambda: pods[0].open_connections == 0)
    scaling.cancel()
    await asyncio.gather(scaling, return_exceptions=True)
    await asyncio.gather(*(pod.stop() for pod in pods[1:]))


@pytest.mark.parametrize(
    ("limits", "shards"),
    [
        (
            httpx.Limits(max_connections=100, max_keepalive_connections=20),
            [(34, 7), (33, 7), (33, 6)],
        ),
        (
            httpx.Limits(max_connections=100, max_keepalive_connections=100),
            [(8, 8)] * 9 + [(7, 7)] * 4,
        ),
        (httpx.Limits(max_connections=5, max_keepalive_connections=20), [(5, 20)]),
        (httpx.Limits(max_connections=10, max_keepalive_connections=0), [(5, 0), (5, 0)]),
        (httpx.Limits(max_connections=None, max_keepalive_connections=None), [(None, None)] * 8),
    ],
)
def test_a_pods_limits_split_into_shards_that_add_up_to_them(
    limits: httpx.Limits, shards: list[tuple[int | None, int | None]]
) -> None:
    split = shard_limits(limits)
    assert [(s.max_connections, s.max_keepalive_connections) for s in split] == shards
    assert {s.keepalive_expiry for s in split} == {limits.keepalive_expiry}


def test_over_http2_a_pods_pool_stays_whole_for_one_multiplexed_connection() -> None:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    assert shard_limits(limits, http2=True) == [limits]


async def test_concurrent_requests_to_one_pod_stay_within_its_connection_limit(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=1)
    pods[0].latency = 0.05
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
    async with client(HeadlessTransport(resolver, limits=limits)) as http:
        responses = await asyncio.gather(*(http.get(URL) for _ in range(30)))
        assert [r.status_code for r in responses] == [200] * 30
        assert pods[0].connections_total == 10  # over two shards; none closed, none beyond
        assert pods[0].open_connections == 10


async def test_a_pod_keeps_alive_no_more_connections_than_its_limit(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=1)
    pods[0].latency = 0.05
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with client(HeadlessTransport(resolver, limits=limits)) as http:
        await asyncio.gather(*(http.get(URL) for _ in range(30)))
        assert pods[0].connections_total == 30
        await eventually(lambda: pods[0].open_connections == 20)


async def test_shards_a_burst_opened_close_once_idle_for_keepalive_expiry(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=1)
    pods[0].latency = 0.05
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=0.2)
    async with client(HeadlessTransport(resolver, limits=limits)) as http:
        await asyncio.gather(*(http.get(URL) for _ in range(20)))
        await eventually(lambda: pods[0].open_connections == 20)  # kept alive in three shards
        pods[0].latency = 0.0
        await asyncio.sleep(0.3)  # every connection idle past keepalive_expiry

        await http.get(URL)  # one client now: the first shard serves it, the others stay idle

        await eventually(lambda: pods[0].open_connections == 1)
        assert pods[0].connections_total == 21


async def test_a_gone_pod_pool_closes_after_its_in_flight_request(
    cluster: LocalCluster, resolver: HeadlessResolver, clock: FakeClock
) -> None:
    pods = await cluster.add_service("web", pods=2)
    transport = HeadlessTransport(resolver, RoundRobin())
    async with client(transport) as http:
        await asyncio.gather(http.get(URL), http.get(URL))
        slow = next(p for p in pods if p.hostname == "web-1")
        slow.body_delay = 1.0  # its head comes at once, its body a second later
        async with http.stream("GET", URL) as first, http.stream("GET", URL) as second:
            streaming = first if first.headers["x-pod"] == "web-1" else second
            scaling = asyncio.create_task(cluster.scale("web", 1, grace=30))
            await eventually(lambda: len(cluster.pods("web")) == 1)
            clock.now += 6
            await http.get(URL)
            assert (slow.ip, 8080, WEB) in transport.pools()  # still reading its body
            await streaming.aread()
        assert (slow.ip, 8080, WEB) not in transport.pools()
        await eventually(lambda: slow.open_connections == 0)
    scaling.cancel()
    await asyncio.gather(scaling, return_exceptions=True)
    await slow.stop()


# --- failures and retries -------------------------------------------------------------------


async def test_a_refusing_pod_costs_no_failed_get(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    pods[0].refuse = True
    async with client(HeadlessTransport(resolver, RoundRobin())) as http:
        responses = [await http.get(URL) for _ in range(30)]
    assert all(r.status_code == 200 for r in responses)
    assert pods[0].requests == 0
    assert pods[1].requests + pods[2].requests == 30


async def test_a_refused_post_is_sent_to_another_pod(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=2)
    for pod in pods:
        pod.refuse = pod.hostname == "web-0"
    async with client(HeadlessTransport(resolver, RoundRobin())) as http:
        for _ in range(4):
            assert (await http.post(URL, content=b"order")).json()["method"] == "POST"
    assert served(pods) == [0, 4]


async def _fail_after_sending(
    pods: list[PodServer], send: Callable[[], Awaitable[httpx.Response]]
) -> tuple[PodServer, httpx.Response | BaseException]:
    """Send while every pod stalls; reset the first pod to receive it once it has it."""
    for pod in pods:
        pod.latency = 5.0
    task = asyncio.ensure_future(send())
    await eventually(lambda: sum(served(pods)) == 1)
    first = next(pod for pod in pods if pod.requests == 1)
    for pod in pods:
        pod.latency = 0.0
    first.reset_connections()
    [outcome] = await asyncio.gather(task, return_exceptions=True)
    return first, outcome


async def test_a_sent_post_is_never_resent(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    async with client(HeadlessTransport(resolver, RoundRobin())) as http:
        first, outcome = await _fail_after_sending(pods, lambda: http.post(URL, content=b"x"))
    assert isinstance(outcome, httpx.RemoteProtocolError | httpx.ReadError)
    assert sum(served(pods)) == 1
    assert [first.ip in note for note in outcome.__notes__] == [True]


async def test_a_sent_get_is_retried_on_another_pod(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    async with client(HeadlessTransport(resolver, RoundRobin())) as http:
        first, outcome = await _fail_after_sending(pods, lambda: http.get(URL))
    assert isinstance(outcome, httpx.Response)
    assert outcome.json()["ip"] != first.ip
    assert sum(served(pods)) == 2


async def test_a_streamed_post_body_is_not_replayed(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)

    async def body() -> AsyncIterator[bytes]:
        yield b"part"

    async with client(HeadlessTransport(resolver, RoundRobin())) as http:
        _first, outcome = await _fail_after_sending(pods, lambda: http.put(URL, content=body()))
    assert isinstance(outcome, httpx.TransportError)
    assert sum(served(pods)) == 1


async def test_retries_are_bounded_and_never_hit_a_pod_twice(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=4)
    for pod in pods:
        pod.refuse = True
    async with client(HeadlessTransport(resolver, RoundRobin(), retries=2)) as http:
        with pytest.raises(httpx.ConnectError) as bounded:
            await http.get(URL)
    async with client(HeadlessTransport(resolver, RoundRobin(), retries=10)) as http:
        with pytest.raises(httpx.ConnectError) as exhausted:
            await http.get(URL)
    [note] = bounded.value.__notes__
    assert note.startswith("tried pods: ")
    assert note.count("127.") == 3
    [note] = exhausted.value.__notes__
    assert sorted(note.removeprefix("tried pods: ").split(", ")) == sorted(
        f"{p.ip}:8080" for p in pods
    )


async def test_failure_statuses_reach_the_strategy_health(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    pods[0].status = 503
    strategy = RoundRobin()
    async with client(HeadlessTransport(resolver, strategy)) as http:
        statuses = [(await http.get(URL)).status_code for _ in range(60)]
    assert statuses.count(503) == 5  # consecutive_status_failures, then ejected
    assert ejected_ips(strategy) == {pods[0].ip}


# --- what counts against a pod -----------------------------------------------------------------


def ejected_ips(strategy: RoundRobin) -> set[str]:
    return {endpoint.ip for endpoint in strategy.health.ejected()}


def names_pod(error: BaseException, pod: PodServer) -> bool:
    return any(f"{pod.ip}:{pod.port}" in note for note in getattr(error, "__notes__", ()))


async def test_the_transports_own_failure_statuses_eject(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    pods[0].status = 500
    strategy = RoundRobin()
    async with client(HeadlessTransport(resolver, strategy, failure_statuses={500})) as http:
        statuses = [(await http.get(URL)).status_code for _ in range(60)]
    assert statuses.count(500) == 5
    assert ejected_ips(strategy) == {pods[0].ip}


async def _via_stream(http: httpx.AsyncClient) -> httpx.Response:
    async with http.stream("GET", URL) as response:
        await response.aread()
    return response


@pytest.mark.parametrize(
    "send",
    [
        lambda http: http.get(URL),
        lambda http: http.post(URL, content=b"order"),
        _via_stream,
    ],
    ids=["GET", "POST", "stream"],
)
async def test_a_pod_that_resets_mid_body_is_ejected_and_named(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
) -> None:
    pods = await cluster.add_service("web", pods=3)
    pods[0].reset = True
    strategy = RoundRobin()
    errors: list[httpx.TransportError] = []
    async with client(HeadlessTransport(resolver, strategy)) as http:
        for _ in range(18):
            try:
                await send(http)
            except httpx.TransportError as error:
                errors.append(error)
    assert pods[0].requests == 1  # reset once, then ejected
    assert ejected_ips(strategy) == {pods[0].ip}
    assert all(names_pod(error, pods[0]) for error in errors)
    # Cut mid-body, the caller sees the error; cut before the answer, a GET moves on.
    assert sum(served(pods)) == 18 + (not errors)


async def test_the_clients_own_pool_limit_ejects_no_pod(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    for pod in pods:
        pod.latency = 0.5
    strategy = RoundRobin()
    transport = HeadlessTransport(resolver, strategy, limits=httpx.Limits(max_connections=1))
    async with client(transport, timeout=httpx.Timeout(5.0, pool=0.05)) as http:
        outcomes = await asyncio.gather(*(http.get(URL) for _ in range(6)), return_exceptions=True)
        assert sum(isinstance(o, httpx.PoolTimeout) for o in outcomes) == 3
        assert strategy.health.ejected() == frozenset()
        for pod in pods:
            pod.latency = 0.0
        before = served(pods)
        for _ in range(9):
            await http.get(URL)
    assert [after - was for after, was in zip(served(pods), before, strict=True)] == [3, 3, 3]


async def test_a_read_timeout_counts_in_a_row_and_an_idempotent_request_moves_on(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    pods[0].latency = 2.0
    strategy = RoundRobin()
    transport = HeadlessTransport(resolver, strategy)
    async with client(transport, timeout=httpx.Timeout(5.0, read=0.2)) as http:
        statuses = [(await http.get(URL)).status_code for _ in range(24)]
    assert statuses == [200] * 24  # each GET the slow pod timed out went to another pod
    assert pods[0].requests == 5  # consecutive_status_failures timeouts, then ejected
    assert ejected_ips(strategy) == {pods[0].ip}


async def test_a_post_that_timed_out_is_not_resent_and_the_pod_not_ejected(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    for pod in pods:
        pod.latency = 2.0
    strategy = RoundRobin()
    transport = HeadlessTransport(resolver, strategy)
    async with client(transport, timeout=httpx.Timeout(5.0, read=0.2)) as http:
        with pytest.raises(httpx.ReadTimeout) as timed_out:
            await http.post(URL, content=b"order")
    [first] = [pod for pod in pods if pod.requests]
    assert sum(served(pods)) == 1
    assert names_pod(timed_out.value, first)
    assert strategy.health.ejected() == frozenset()


async def test_closing_a_transport_leaves_a_shared_resolver_open(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    await cluster.add_service("web", pods=2)
    first, second = HeadlessTransport(resolver), HeadlessTransport(resolver)
    async with client(first) as http:
        assert (await http.get(URL)).status_code == 200
    async with client(second) as http:
        assert (await http.get(URL)).status_code == 200
    assert (await resolver.resolve(WEB)).name


@pytest.mark.skipif(importlib.util.find_spec("h2") is not None, reason="h2 is installed")
def test_http2_without_h2_fails_at_construction_as_httpx_does() -> None:
    with pytest.raises(ImportError, match=r"'h2' package is not installed") as ours:
        HeadlessTransport(HeadlessResolver(["127.0.0.1:1"]), http2=True)
    with pytest.raises(ImportError) as httpx_own:
        httpx.AsyncClient(http2=True)
    assert str(ours.value) == str(httpx_own.value)


async def test_a_kubernetes_svc_name_is_routed_by_default(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=2)
    async with client(HeadlessTransport(resolver)) as http:
        responses = [await http.get("http://web.default.svc:8080/") for _ in range(4)]
    assert {r.json()["host"] for r in responses} == {"web.default.svc:8080"}
    assert served(pods) == [2, 2]


async def test_unknown_service_is_an_httpx_connect_error(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    async with client(HeadlessTransport(resolver)) as http:
        with pytest.raises(httpx.ConnectError) as failure:
            await http.get("http://nothing.default.svc.cluster.local/")
    assert isinstance(failure.value.__cause__, ServiceNotFound)
    assert isinstance(failure.value, httpx.TransportError)


async def test_no_endpoints_available_is_an_httpx_connect_error(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    await cluster.add_service("web", pods=1)

    class NoneAvailable(RoundRobin):
        def pick(
            self,
            endpoints: Sequence[Endpoint],
            key: str | None = None,
            *,
            exclude: Collection[Endpoint] = (),
        ) -> Endpoint:
            assert isinstance(endpoints, EndpointSet)
            raise NoEndpointsAvailable("all ejected", name=endpoints.name)

    async with client(HeadlessTransport(resolver, NoneAvailable())) as http:
        with pytest.raises(httpx.ConnectError) as failure:
            await http.get(URL)
    assert isinstance(failure.value.__cause__, NoEndpointsAvailable)
    assert not hasattr(failure.value, "__notes__")  # no pod was tried


async def test_an_invalid_service_name_stays_a_value_error(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    async with client(HeadlessTransport(resolver)) as http:
        with pytest.raises(ValueError, match="must start with a letter"):
            await http.get("http://1web.default.svc.cluster.local/")


def test_negative_retries_are_rejected() -> None:
    with pytest.raises(ValueError, match="retries"):
        HeadlessTransport(HeadlessResolver(["127.0.0.1:1"]), retries=-1)


@pytest.mark.parametrize(
    ("url", "ip", "port"),
    [
        ("http://web.default.svc.cluster.local:8080/p?q=1#f", "127.0.0.11", 8080),
        ("https://web/x", "::1", 443),
        ("http://user:pw@web/a%20b", "fd00::1", 8080),
        ("https://web:8443/", "10.244.1.5", 80),
    ],
)
def test_pod_url_is_httpx_copy_with(url: str, ip: str, port: int) -> None:
    assert pod_url(httpx.URL(url), ip, port) == httpx.URL(url).copy_with(host=ip, port=port)


def test_match_must_not_be_a_bare_string() -> None:
    with pytest.raises(InvalidArgument, match="collection of host names"):
        HeadlessTransport(HeadlessResolver(["127.0.0.1:1"]), match="web")
