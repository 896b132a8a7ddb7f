"""Requests/s and per-pod spread: HeadlessTransport, plain httpx and aiohttp, side by side.

Run: ``python benchmarks/bench_transport.py [--requests N] [--rounds R]``. The pods (a
LocalCluster: a 1-pod service ``solo`` and a 3-pod service ``web``) run in a child process, so
the clients measured here share no CPU time with the servers. Every client sends the same
GETs to the service name at concurrency 1, 10 and 50:

- ``headless``: ``httpx.AsyncClient(transport=HeadlessTransport(resolver, RoundRobin()))``;
- ``httpx``: plain ``httpx.AsyncClient``, names resolved by the system resolver (emulated,
  see ``_system_dns``), one connection pool for the whole service;
- ``aiohttp``: ``aiohttp.ClientSession`` with its DNS cache on, over the system resolver.

Each row is run with httpx's default limits (20 connections kept alive) and with
``max_connections=100, max_keepalive_connections=100``. Spread is max/min requests per pod.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _system_dns import HOW, system_resolution_via

from headless_resolver import HeadlessResolver, HeadlessTransport, RoundRobin
from headless_resolver.testing import LocalCluster

CONCURRENCY = (1, 10, 50)
WIDE = httpx.Limits(max_connections=100, max_keepalive_connections=100)
DEFAULT = httpx.Limits(max_connections=100, max_keepalive_connections=20)
LIMITS = {"default limits": DEFAULT, "keep 100 alive": WIDE}
WARMUP = 5
"""Requests per worker before measuring: connections open, names cached."""

Send = Callable[[], Awaitable[str]]
"""One GET; returns the pod that answered (its ``x-pod`` header)."""


def serve_pods(conn: Connection) -> None:
    """Child process: run the cluster until the parent says stop."""

    async def main() -> None:
        async with LocalCluster(ttl=30) as cluster:
            await cluster.add_service("web", pods=3, port=0)
            await cluster.add_service("solo", pods=1, port=0)
            ports = {name: cluster.pods(name)[0].port for name in ("web", "solo")}
            conn.send((cluster.nameserver, ports))
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    asyncio.run(main())


@dataclass
class Result:
    rate: float
    """Requests per second (wall clock)."""
    cpu_us: float
    """CPU time of this (client) process per request, in microseconds."""
    hits: dict[str, int]
    """Requests answered, by pod."""


async def measure(send: Send, concurrency: int, total: int) -> Result:
    """``total`` requests from ``concurrency`` workers, after a warm-up at the same concurrency.

    (A wider warm-up would leave more connections kept alive than the run needs, and httpcore
    pays for every pooled connection on every request.)
    """
    hits: collections.Counter[str] = collections.Counter()

    async def worker(requests: int) -> None:
        for _ in range(requests):
            hits[await send()] += 1

    await asyncio.gather(*(worker(WARMUP) for _ in range(concurrency)))
    hits.clear()
    per_worker = total // concurrency
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    done = per_worker * concurrency
    return Result(done / elapsed, cpu / done * 1e6, dict(hits))


async def run_headless(
    url: str, nameserver: str, limits: httpx.Limits, concurrency: int, total: int
) -> Result:
    async with (
        HeadlessResolver([nameserver]) as resolver,
        httpx.AsyncClient(
            transport=HeadlessTransport(resolver, RoundRobin(), limits=limits), trust_env=False
        ) as client,
    ):

        async def send() -> str:
            return (await client.get(url)).headers["x-pod"]

        return await measure(send, concurrency, total)


async def run_httpx(
    url: str, nameserver: str, limits: httpx.Limits, concurrency: int, total: int
) -> Result:
    with system_resolution_via(nameserver):
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

            async def send() -> str:
                return (await client.get(url)).headers["x-pod"]

            return await measure(send, concurrency, total)


async def run_aiohttp(
    url: str, nameserver: str, limits: httpx.Limits, concurrency: int, total: int
) -> Result:
    with system_resolution_via(nameserver):
        connector = aiohttp.TCPConnector(
            resolver=aiohttp.ThreadedResolver(),
            use_dns_cache=True,
            limit=limits.max_connections or 0,
        )
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:

            async def send() -> str:
                async with session.get(url) as response:
                    await response.read()
                    return response.headers["x-pod"]

            return await measure(send, concurrency, total)


CLIENTS = {"headless": run_headless, "httpx": run_httpx, "aiohttp": run_aiohttp}


def spread(hits: dict[str, int], pods: int) -> str:
    counts = sorted(hits.values()) + [0] * (pods - len(hits))
    low, high = min(counts), max(counts)
    ratio = f"{high / low:5.2f}" if low else "  inf"
    return f"{ratio}  {'/'.join(str(n) for n in sorted(counts, reverse=True))}"


async def bench(nameserver: str, ports: dict[str, int], total: int, rounds: int) -> None:
    print(f"plain clients: {HOW}")
    print(
        f"{total} requests per run after warm-up, best of {rounds} interleaved runs; "
        "cpu = client CPU per request; spread = max/min requests per pod\n"
    )
    header = (
        f"{'service':8} {'limits':15} {'conc':>4}  {'client':9} {'req/s':>8}  vs httpx"
        f"  {'cpu us':>7}  spread"
    )
    print(header)
    print("-" * len(header))
    for service, pods in (("solo", 1), ("web", 3)):
        url = f"http://{service}.default.svc.cluster.local:{ports[service]}/"
        for limits_name, limits in LIMITS.items():
            for concurrency in CONCURRENCY:
                best: dict[str, Result] = {}
                for _ in range(rounds):
                    for name, run in CLIENTS.items():
                        result = await run(url, nameserver, limits, concurrency, total)
                        if name not in best or result.rate > best[name].rate:
                            best[name] = result
                baseline = best["httpx"].rate
                for name, result in best.items():
                    print(
                        f"{service:8} {limits_name:15} {concurrency:4}  {name:9}"
                        f" {result.rate:8.0f}  {result.rate / baseline:7.2f}x"
                        f"  {result.cpu_us:7.0f}  {spread(result.hits, pods)}"
                    )
                print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per client; the best counts")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    pods = context.Process(target=serve_pods, args=(child,), daemon=True)
    pods.start()
    try:
        nameserver, ports = parent.recv()
        asyncio.run(bench(nameserver, ports, args.requests, args.rounds))
    finally:
        parent.send("stop")
        pods.join(10)


if __name__ == "__main__":
    main()
