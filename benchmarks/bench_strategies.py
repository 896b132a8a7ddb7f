"""Strategies: pick cost by set size, Sticky's key movement and balance (pure and with bounded
loads), a slow-pod simulation.

Run: ``python benchmarks/bench_strategies.py``. Pick cost is CPU time (``time.process_time``)
of one pick plus its release on a warm per-set table, best of five runs; the table build is
timed separately. Bounded loads hold every key's request in flight (none is released), the
case the bound is for. The simulation runs on a fake clock: 10 pods answer in 5 ms (one in 55 ms),
16 requests are always in flight, and each strategy's share of requests sent to the slow pod
is counted.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from headless_resolver import Endpoint, EndpointSet
from headless_resolver._strategies import BaseStrategy, LeastLatency, RoundRobin, Sticky

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


def main() -> None:
    report_pick_cost()
    report_sticky()
    report_bounded()
    report_simulation()


if __name__ == "__main__":
    main()
