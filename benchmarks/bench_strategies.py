"""Strategies: pick cost by set size, Sticky's key movement and balance (pure and with bounded
loads), slow-pod simulations.

Run: ``python benchmarks/bench_strategies.py``. Pick cost is CPU time (``time.process_time``)
of one pick plus its release on a warm per-set table, best of five runs; the table build is
timed separately. Bounded loads hold every key's request in flight (none is released), the
case the bound is for. The simulations run on a fake clock. The first: 10 pods answer in 5 ms
(one in 55 ms), 16 requests are always in flight, and each strategy's share of requests sent
to the slow pod is counted. Then issue #12's targets 1, 4 and 5, each strategy in the same
run: a busy client (on average 1 ms of its own delay per request in flight, exponentially
distributed, which lands in every sample)
over 5 pods of which one answers 50 ms late, against the same client over the 4 fast pods
alone; a pod turning 50 ms slow for 10 s, then recovering; ten independent clients over 5
pods of which one is twice as fast.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from headless_resolver import Endpoint, EndpointSet
from headless_resolver._strategies import BaseStrategy, LeastLatency, PeakEwma, RoundRobin, Sticky

SIZES = (3, 100, 5000)
PICKS = 20_000
KEYS = [f"user-{i}" for i in range(100_000)]
BALANCE_FACTORS = (1.1, 1.25)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pods(count: int, first: int = 0) -> list[Endpoint]:
    return [
        Endpoint(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 8080, f"web-{i}")
        for i in range(first, first + count)
    ]


def strategies(clock: Callable[[], float] = time.monotonic) -> dict[str, BaseStrategy[Any]]:
    """The three strategies as configured by default (run.py compares these)."""
    return {
        "RoundRobin": RoundRobin(rng=random.Random(1)),
        "LeastLatency": LeastLatency(rng=random.Random(1), clock=clock),
        "Sticky": Sticky("x-user", rng=random.Random(1)),
    }


def with_bounded_sticky(
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, BaseStrategy[Any]]:
    """The defaults plus Sticky with bounded loads."""
    bounded = Sticky("x-user", balance_factor=1.25, rng=random.Random(1))
    return {**strategies(clock), "Sticky c=1.25": bounded}


def pick_cost_us(
    strategy: BaseStrategy[Any], endpoints: EndpointSet, picks: int = PICKS
) -> tuple[float, float]:
    """(table build ms, pick + release µs)."""
    started = time.process_time()
    strategy.release(strategy.pick(endpoints, KEYS[0]))
    build_ms = (time.process_time() - started) * 1000
    keys = KEYS[:picks]
    pick, release = strategy.pick, strategy.release
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for key in keys:
            release(pick(endpoints, key))
        best = min(best, time.process_time() - started)
    return build_ms, best / picks * 1e6


def report_pick_cost() -> None:
    print(f"Pick cost (pick + release, best of 5 x {PICKS} picks)")
    print(f"{'strategy':<14}" + "".join(f"{n:>10} pods" for n in SIZES) + f"{'ratio':>10}")
    costs: dict[str, list[float]] = {}
    builds: dict[str, list[float]] = {}
    for size in SIZES:
        endpoints = EndpointSet("web", pods(size), version=1)
        for name, strategy in with_bounded_sticky().items():
            build_ms, cost = pick_cost_us(strategy, endpoints)
            costs.setdefault(name, []).append(cost)
            builds.setdefault(name, []).append(build_ms)
    for name, row in costs.items():
        cells = "".join(f"{cost:>12.2f} µs" for cost in row)
        print(f"{name:<14}{cells}{row[-1] / row[0]:>10.2f}")
    print("Table build, once per set version")
    for name, row in builds.items():
        print(f"{name:<14}" + "".join(f"{ms:>12.2f} ms" for ms in row))


def sticky_balance(size: int, keys: list[str] = KEYS) -> tuple[float, float, float, float, float]:
    """Sticky over ``size`` pods: max/mean, uniform-hash max/mean, min/mean, and the fraction
    of keys moved by removing one pod (times N) and by adding one (times N+1)."""
    endpoints = pods(size)
    strategy = Sticky("x-user")
    before = [strategy.pick(EndpointSet("web", endpoints, version=1), k) for k in keys]
    loads = Counter(before)
    mean = len(keys) / size
    uniform = Counter(
        int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest()) % size for k in keys
    )
    removed = endpoints[size // 2]
    shrunk = EndpointSet("web", [e for e in endpoints if e != removed], version=2)
    moved_out = sum(old != strategy.pick(shrunk, k) for old, k in zip(before, keys, strict=True))
    grown = EndpointSet("web", [*endpoints, *pods(1, size)], version=3)
    moved_in = sum(old != strategy.pick(grown, k) for old, k in zip(before, keys, strict=True))
    return (
        max(loads.values()) / mean,
        max(uniform.values()) / mean,
        min(loads.values()) / mean,
        moved_out / len(keys) * size,
        moved_in / len(keys) * (size + 1),
    )


def report_sticky() -> None:
    print(f"\nSticky with {len(KEYS):,} keys: balance and keys moved")
    print(
        f"{'pods':>6}{'max/mean':>10}{'uniform':>10}{'min/mean':>10}"
        f"{'-1 moved x N':>14}{'+1 moved x (N+1)':>18}"
    )
    for size in (10, 100, 1000):
        high, uniform, low, moved_out, moved_in = sticky_balance(size)
        print(
            f"{size:>6}{high:>10.3f}{uniform:>10.3f}{low:>10.3f}{moved_out:>14.3f}{moved_in:>18.3f}"
        )
    print("uniform: the same keys spread by an ideal uniform hash (chance alone)")


def bounded_balance(
    size: int, balance_factor: float, keys: list[str] = KEYS
) -> tuple[float, float, float]:
    """Sticky with bounded loads over ``size`` pods, every key's request held in flight:
    max/mean load, the fraction of keys not on their pure consistent-hash choice, and the CPU
    µs of a pick while the pods fill up."""
    endpoints = EndpointSet("web", pods(size), version=1)
    pure = Sticky("x-user")
    choices = [pure.pick(endpoints, k) for k in keys]
    strategy = Sticky("x-user", balance_factor=balance_factor)
    started = time.process_time()
    picked = [strategy.pick(endpoints, k) for k in keys]
    cost_us = (time.process_time() - started) / len(keys) * 1e6
    moved = sum(first != chosen for first, chosen in zip(choices, picked, strict=True))
    return max(Counter(picked).values()) / (len(keys) / size), moved / len(keys), cost_us


def report_bounded() -> None:
    print(f"\nSticky with bounded loads, {len(KEYS):,} keys all in flight")
    print(f"{'factor':>6}{'pods':>6}{'max/mean':>10}{'not on 1st choice':>19}{'pick µs':>10}")
    for factor in BALANCE_FACTORS:
        for size in (10, 100, 1000):
            high, moved, cost = bounded_balance(size, factor)
            print(f"{factor:>6}{size:>6}{high:>10.3f}{moved:>19.2%}{cost:>10.2f}")


def slow_pod_share(name: str, requests: int = 20_000, concurrency: int = 16) -> float:
    clock = FakeClock()
    strategy = with_bounded_sticky(clock)[name]
    endpoints = EndpointSet("web", pods(10), version=1)
    slow = endpoints[3]
    rng = random.Random(2)
    in_flight: list[tuple[float, int, Endpoint]] = []
    slow_picks = 0
    for sequence in range(requests):
        if len(in_flight) == concurrency:
            clock.now, _, done = heapq.heappop(in_flight)
            latency = 0.055 if done == slow else 0.005
            strategy.observe(done, latency * rng.uniform(0.9, 1.1), ok=True)
        endpoint = strategy.pick(endpoints, rng.choice(KEYS))
        slow_picks += endpoint == slow
        latency = 0.055 if endpoint == slow else 0.005
        heapq.heappush(in_flight, (clock.now + latency, sequence, endpoint))
    return slow_picks / requests


def report_simulation() -> None:
    print("\n10 pods, one 50 ms slower (5 ms vs 55 ms), 16 requests in flight")
    for name in with_bounded_sticky():
        print(f"{name:<14}{slow_pod_share(name):>8.2%} of requests reach the slow pod")


# -- issue #12's targets 1, 4 and 5 on a fake clock ---------------------------------------------

LATENCY_AWARE: dict[str, Callable[[FakeClock, int], BaseStrategy[Any]]] = {
    "RoundRobin": lambda clock, seed: RoundRobin(rng=random.Random(seed)),
    "PeakEwma": lambda clock, seed: PeakEwma(rng=random.Random(seed), clock=clock),
    "LeastLatency": lambda clock, seed: LeastLatency(rng=random.Random(seed), clock=clock),
}
Sent = list[tuple[float, Endpoint, float]]
"""``(seconds since start, pod, latency)`` of each request."""


def closed_loop(
    strategy: BaseStrategy[Any],
    endpoints: EndpointSet,
    clock: FakeClock,
    latency: Callable[[Endpoint, float], float],
    *,
    seconds: float,
    concurrency: int,
    client_delay: float = 0.0,
    jitter: random.Random | None = None,
) -> Sent:
    """``concurrency`` requests always in flight; each takes its pod's ``latency`` plus
    ``client_delay`` x the requests in flight (the client's own event loop), that delay drawn
    from an exponential distribution of that mean when ``jitter`` is given."""
    start = clock.now
    in_flight: list[tuple[float, int, Endpoint, float]] = []
    sent: Sent = []
    sequence = 0
    while clock.now - start < seconds:
        if len(in_flight) == concurrency:
            done_at, _, done, started = heapq.heappop(in_flight)
            clock.now = done_at
            strategy.observe(done, done_at - started, ok=True)
            sent.append((started - start, done, done_at - started))
        endpoint = strategy.pick(endpoints)
        delay = client_delay * (len(in_flight) + 1)
        if jitter is not None:
            delay *= jitter.expovariate(1.0)
        took = latency(endpoint, clock.now - start) + delay
        heapq.heappush(in_flight, (clock.now + took, sequence, endpoint, clock.now))
        sequence += 1
    return sent


def share_of(sent: Sent, endpoint: Endpoint, start: float = 0.0, end: float = math.inf) -> float:
    window = [pod for at, pod, _ in sent if start <= at < end]
    return window.count(endpoint) / max(len(window), 1)


def p99_ms(sent: Sent, start: float = 1.0) -> float:
    latencies = sorted(took for at, _, took in sent if at >= start)
    return latencies[min(math.ceil(0.99 * len(latencies)), len(latencies)) - 1] * 1000


def busy_client(name: str, concurrency: int, seconds: float = 20.0) -> dict[str, float]:
    """Target 1: share on the slow pod, and p99 over 5 pods vs over the 4 fast pods alone."""
    endpoints = EndpointSet("web", pods(5), version=1)
    slow = endpoints[0]
    fast_only = EndpointSet("fast", pods(4, 1), version=1)
    results = {}
    for label, pool in (("all", endpoints), ("fast", fast_only)):
        clock = FakeClock()
        sent = closed_loop(
            LATENCY_AWARE[name](clock, 1),
            pool,
            clock,
            lambda pod, _: 0.051 if pod == slow else 0.001,
            seconds=seconds,
            concurrency=concurrency,
            client_delay=0.001,
            jitter=random.Random(2),
        )
        results[f"p99_{label}_ms"] = p99_ms(sent)
        if label == "all":
            results["slow_share"] = share_of(sent, slow, 1.0)
    results["p99_ratio"] = results["p99_all_ms"] / results["p99_fast_ms"]
    return results


TURNS_SLOW, RECOVERS = 5.0, 15.0


def turning_pod(name: str) -> dict[str, float]:
    """Target 4: a pod 50 ms slow from 5 s to 15 s, 10 requests in flight."""
    clock = FakeClock()
    endpoints = EndpointSet("web", pods(5), version=1)
    turning = endpoints[2]

    def latency(pod: Endpoint, at: float) -> float:
        return 0.055 if pod == turning and TURNS_SLOW <= at < RECOVERS else 0.005

    sent = closed_loop(
        LATENCY_AWARE[name](clock, 1), endpoints, clock, latency, seconds=30.0, concurrency=10
    )
    fair = 1 / len(endpoints)
    back = next(
        (
            start / 10 - RECOVERS
            for start in range(int(RECOVERS * 10), 300)
            if share_of(sent, turning, start / 10 - 1, start / 10) >= fair / 2
        ),
        math.inf,
    )
    return {
        "slow_share_second_2": share_of(sent, turning, TURNS_SLOW + 1, TURNS_SLOW + 2),
        "share_10s_after_recovery_of_fair": share_of(sent, turning, RECOVERS + 9, RECOVERS + 10)
        / fair,
        "seconds_to_half_fair": back,
    }


def ten_clients(name: str, requests: int = 40_000) -> float:
    """Target 5: share of the pod twice as fast, ten clients (each its own strategy) with 4
    requests in flight each; each request in flight on a pod adds 0.5 ms to its answers."""
    clock = FakeClock()
    endpoints = EndpointSet("web", pods(5), version=1)
    fast = endpoints[0]
    clients = [LATENCY_AWARE[name](clock, seed) for seed in range(10)]
    in_flight: list[tuple[float, int, int, Endpoint, float]] = []
    load: Counter[Endpoint] = Counter()
    picked: Counter[Endpoint] = Counter()
    for sequence in range(requests):
        if len(in_flight) == 40:
            clock.now, _, client, done, started = heapq.heappop(in_flight)
            load[done] -= 1
            clients[client].observe(done, clock.now - started, ok=True)
        client = sequence % 10
        endpoint = clients[client].pick(endpoints)
        picked[endpoint] += 1
        took = (0.005 if endpoint == fast else 0.010) + 0.0005 * load[endpoint]
        load[endpoint] += 1
        heapq.heappush(in_flight, (clock.now + took, sequence, client, endpoint, clock.now))
    return picked[fast] / requests


def report_targets() -> None:
    print("\nTarget 1: busy client (~1 ms own delay per request in flight), 5 pods, one +50 ms")
    print(
        f"{'strategy':<14}{'conc':>6}{'slow share':>12}{'p99 ms':>9}{'4-fast p99':>12}{'ratio':>8}"
    )
    for concurrency in (10, 50):
        for name in LATENCY_AWARE:
            r = busy_client(name, concurrency)
            print(
                f"{name:<14}{concurrency:>6}{r['slow_share']:>12.3%}{r['p99_all_ms']:>9.1f}"
                f"{r['p99_fast_ms']:>12.1f}{r['p99_ratio']:>8.2f}"
            )
    print("\nTarget 4: a pod turns 50 ms slow for 10 s, 10 requests in flight")
    print(f"{'strategy':<14}{'share 1-2 s after':>19}{'share 9-10 s after recovery / fair':>37}")
    for name in LATENCY_AWARE:
        r = turning_pod(name)
        print(
            f"{name:<14}{r['slow_share_second_2']:>19.2%}"
            f"{r['share_10s_after_recovery_of_fair']:>37.2f}"
            f"   (half fair after {r['seconds_to_half_fair']:.1f} s)"
        )
    print("\nTarget 5: ten clients, 5 pods, one twice as fast: its share (fair 20 %)")
    for name in LATENCY_AWARE:
        print(f"{name:<14}{ten_clients(name):>8.1%}")


def main() -> None:
    report_pick_cost()
    report_sticky()
    report_bounded()
    report_simulation()
    report_targets()


if __name__ == "__main__":
    main()
