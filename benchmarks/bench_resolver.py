"""What a cached lookup costs, side by side, and the CPU a 2,000-pod refresh takes.

Run: ``python benchmarks/bench_resolver.py [pods] [refreshes]`` (needs ``knotd``).

Cache hit, in one run against one Knot DNS on loopback:
  * the floor: awaiting a coroutine that does one dict lookup;
  * ``HeadlessResolver.resolve()`` on a fresh entry;
  * ``async_lru.alru_cache(ttl=...)`` around a lookup, what people hand-roll today;
  * aiohttp's connector DNS cache (``TCPConnector(use_dns_cache=True)``), its resolve path;
  * dnspython's ``asyncresolver.Resolver`` with its ``Cache``.
Refresh: ``time.process_time`` (all threads, so c-ares' included) of one full refresh of a
2,000-pod service (A and AAAA, UDP truncated then TCP, parse, build and compare the set).
Targets: a hit at most half an ``alru_cache`` hit; a 2,000-pod refresh within 20 ms of CPU.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import dns.asyncresolver
import dns.resolver
from async_lru import alru_cache

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from headless_resolver import HeadlessResolver
from headless_resolver.testing import system_resolution_via
from headless_resolver.testing._model import ServiceSpec

WEB = "web.default.svc.cluster.local"
PODS = tuple((f"10.0.0.{i}", f"web-{i}") for i in range(1, 4))
HIT_CALLS = 200_000
REPEATS = 5


async def ns_per_call(
    call: Callable[..., Awaitable[object]], *args: object, calls: int = HIT_CALLS
) -> float:
    """Best of REPEATS runs of ``calls`` sequential ``await call(*args)``, in ns per call."""
    await call(*args)
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(calls):
            await call(*args)
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e9


async def hit_costs(
    nameserver: str, host: str, port: int, calls: int = HIT_CALLS
) -> dict[str, float]:
    table = {WEB: 1}

    async def dict_lookup(name: str) -> int:
        return table[name]

    costs = {
        "floor: await a coroutine doing one dict lookup": await ns_per_call(
            dict_lookup, WEB, calls=calls
        )
    }

    async with HeadlessResolver(
        [nameserver], namespace="default", cluster_domain="cluster.local"
    ) as resolver:
        costs["HeadlessResolver.resolve() hit"] = await ns_per_call(
            resolver.resolve, WEB, calls=calls
        )

        @alru_cache(maxsize=1024, ttl=300)
        async def cached_lookup(name: str) -> object:
            return await resolver.resolve(name)

        costs["async_lru.alru_cache(ttl=300) hit"] = await ns_per_call(
            cached_lookup, WEB, calls=calls
        )

    with system_resolution_via(nameserver):
        connector = aiohttp.TCPConnector(
            use_dns_cache=True, ttl_dns_cache=300, resolver=aiohttp.ThreadedResolver()
        )
        try:
            resolve_host: Callable[..., Awaitable[Any]] = connector._resolve_host
            costs["aiohttp TCPConnector DNS cache hit"] = await ns_per_call(
                resolve_host, WEB, 80, calls=calls // 4
            )
        finally:
            await connector.close()

    stub = dns.asyncresolver.Resolver(configure=False)
    stub.nameservers = [host]
    stub.port = port
    stub.cache = dns.resolver.Cache()
    costs["dnspython asyncresolver + Cache hit"] = await ns_per_call(
        stub.resolve, WEB + ".", "A", calls=calls // 20
    )
    return costs


class SteppedClock:
    """Each refresh starts with the entry expired: the clock jumps an hour between reads."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class RefreshCost(NamedTuple):
    cpu_ms: float
    """CPU per full refresh."""
    received: int
    """Endpoints the first lookup found."""
    queries: int
    """DNS queries in all, the first lookup's included."""


async def refresh_cost(backend: str, nameserver: str, name: str, refreshes: int) -> RefreshCost:
    """``refreshes`` full refreshes of ``name``, the entry expired before each."""
    clock = SteppedClock()
    async with HeadlessResolver(
        [nameserver],
        backend=backend,  # type: ignore[arg-type]
        namespace="default",
        cluster_domain="cluster.local",
        clock=clock,
        refresh_ahead=None,
        timeout=5.0,
    ) as resolver:
        received = len(await resolver.resolve(name))
        started = time.process_time()
        for _ in range(refreshes):
            clock.now += 3600
            await resolver.resolve(name)
        elapsed = time.process_time() - started
        return RefreshCost(elapsed / refreshes * 1000, received, resolver.stats.queries)


async def refresh_cpu_ms(backend: str, nameserver: str, pods: int, refreshes: int) -> float:
    """CPU ms per refresh of ``big``, once every pod arrived and each refresh asked A and AAAA
    once."""
    cost = await refresh_cost(backend, nameserver, "big", refreshes)
    if cost.received != pods:
        raise SystemExit(f"{backend}: got {cost.received} of {pods} endpoints")
    if cost.queries != 2 * (refreshes + 1):
        raise SystemExit(f"{backend}: {cost.queries} queries, expected one per type")
    return cost.cpu_ms


def main() -> None:
    pods = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    refreshes = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    big = ServiceSpec("big", endpoints=tuple(f"10.9.{i // 250}.{i % 250 + 1}" for i in range(pods)))
    web = ServiceSpec("web", endpoints=PODS)
    from tests.servers import KnotServer  # here, so run.py can import this without pytest

    with KnotServer([web, big], ttl=300) as knot:
        costs = asyncio.run(hit_costs(knot.nameserver, knot.host, knot.port))
        print("Cache hit, ns per call (best of 5), 3-pod service on Knot DNS, TTL 300")
        width = max(map(len, costs))
        alru = costs["async_lru.alru_cache(ttl=300) hit"]
        for label, ns in costs.items():
            print(f"  {label:<{width}}  {ns:9.0f} ns  {ns / alru:6.2f}x alru_cache")
        print(f"\nRefresh of a {pods}-pod service (A + AAAA, UDP TC then TCP), CPU per refresh")
        for backend in ("dnspython", "aiodns"):
            ms = asyncio.run(refresh_cpu_ms(backend, knot.nameserver, pods, refreshes))
            print(f"  {backend:<10} {ms:7.2f} ms")


if __name__ == "__main__":
    main()
