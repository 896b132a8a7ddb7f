"""Lifecycle: after ``aclose()`` nothing is left running and nothing is left open.

Baselines are taken once the cluster is up, so what is counted afterwards is the resolver's and
the transport's own: tasks (refreshers, watchers, queries in flight), sockets (DNS, pod
pools), and the threads of the sync transport and of c-ares.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
import pytest

from headless_resolver import (
    EndpointSet,
    HeadlessResolver,
    HeadlessTransport,
    ResolverClosed,
    RoundRobin,
    SyncHeadlessTransport,
)
from headless_resolver._dns import BACKENDS
from headless_resolver.testing import LocalCluster
from tests.leaks import open_fds, pending_tasks
from tests.waiting import eventually

pytestmark = pytest.mark.usefixtures("pod_engine")

WEB = "web.default.svc.cluster.local"
URL = f"http://{WEB}:8080/"
SETTLE = 10.0
"""Seconds to wait for a close: the other end sees it a moment later, and c-ares closes from
its own thread."""


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    async with LocalCluster(ttl=1) as cluster:
        await cluster.add_service("web", pods=3)
        await cluster.add_service("api", pods=2)
        yield cluster


@pytest.mark.parametrize("backend", BACKENDS)
async def test_aclose_leaves_no_task_and_no_open_descriptor(
    cluster: LocalCluster, backend: str
) -> None:
    tasks_before, fds_before = pending_tasks(), open_fds()
    resolver = HeadlessResolver([cluster.nameserver], backend=backend, timeout=1.0)  # type: ignore[arg-type]
    http = httpx.AsyncClient(transport=HeadlessTransport(resolver, RoundRobin()), trust_env=False)
    for _ in range(9):  # a keep-alive connection to every pod
        assert (await http.get(URL)).status_code == 200
    await resolver.resolve("api", port="http")
    watched: list[EndpointSet] = []

    async def watch() -> None:
        async for endpoints in resolver.watch("api"):
            watched.append(endpoints)

    watcher = asyncio.create_task(watch())
    await eventually(lambda: bool(watched), within=SETTLE)
    cluster.dns.delay = 5.0  # a query in flight when the resolver closes
    in_flight = asyncio.create_task(resolver.resolve("late"))
    await eventually(lambda: cluster.dns.query_count(f"late.{WEB[4:]}", "A") == 1, within=SETTLE)
    assert len(pending_tasks() - tasks_before) >= 3  # refreshers, the watcher, the query

    await http.aclose()
    await resolver.aclose()

    [outcome] = await asyncio.gather(in_flight, return_exceptions=True)
    # The caller hears that the resolver closed: not left hanging, and not made to look cancelled.
    assert isinstance(outcome, ResolverClosed), repr(outcome)
    await asyncio.wait_for(watcher, 5.0)  # the watch ends with the resolver
    await eventually(lambda: pending_tasks() <= tasks_before, within=SETTLE)
    await eventually(lambda: open_fds() <= fds_before, within=SETTLE)
    for pod in cluster.pods("web"):
        await eventually(lambda pod=pod: pod.open_connections == 0, within=SETTLE)  # type: ignore[misc]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_twenty_open_use_close_cycles_leak_nothing(
    cluster: LocalCluster, backend: str
) -> None:
    tasks_before, fds_before = pending_tasks(), open_fds()
    for _ in range(20):
        async with (
            HeadlessResolver([cluster.nameserver], backend=backend) as resolver,  # type: ignore[arg-type]
            httpx.AsyncClient(
                transport=HeadlessTransport(resolver, RoundRobin()), trust_env=False
            ) as http,
        ):
            responses = await asyncio.gather(*(http.get(URL) for _ in range(6)))
            assert {r.status_code for r in responses} == {200}
    await eventually(lambda: pending_tasks() <= tasks_before, within=SETTLE)
    await eventually(lambda: open_fds() <= fds_before, within=SETTLE)


async def test_the_sync_transport_closes_its_thread_and_sockets(cluster: LocalCluster) -> None:
    fds_before = open_fds()
    threads_before = set(threading.enumerate())

    def use_and_close() -> list[int]:
        resolver = HeadlessResolver([cluster.nameserver])
        with httpx.Client(transport=SyncHeadlessTransport(resolver), trust_env=False) as http:
            statuses = [http.get(URL).status_code for _ in range(9)]
        asyncio.run(resolver.aclose())  # a resolver passed in is its owner's to close
        return statuses

    assert await asyncio.to_thread(use_and_close) == [200] * 9
    await eventually(lambda: open_fds() <= fds_before, within=SETTLE)
    leftover = {t for t in set(threading.enumerate()) - threads_before if t.is_alive()}
    assert not [t.name for t in leftover if t.name == "headless-resolver"]
