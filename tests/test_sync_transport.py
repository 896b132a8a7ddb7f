"""SyncHeadlessTransport: httpx.Client in plain threads, with the pods on a loop of their own."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest

from headless_resolver import HeadlessResolver, RoundRobin, ServiceNotFound, SyncHeadlessTransport
from headless_resolver.testing import LocalCluster
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


def client(transport: SyncHeadlessTransport) -> httpx.Client:
    return httpx.Client(transport=transport, trust_env=False, timeout=5.0)


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
