"""Requests/s and per-pod spread: HeadlessTransport, plain httpx and aiohttp, side by side.

Run: ``python benchmarks/bench_transport.py [--requests N] [--rounds R]`` (``--help`` for
running only some rows). The pods (a
LocalCluster: a 1-pod service ``solo`` and a 3-pod service ``web``) run in a child process, so
the clients measured here share no CPU time with the servers. Every client sends the same
GETs to the service name at concurrency 1, 10 and 50:

- ``headless``: ``httpx.AsyncClient(transport=HeadlessTransport(resolver, RoundRobin()))``;
- ``httpx``: plain ``httpx.AsyncClient``, names resolved by the system resolver (emulated:
  ``headless_resolver.testing.system_resolution_via``), one connection pool for the service;
- ``aiohttp``: ``aiohttp.ClientSession`` with its DNS cache on, over the system resolver.

Each row is run with httpx's default limits (20 connections kept alive) and with
``max_connections=100, max_keepalive_connections=100``. Spread is max/min requests per pod.

On a shared machine the load of other processes moves every figure, so the clients of a row
run in turns, round after round, and each ratio to plain httpx is taken between runs of the
same round before the median over rounds: a load change between rounds cancels out. Client CPU
per request moves less with load than requests/s and is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))


from headless_resolver import HeadlessResolver, HeadlessTransport, RoundRobin
from headless_resolver.testing import LocalCluster, system_resolution_via
from headless_resolver.testing._system_dns import HOW

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


def spread_ratio(hits: dict[str, int], pods: int) -> float:
    counts = list(hits.values()) + [0] * (pods - len(hits))
    return max(counts) / min(counts) if min(counts) else math.inf


@dataclass
class Cell:
    """Every client's runs for one (service, limits, concurrency), round by round."""

    service: str
    pods: int
    limits: str
    concurrency: int
    runs: dict[str, list[Result]]

    def rate(self, client: str) -> float:
        return statistics.median(r.rate for r in self.runs[client])

    def cpu_us(self, client: str) -> float:
        return statistics.median(r.cpu_us for r in self.runs[client])

    def vs_httpx(self, client: str) -> float:
        """Median over rounds of the rate ratio to plain httpx run in the same round."""
        pairs = zip(self.runs[client], self.runs["httpx"], strict=True)
        return statistics.median(ours.rate / theirs.rate for ours, theirs in pairs)

    def cpu_vs_httpx(self, client: str) -> float:
        """Median over rounds of plain httpx's CPU per request over this client's (>1: cheaper)."""
        pairs = zip(self.runs[client], self.runs["httpx"], strict=True)
        return statistics.median(theirs.cpu_us / ours.cpu_us for ours, theirs in pairs)

    def worst_spread(self, client: str) -> Result:
        return max(self.runs[client], key=lambda r: spread_ratio(r.hits, self.pods))


def load_average() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


async def bench(
    nameserver: str,
    ports: dict[str, int],
    total: int,
    rounds: int,
    *,
    services: Collection[str] = ("solo", "web"),
    limits: Collection[str] = tuple(LIMITS),
    concurrency: Collection[int] = CONCURRENCY,
) -> list[Cell]:
    """Run and print the table; every client runs once per round, in alternating order."""
    print(f"plain clients: {HOW}")
    print(
        f"{total} requests per run after warm-up, {rounds} rounds; every client runs once per "
        "round, in alternating order.\nreq/s and cpu (client CPU per request): median of "
        "rounds; vs httpx: median of the same-round ratios (cpu: httpx's over ours, >1 is "
        "cheaper);\nspread: max/min requests per pod, worst round. "
        f"Load average at start: {load_average()}\n"
    )
    header = (
        f"{'service':8} {'limits':15} {'conc':>4}  {'client':9} {'req/s':>7}  vs httpx"
        f"  {'cpu us':>6}  vs httpx  spread"
    )
    print(header)
    print("-" * len(header))
    cells = []
    for service, pods in (("solo", 1), ("web", 3)):
        if service not in services:
            continue
        url = f"http://{service}.default.svc.cluster.local:{ports[service]}/"
        for limits_name in limits:
            for conc in concurrency:
                cell = Cell(service, pods, limits_name, conc, {name: [] for name in CLIENTS})
                for round_ in range(rounds):
                    order = list(CLIENTS) if round_ % 2 == 0 else list(reversed(CLIENTS))
                    for name in order:
                        run = CLIENTS[name]
                        cell.runs[name].append(
                            await run(url, nameserver, LIMITS[limits_name], conc, total)
                        )
                for name in CLIENTS:
                    print(
                        f"{service:8} {limits_name:15} {conc:4}  {name:9} {cell.rate(name):7.0f}"
                        f"  {cell.vs_httpx(name):7.2f}x  {cell.cpu_us(name):6.0f}"
                        f"  {cell.cpu_vs_httpx(name):7.2f}x"
                        f"  {spread(cell.worst_spread(name).hits, pods)}"
                    )
                print()
                cells.append(cell)
    print(f"Load average at end: {load_average()}")
    for line in target_report(cells):
        print(line)
    return cells


def target_report(cells: list[Cell]) -> list[str]:
    """The issue's targets for HeadlessTransport, each with the figure that decides it."""

    def verdict(ok: bool) -> str:
        return "met   " if ok else "MISSED"

    lines = ["", "targets (headless, round robin):"]
    for cell in cells:
        where = f"{cell.service} {cell.limits}, c={cell.concurrency}"
        ratio = cell.vs_httpx("headless")
        if cell.service == "solo":
            lines.append(f"  {verdict(ratio >= 0.95)} >= 0.95x httpx, {where}: {ratio:.3f}x")
        elif cell.limits == "keep 100 alive" and cell.concurrency == 50:
            lines.append(f"  {verdict(ratio >= 2.0)} >= 2x httpx, {where}: {ratio:.3f}x")
        if cell.pods > 1:
            worst = spread_ratio(cell.worst_spread("headless").hits, cell.pods)
            lines.append(f"  {verdict(worst <= 1.05)} spread <= 1.05, {where}: {worst:.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per client and cell")
    parser.add_argument("--services", nargs="+", choices=("solo", "web"), default=("solo", "web"))
    parser.add_argument(
        "--limits", nargs="+", choices=("default", "wide"), default=("default", "wide")
    )
    parser.add_argument("--concurrency", nargs="+", type=int, default=CONCURRENCY)
    args = parser.parse_args()
    limits = [{"default": "default limits", "wide": "keep 100 alive"}[n] for n in args.limits]
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    pods = context.Process(target=serve_pods, args=(child,), daemon=True)
    pods.start()
    try:
        nameserver, ports = parent.recv()
        asyncio.run(
            bench(
                nameserver,
                ports,
                args.requests,
                args.rounds,
                services=args.services,
                limits=limits,
                concurrency=args.concurrency,
            )
        )
    finally:
        parent.send("stop")
        pods.join(10)


if __name__ == "__main__":
    main()
