"""SyncHeadlessTransport: httpx.Client in plain threads, with the pods on a loop of their own."""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest

from headless_resolver import (
    HeadlessResolver,
    LeastLatency,
    RoundRobin,
    ServiceNotFound,
    SyncHeadlessTransport,
)
from headless_resolver.testing import LocalCluster, PodServer
from tests.waiting import eventually_blocking

T = TypeVar("T")
WEB = "web.default.svc.cluster.local"
URL = f"http://{WEB}:8080/"


class ClusterThread:
    """A LocalCluster on its own event loop thread, so blocking clients can call its pods."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.cluster = LocalCluster(ttl=5)
        self.run(self.cluster.__aenter__())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self.run(self.cluster.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture
def cluster() -> Iterator[ClusterThread]:
    cluster = ClusterThread()
    yield cluster
    cluster.close()


def transport(cluster: ClusterThread, **kwargs: Any) -> SyncHeadlessTransport:
    return SyncHeadlessTransport(HeadlessResolver([cluster.cluster.nameserver]), **kwargs)


def client(transport: SyncHeadlessTransport, timeout: httpx.Timeout | float = 5.0) -> httpx.Client:
    return httpx.Client(transport=transport, trust_env=False, timeout=timeout)


def test_a_client_shared_by_8_threads_spreads_evenly(cluster: ClusterThread) -> None:
    pods = cluster.run(cluster.cluster.add_service("web", pods=3))
    sync_transport = transport(cluster, strategy=RoundRobin())
    with client(sync_transport) as http:

        def work(_: int) -> list[int]:
            return [http.get(URL).status_code for _ in range(30)]

        with ThreadPoolExecutor(8) as threads:
            statuses = [s for batch in threads.map(work, range(8)) for s in batch]
        queries = sync_transport.resolver.stats.queries
    assert statuses == [200] * 240
    assert all(79 <= pod.requests <= 81 for pod in pods), [pod.requests for pod in pods]
    assert 1 <= queries <= 2  # cached: one lookup served 240 requests from 8 threads


def test_16_threads_on_one_pod_stay_within_its_connection_limit(cluster: ClusterThread) -> None:
    (pod,) = cluster.run(cluster.cluster.add_service("web", pods=1))
    pod.latency = 0.05
    limits = httpx.Limits(max_connections=12, max_keepalive_connections=12)
    with client(transport(cluster, limits=limits)) as http:
        with ThreadPoolExecutor(16) as threads:
            statuses = list(threads.map(lambda _: http.get(URL).status_code, range(48)))
        assert statuses == [200] * 48
        assert pod.connections_total == 12  # over two shards; none closed, none beyond
        assert pod.open_connections == 12


def test_host_and_tls_server_name_are_the_service(cluster: ClusterThread) -> None:
    cluster.run(cluster.cluster.add_service("web", pods=2, tls=True))
    verify = ssl.create_default_context(cafile=str(cluster.cluster.ca_cert))
    with client(transport(cluster, verify=verify)) as http:
        response = http.get(f"https://{WEB}:8080/")
    assert response.json()["sni"] == WEB
    assert response.json()["host"] == f"{WEB}:8080"
    assert response.url == f"https://{WEB}:8080/"


def test_a_refusing_pod_costs_no_failed_get(cluster: ClusterThread) -> None:
    pods = cluster.run(cluster.cluster.add_service("web", pods=3))
    pods[2].refuse = True
    with client(transport(cluster)) as http:
        statuses = [http.get(URL).status_code for _ in range(20)]
    assert statuses == [200] * 20
    assert pods[2].requests == 0


def test_unknown_service_is_an_httpx_connect_error(cluster: ClusterThread) -> None:
    with client(transport(cluster)) as http, pytest.raises(httpx.ConnectError) as failure:
        http.get("http://nothing.default.svc.cluster.local/")
    assert isinstance(failure.value.__cause__, ServiceNotFound)


def test_close_stops_the_resolver_thread_and_closes_every_pool(cluster: ClusterThread) -> None:
    pods = cluster.run(cluster.cluster.add_service("web", pods=3))
    before = set(threading.enumerate())
    sync_transport = transport(cluster)
    (resolver_thread,) = set(threading.enumerate()) - before
    with client(sync_transport) as http:
        for _ in range(3):
            http.get(URL)
        assert [pod.open_connections for pod in pods] == [1, 1, 1]
    assert not resolver_thread.is_alive()
    assert sync_transport.pools() == []
    eventually_blocking(lambda: all(pod.open_connections == 0 for pod in pods))


# --- what counts against a pod -----------------------------------------------------------------


def served(pods: list[PodServer]) -> list[int]:
    return [pod.requests for pod in pods]


def ejected_ips(strategy: RoundRobin) -> set[str]:
    return {endpoint.ip for endpoint in strategy.health.ejected()}


def names_pod(error: BaseException, pod: PodServer) -> bool:
    return any(f"{pod.ip}:{pod.port}" in note for note in getattr(error, "__notes__", ()))


def test_the_transports_own_failure_statuses_eject(cluster: ClusterThread) -> None:
    pods = cluster.run(cluster.cluster.add_service("web", pods=3))
    pods[0].status = 500
    strategy = RoundRobin()
    with client(transport(cluster, strategy=strategy, failure_statuses={500})) as http:
        statuses = [http.get(URL).status_code for _ in range(60)]
    assert statuses.count(500) == 5
    assert ejected_ips(strategy) == {pods[0].ip}


def _via_stream(http: httpx.Client) -> httpx.Response:
    with http.stream("GET", URL) as response:
        response.read()
    return response


@pytest.mark.parametrize(
    "send",
    [lambda http: http.get(URL), lambda http: http.post(URL, content=b"order"), _via_stream],
    ids=["GET", "POST", "stream"],
)
def test_a_pod_that_resets_mid_body_is_ejected_and_named(
    cluster: ClusterThread, send: Callable[[httpx.Client], httpx.Response]
) -> None:
    pods = cluster.run(cluster.cluster.add_service("web", pods=3))
    pods[0].reset = True
    strategy = RoundRobin()
    errors: list[httpx.TransportError] = []
    with client(transport(cluster, strategy=strategy)) as http:
        for _ in range(18):
            try:
                send(http)
            except httpx.TransportError as error:
                errors.append(error)
    assert pods[0].requests == 1
    assert ejected_ips(strategy) == {pods[0].ip}
    assert all(names_pod(error, pods[0]) for error in errors)
    assert sum(served(pods)) == 18 + (not errors)


def test_the_clients_own_pool_limit_ejects_no_pod(cluster: ClusterThread) -> None:
    pods = cluster.run(cluster.cluster.add_service("web", pods=3))
    for pod in pods:
        pod.latency = 0.5
    strategy = RoundRobin()
    limits = httpx.Limits(max_connections=1)
    sync_transport = transport(cluster, strategy=strategy, limits=limits)
    with client(sync_transport, httpx.Timeout(5.0, pool=0.05)) as http:

        def get(_: int) -> httpx.Response | httpx.TransportError:
            try:
                return http.get(URL)
            except httpx.TransportError as error:
                return error

        with ThreadPoolExecutor(6) as threads:
            outcomes = list(threads.map(get, range(6)))
        assert sum(isinstance(o, httpx.PoolTimeout) for o in outcomes) == 3
        assert strategy.health.ejected() == frozenset()
        for pod in pods:
            pod.latency = 0.0
        before = served(pods)
        for _ in range(9):
            http.get(URL)
    assert [after - was for after, was in zip(served(pods), before, strict=True)] == [3, 3, 3]


def test_a_read_timeout_counts_in_a_row_and_an_idempotent_request_moves_on(
    cluster: ClusterThread,
) -> None:
    pods = cluster.run(cluster.cluster.add_service("web", pods=3))
    pods[0].latency = 2.0
    strategy = RoundRobin()
    sync_transport = transport(cluster, strategy=strategy)
    with client(sync_transport, httpx.Timeout(5.0, read=0.2)) as http:
        statuses = [http.get(URL).status_code for _ in range(24)]
    assert statuses == [200] * 24
    assert pods[0].requests == 5
    assert ejected_ips(strategy) == {pods[0].ip}


def test_closing_one_transport_leaves_a_shared_resolver_to_the_others(
    cluster: ClusterThread,
) -> None:
    cluster.run(cluster.cluster.add_service("web", pods=2))
    resolver = HeadlessResolver([cluster.cluster.nameserver])
    before = set(threading.enumerate())
    first = SyncHeadlessTransport(resolver)
    second = SyncHeadlessTransport(resolver)
    (resolver_thread,) = set(threading.enumerate()) - before  # one loop for the one resolver
    with client(first) as http:
        assert http.get(URL).status_code == 200
    with client(second) as http:
        statuses = [http.get(URL).status_code for _ in range(4)]
        assert resolver_thread.is_alive()
    assert statuses == [200] * 4
    assert not resolver_thread.is_alive()  # stopped with its last user
    asyncio.run(resolver.aclose())  # the resolver stays its owner's to close


@pytest.mark.skipif(importlib.util.find_spec("h2") is not None, reason="h2 is installed")
def test_http2_without_h2_fails_at_construction_as_httpx_does() -> None:
    before = set(threading.enumerate())
    with pytest.raises(ImportError, match=r"'h2' package is not installed") as ours:
        SyncHeadlessTransport(HeadlessResolver(["127.0.0.1:1"]), http2=True)
    with pytest.raises(ImportError) as httpx_own:
        httpx.Client(http2=True)
    assert str(ours.value) == str(httpx_own.value)
    assert set(threading.enumerate()) == before  # no resolver thread left behind


def probe_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("headless-resolver-probe")]


def test_probes_measure_a_slow_pod_from_threads_the_transport_stops_at_close(
    cluster: ClusterThread,
) -> None:
    pods = cluster.run(cluster.cluster.add_service("web", pods=3))
    slow = pods[0]
    slow.latency = 0.050
    strategy = LeastLatency(probe="/healthz", probe_interval=0.05)
    sync_transport = transport(cluster, strategy=strategy)
    with client(sync_transport) as http:
        for _ in range(20):
            http.get(URL)  # every pod measured: the slow one is probed from now on
        served = slow.paths["/"]
        probed = slow.paths["/healthz"]

        def probed_twice_more() -> bool:
            http.get(URL)
            return slow.paths["/healthz"] >= probed + 2

        eventually_blocking(probed_twice_more)
        assert probe_threads(), "probes go from the transport's own threads"
    assert slow.paths["/"] == served, "no user request spent on measuring it"
    assert probe_threads() == [], "close() stopped them"
    endpoints = sync_transport.resolver.peek(WEB)
    assert endpoints is not None
    for endpoint in endpoints:
        estimate = strategy.estimate(endpoint)
        assert estimate is not None
        assert estimate.in_flight == [], "every probe was observed or released"
