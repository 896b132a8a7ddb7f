"""LeastLatency over real sockets: loopback pods with latency knobs, HeadlessTransport.

One short test per shape of the benchmark's targets (benchmarks/bench_latency.py carries the
numbers): which pods the requests reached, with margins for a loaded machine.
"""

from __future__ import annotations

import asyncio
import collections
import time

import httpx
import pytest

from headless_resolver import (
    Endpoint,
    HeadlessResolver,
    HeadlessTransport,
    LeastLatency,
    PassiveHealth,
    RoundRobin,
    SlowStart,
    Strategy,
)
from headless_resolver.testing import LocalCluster, PodServer
from tests.clocks import FakeClock

WEB = "web.default.svc.cluster.local"
URL = f"http://{WEB}:8080/"

Sent = list[tuple[float, str]]
"""``(seconds since the traffic started, pod that answered)``."""


def client(resolver: HeadlessResolver, strategy: Strategy) -> httpx.AsyncClient:
    return client_over(HeadlessTransport(resolver, strategy))


def client_over(transport: HeadlessTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, trust_env=False, timeout=5.0)


async def closed_loop(http: httpx.AsyncClient, workers: int, seconds: float) -> Sent:
    """``workers`` requests always in flight for ``seconds``."""
    sent: Sent = []
    started = time.monotonic()

    async def worker() -> None:
        while (at := time.monotonic() - started) < seconds:
            sent.append((at, (await http.get(URL)).json()["pod"]))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return sent


def share(sent: Sent, pod: PodServer, start: float = 0.0, end: float = float("inf")) -> float:
    window = [name for at, name in sent if start <= at < end]
    return window.count(pod.hostname) / max(len(window), 1)


async def test_a_busy_client_keeps_requests_off_a_pod_50_ms_slower(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=5)
    slow = pods[0]
    slow.latency = 0.050
    async with client(resolver, LeastLatency()) as http:
        sent = await closed_loop(http, workers=10, seconds=2.0)
    assert share(sent, slow, 0.5) < 0.02, collections.Counter(name for _, name in sent)


async def test_an_open_loop_keeps_requests_off_a_pod_50_ms_slower(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=5)
    slow = pods[0]
    slow.latency = 0.050
    sent: Sent = []
    async with client(resolver, LeastLatency()) as http:
        started = time.monotonic()

        async def one() -> None:
            at = time.monotonic() - started
            sent.append((at, (await http.get(URL)).json()["pod"]))

        requests = []
        for tick in range(300):  # 150 requests a second, whatever the answers do
            await asyncio.sleep(max(0.0, started + tick / 150 - time.monotonic()))
            requests.append(asyncio.create_task(one()))
        await asyncio.gather(*requests)
    assert share(sent, slow, 0.5) < 0.03, collections.Counter(name for _, name in sent)


async def test_identical_pods_share_sequential_requests_evenly(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    async with client(resolver, LeastLatency()) as http:
        for _ in range(300):
            await http.get(URL)
    served = [pod.requests for pod in pods]
    assert max(served) / min(served) <= 2, served


async def test_a_pod_turning_slow_loses_its_share_and_regains_it_once_recovered(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=5)
    turning = pods[2]
    strategy = LeastLatency(probe_interval=0.2, decay=1.0)

    async def turn() -> None:
        await asyncio.sleep(1.0)
        turning.latency = 0.050
        await asyncio.sleep(2.0)
        turning.latency = 0.0

    async with client(resolver, strategy) as http:
        sent, _ = await asyncio.gather(closed_loop(http, workers=5, seconds=6.0), turn())
    fair = 1 / 5
    assert share(sent, turning, 0.3, 1.0) > 0.5 * fair
    assert share(sent, turning, 1.6, 3.0) < 0.03, "slow: off within a fraction of a second"
    assert share(sent, turning, 5.0, 6.0) > 0.4 * fair, "recovered: trusted again"


async def test_independent_clients_do_not_herd_on_the_fastest_pod(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=5)
    for pod in pods:
        pod.latency = 0.010
    fast = pods[0]
    fast.latency = 0.005
    clients = [client(resolver, LeastLatency()) for _ in range(10)]
    try:
        runs = await asyncio.gather(*(closed_loop(http, 2, 1.5) for http in clients))
    finally:
        for http in clients:
            await http.aclose()
    sent = [event for run in runs for event in run]
    assert share(sent, fast) <= 2 * 0.2 + 0.05, collections.Counter(name for _, name in sent)


async def test_slow_start_ramps_up_a_pod_that_joins_under_traffic(
    cluster: LocalCluster, resolver: HeadlessResolver, clock: FakeClock
) -> None:
    await cluster.add_service("web", pods=4)
    # RoundRobin, whose share is the ramp's alone: LeastLatency adds its own judgement of a new
    # pod (tests/test_strategies.py covers both on a fake clock; the benchmark measures both).
    strategy = RoundRobin(slow_start=SlowStart(window=3.0))
    async with client(resolver, strategy) as http:
        await closed_loop(http, workers=4, seconds=0.3)
        newcomer = (await cluster.scale("web", 5))[4]
        clock.advance(10)  # the DNS answer expires: the next request sees five pods
        await resolver.resolve(WEB)
        sent = await closed_loop(http, workers=4, seconds=4.0)
    fair = 1 / 5
    assert share(sent, newcomer, 0.0, 1.0) <= 0.25 * fair + 0.02
    assert share(sent, newcomer, 3.0, 4.0) > 0.5 * fair, "its full share once ramped up"


def pod_of(resolver: HeadlessResolver, pod: PodServer) -> Endpoint:
    """The endpoint of ``pod`` in the service's cached set."""
    endpoints = resolver.peek(WEB)
    assert endpoints is not None
    (endpoint,) = [e for e in endpoints if e.ip == pod.ip]
    return endpoint


async def test_with_probe_a_slow_pod_is_measured_by_probes_and_recovers_through_them(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=5)
    slow = pods[0]
    slow.latency = 0.050
    strategy = LeastLatency(probe="/healthz", probe_interval=0.2, decay=1.0)
    transport = HeadlessTransport(resolver, strategy)

    async def recover() -> None:
        await asyncio.sleep(2.0)
        slow.latency = 0.0

    async with client_over(transport) as http:
        sent, _ = await asyncio.gather(closed_loop(http, workers=5, seconds=5.0), recover())
        served = sum(1 for _, name in sent if name == slow.hostname)
        assert slow.paths["/"] == served, "the pod saw exactly the user requests it answered"
        (stats,) = [pod for pod in transport.stats()[WEB].pods if pod.endpoint.ip == slow.ip]
        assert stats.requests == served, "probes are not counted as requests"
        assert stats.probes == slow.paths["/healthz"] >= 3, "probed while slow"
    assert all(pod.paths["/healthz"] <= 2 for pod in pods[1:]), "probed new, then always chosen"
    assert share(sent, slow, 0.5, 2.0) < 0.01, "no user request spent on measuring it"
    assert share(sent, slow, 4.0, 5.0) > 0.4 / 5, "recovered: probes brought it back"


@pytest.mark.parametrize("failure", ["503", "refused"])
async def test_a_failing_probe_counts_against_the_pod_like_any_attempt(
    cluster: LocalCluster, resolver: HeadlessResolver, failure: str
) -> None:
    pods = await cluster.add_service("web", pods=3)
    target = pods[0]
    target.latency = 0.050
    health = PassiveHealth(consecutive_status_failures=2)
    strategy = LeastLatency(probe="/healthz", probe_interval=0.1, health=health)
    async with client(resolver, strategy) as http:
        await closed_loop(http, workers=3, seconds=0.5)  # measured slow: probed from now on
        probed, served = target.paths["/healthz"], target.paths["/"]
        if failure == "503":
            target.status = 503
        else:
            target.refuse = True
            target.reset_connections()
        endpoint = pod_of(resolver, target)

        async def traffic() -> None:
            while not health.is_ejected(endpoint):
                await http.get(URL)

        await asyncio.wait_for(traffic(), timeout=5.0)
    assert target.paths["/"] == served, "ejected by its probes, no user request reached it"
    if failure == "503":  # a probe received before the switch may answer 503 as well
        assert target.paths["/healthz"] >= probed + 1
    assert target.requests == target.paths["/"] + target.paths["/healthz"]


async def test_aclose_leaves_no_probe_running_and_the_strategy_balanced(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=2)
    hanging = pods[0]
    hanging.latency = 0.050
    strategy = LeastLatency(probe="/healthz", probe_interval=0.05)
    async with client(resolver, strategy) as http:
        await closed_loop(http, workers=1, seconds=0.3)  # measured slow: probed from now on
        hanging.latency = 30.0  # its next probe hangs
        probed = hanging.paths["/healthz"]

        async def traffic() -> None:
            while hanging.paths["/healthz"] == probed or not probes_running():
                await http.get(URL)

        await asyncio.wait_for(traffic(), timeout=5.0)
    assert probes_running() == 0
    for pod in pods:
        estimate = strategy.estimate(pod_of(resolver, pod))
        assert estimate is not None
        assert estimate.in_flight == [], "every probe was observed or released"


def probes_running() -> int:
    """Probe tasks of any ``HeadlessTransport`` not yet done."""
    running = 0
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", "")
        running += name == "HeadlessTransport._probe" and not task.done()
    return running
