"""Client CPU per request and req/s: HeadlessTransport's pod engines against httpx and aiohttp.

Run: ``python benchmarks/bench_engine.py [--requests N] [--rounds R]``. The pods (a LocalCluster:
a 3-pod service ``web`` and a 1-pod service ``solo``) run in a child process, so the CPU time
measured here (``resource.getrusage``, user + system, of this process) is the clients' alone.
Every client sends the same GETs after a warm-up at the same concurrency:

- ``mock``: ``httpx.AsyncClient`` + ``httpx.MockTransport`` answering the pods' response: the
  cost of httpx's own front end (client, request, response), no network;
- ``aiohttp``: ``aiohttp.ClientSession`` sending to the 3 pods' addresses in turn, service name
  in ``Host``;
- ``engine, no routing``: ``httpx.AsyncClient`` over one ``PodConnectionPool`` per pod,
  sending to the pods' addresses in turn: httpx's front end and the pod engine with no
  resolution, pick, health or metrics, the floor for any routing over this engine;
- ``headless/llhttp`` and ``headless/httpcore``: ``HeadlessTransport`` + ``RoundRobin`` on each
  engine (limits 100/100);
- ``httpx`` and ``httpx/keep100``: plain ``httpx.AsyncClient`` over the service name (system
  resolver emulated), with httpx's default limits (20 kept alive) and with 100/100.

Clients run in turns, round after round, in alternating order; each ratio is the median of
ratios taken within a round, so load changes between rounds cancel out. The same for the sync
clients (``SyncHeadlessTransport``, ``httpx.Client`` + ``MockTransport``, plain ``httpx.Client``)
in one thread and in 10 threads. Ends with the issue's targets, met or missed.

``--candidates`` instead compares the engines that were candidates for the pod pools (see
``_engines.py``), each under the same ``httpx.AsyncClient``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _engines import PerPod, candidates
from _targets import cpu_seconds
from bench_transport import serve_pods

from headless_resolver import (
    HeadlessResolver,
    HeadlessTransport,
    RoundRobin,
    SyncHeadlessTransport,
)
from headless_resolver.testing import system_resolution_via

WIDE = httpx.Limits(max_connections=100, max_keepalive_connections=100)
DEFAULT = httpx.Limits(max_connections=100, max_keepalive_connections=20)
WARMUP = 10
"""Requests per worker before measuring: connections open, names cached."""

Send = Callable[[], Awaitable[object]]
Opener = Callable[["Lab"], "asyncio.AbstractAsyncContextManager[Send]"]


@dataclass
class Lab:
    """A service to send to: its name, port and pods' addresses, and the DNS naming them."""

    nameserver: str | None
    host: str
    port: int
    pod_ips: list[str]
    emulate_system_dns: bool = True
    """Plain httpx resolves through the system resolver emulated on ``nameserver``; False when
    the caller has set that up already."""

    @classmethod
    async def found(
        cls, nameserver: str | None, host: str, port: int, *, emulate_system_dns: bool = True
    ) -> Lab:
        """The service ``host``, with its pods' addresses as the cluster DNS gives them."""
        async with HeadlessResolver(None if nameserver is None else [nameserver]) as resolver:
            pod_ips = [endpoint.ip for endpoint in await resolver.resolve(host)]
        return cls(nameserver, host, port, pod_ips, emulate_system_dns)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def nameservers(self) -> list[str] | None:
        return None if self.nameserver is None else [self.nameserver]

    @contextmanager
    def system_dns(self) -> Iterator[None]:
        """Plain clients resolve through the system resolver, emulated on the cluster DNS."""
        if self.nameserver is None or not self.emulate_system_dns:
            yield
            return
        with system_resolution_via(self.nameserver):
            yield


@dataclass
class Run:
    rate: float
    cpu_us: float


async def measure(send: Send, concurrency: int, total: int) -> Run:
    async def worker(requests: int) -> None:
        for _ in range(requests):
            await send()

    await asyncio.gather(*(worker(WARMUP) for _ in range(concurrency)))
    per_worker = total // concurrency
    cpu, started = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    done = per_worker * concurrency
    return Run(done / elapsed, cpu / done * 1e6)


def pod_body(host: str) -> bytes:
    """A body the size of a pod's answer."""
    return json.dumps(
        {
            "pod": "web-0",
            "ip": "127.0.0.1",
            "host": host,
            "sni": None,
            "method": "GET",
            "path": "/",
            "count": 1,
        }
    ).encode()


def mock_handler(host: str) -> Callable[[httpx.Request], httpx.Response]:
    body = pod_body(host)

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"x-pod": "web-0", "content-type": "application/json"}, content=body
        )

    return handle


@asynccontextmanager
async def open_mock(lab: Lab) -> AsyncIterator[Send]:
    transport = httpx.MockTransport(mock_handler(lab.host))
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        yield _reader(client, lab.url)


def _reader(client: httpx.AsyncClient, url: str) -> Send:
    async def send() -> object:
        response = await client.get(url)
        response.raise_for_status()
        return response.headers["x-pod"]

    return send


def open_headless(engine: str) -> Opener:
    @asynccontextmanager
    async def open_(lab: Lab) -> AsyncIterator[Send]:
        async with HeadlessResolver(lab.nameservers) as resolver:
            transport = HeadlessTransport(resolver, RoundRobin(), limits=WIDE, engine=engine)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
                yield _reader(client, lab.url)

    return open_


def open_httpx(limits: httpx.Limits) -> Opener:
    @asynccontextmanager
    async def open_(lab: Lab) -> AsyncIterator[Send]:
        with lab.system_dns():
            async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
                yield _reader(client, lab.url)

    return open_


@asynccontextmanager
async def open_aiohttp(lab: Lab) -> AsyncIterator[Send]:
    urls = [f"http://{ip}:{lab.port}/" for ip in lab.pod_ips]
    headers = {"host": lab.host}
    turn = iter(range(1 << 62))
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:

        async def send() -> object:
            url = urls[next(turn) % len(urls)]
            async with session.get(url, headers=headers) as response:
                response.raise_for_status()
                await response.read()
                return response.headers["x-pod"]

        yield send


def open_engine(make: Callable[[], httpx.AsyncBaseTransport]) -> Opener:
    """httpx.AsyncClient over a candidate engine, sending to the pods' addresses in turn."""

    @asynccontextmanager
    async def open_(lab: Lab) -> AsyncIterator[Send]:
        urls = [f"http://{ip}:{lab.port}/" for ip in lab.pod_ips]
        headers = {"host": lab.host}
        turn = iter(range(1 << 62))
        async with httpx.AsyncClient(transport=make(), trust_env=False) as client:

            async def send() -> object:
                response = await client.get(urls[next(turn) % len(urls)], headers=headers)
                response.raise_for_status()
                return response.headers["x-pod"]

            yield send

    return open_


ASYNC_CLIENTS: dict[str, Opener] = {
    "mock": open_mock,
    "aiohttp": open_aiohttp,
    "engine, no routing": open_engine(PerPod),
    "headless/llhttp": open_headless("llhttp"),
    "headless/httpcore": open_headless("httpcore"),
    "httpx": open_httpx(DEFAULT),
    "httpx/keep100": open_httpx(WIDE),
}


@dataclass
class Cell:
    label: str
    runs: dict[str, list[Run]]

    def rate(self, name: str) -> float:
        return statistics.median(r.rate for r in self.runs[name])

    def cpu(self, name: str) -> float:
        return statistics.median(r.cpu_us for r in self.runs[name])

    def rate_ratio(self, name: str, other: str) -> float:
        pairs = zip(self.runs[name], self.runs[other], strict=True)
        return statistics.median(a.rate / b.rate for a, b in pairs)

    def cpu_ratio(self, name: str, other: str) -> float:
        pairs = zip(self.runs[name], self.runs[other], strict=True)
        return statistics.median(a.cpu_us / b.cpu_us for a, b in pairs)

    def print(self, names: list[str], base: str, rate_base: str) -> None:
        """One row per client; req/s as a ratio to ``rate_base``, CPU to ``base``."""
        print(f"\n{self.label}: req/s vs {rate_base}, cpu vs {base}")
        width = max(20, *map(len, names))
        header = f"  {'client':{width}} {'req/s':>7} {'ratio':>7} {'cpu us':>7} {'ratio':>7}"
        print(header)
        print("  " + "-" * (len(header) - 2))
        for name in names:
            print(
                f"  {name:{width}} {self.rate(name):7.0f} {self.rate_ratio(name, rate_base):6.2f}x"
                f" {self.cpu(name):7.0f} {self.cpu_ratio(name, base):6.2f}x"
            )


async def run_cell(
    label: str, lab: Lab, clients: dict[str, Opener], concurrency: int, total: int, rounds: int
) -> Cell:
    cell = Cell(label, {name: [] for name in clients})
    for round_ in range(rounds):
        order = list(clients) if round_ % 2 == 0 else list(reversed(clients))
        for name in order:
            async with clients[name](lab) as send:
                cell.runs[name].append(await measure(send, concurrency, total))
    return cell


# -- sync --------------------------------------------------------------------------------------


@contextmanager
def sync_mock(lab: Lab) -> Iterator[Callable[[], object]]:
    with httpx.Client(transport=httpx.MockTransport(mock_handler(lab.host))) as client:
        yield lambda: client.get(lab.url).raise_for_status()


@contextmanager
def sync_headless(lab: Lab) -> Iterator[Callable[[], object]]:
    transport = SyncHeadlessTransport(HeadlessResolver(lab.nameservers), RoundRobin(), limits=WIDE)
    with httpx.Client(transport=transport, trust_env=False) as client:
        yield lambda: client.get(lab.url).raise_for_status()


@contextmanager
def sync_httpx(lab: Lab) -> Iterator[Callable[[], object]]:
    with lab.system_dns(), httpx.Client(limits=WIDE, trust_env=False) as client:
        yield lambda: client.get(lab.url).raise_for_status()


SYNC_CLIENTS = {"mock": sync_mock, "headless (sync)": sync_headless, "httpx.Client": sync_httpx}


def measure_sync(send: Callable[[], object], threads: int, total: int) -> Run:
    def worker(requests: int) -> None:
        for _ in range(requests):
            send()

    def in_threads(requests: int) -> None:
        pool = [threading.Thread(target=worker, args=(requests,)) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    in_threads(WARMUP)
    per_thread = total // threads
    cpu, started = cpu_seconds(), time.perf_counter()
    in_threads(per_thread)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    done = per_thread * threads
    return Run(done / elapsed, cpu / done * 1e6)


def run_sync_cell(label: str, lab: Lab, threads: int, total: int, rounds: int) -> Cell:
    cell = Cell(label, {name: [] for name in SYNC_CLIENTS})
    for round_ in range(rounds):
        order = list(SYNC_CLIENTS) if round_ % 2 == 0 else list(reversed(SYNC_CLIENTS))
        for name in order:
            with SYNC_CLIENTS[name](lab) as send:
                cell.runs[name].append(measure_sync(send, threads, total))
    return cell


# -- the run -----------------------------------------------------------------------------------


def load_average() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


def verdict(ok: bool) -> str:
    return "met   " if ok else "MISSED"


async def default_engine() -> str:
    """The engine a ``HeadlessTransport`` built with the defaults uses."""
    async with HeadlessResolver() as resolver, HeadlessTransport(resolver) as transport:
        return transport.engine


def service_host(name: str) -> str:
    return f"{name}.default.svc.cluster.local"


async def compare_engines(nameserver: str, ports: dict[str, int], total: int, rounds: int) -> None:
    """The candidates for the pod engine, each under the same httpx front end."""
    lab = await Lab.found(nameserver, service_host("web"), ports["web"])
    clients: dict[str, Opener] = {"mock (front end only)": open_mock}
    clients |= {name: open_engine(make) for name, make in candidates().items()}
    clients["aiohttp alone"] = open_aiohttp
    print(
        f"Candidate engines under httpx.AsyncClient, 3 pods' addresses in turn; {total} GETs "
        f"per run, {rounds} rounds. Load average at start: {load_average()}"
    )
    for concurrency in (10, 50):
        cell = await run_cell(
            f"concurrency {concurrency}",
            lab,
            clients,
            concurrency,
            total,
            rounds,
        )
        cell.print(list(clients), "mock (front end only)", "httpcore (httpx.AsyncHTTPTransport)")
    print(f"\nLoad average at end: {load_average()}")


async def bench(nameserver: str, ports: dict[str, int], total: int, rounds: int) -> list[str]:
    lab = await Lab.found(nameserver, service_host("web"), ports["web"])
    print(f"HeadlessTransport engine (default, HTTP/1.1): {await default_engine()}")
    print(
        f"{total} GETs per run after {WARMUP} per worker of warm-up, {rounds} rounds in "
        "alternating order; figures are medians of rounds, ratios medians of same-round "
        f"ratios. Load average at start: {load_average()}"
    )
    names = list(ASYNC_CLIENTS)
    targets: list[str] = []
    for concurrency in (10, 50):
        cell = await run_cell(
            f"3 pods, concurrency {concurrency}",
            lab,
            ASYNC_CLIENTS,
            concurrency,
            total,
            rounds,
        )
        cell.print(names, "mock", "aiohttp")
        cpu = cell.cpu_ratio("headless/llhttp", "mock")
        vs_aiohttp = cell.rate_ratio("headless/llhttp", "aiohttp")
        vs_old = cell.rate_ratio("headless/llhttp", "headless/httpcore")
        floor = cell.rate_ratio("engine, no routing", "aiohttp")
        where = f"c={concurrency}"
        targets += [
            f"  {verdict(cpu <= 2.0)} 1. cpu/request <= 2.0x mock front end, {where}: {cpu:.2f}x",
            f"  {verdict(vs_aiohttp >= 0.5)} 2. req/s >= 0.5x aiohttp, {where}: {vs_aiohttp:.2f}x"
            f" (httpx over the pod pools with no routing at all: {floor:.2f}x)",
            f"  {verdict(vs_old >= 3.0)} 2. req/s >= 3x httpcore engine, {where}: {vs_old:.2f}x",
        ]
    solo = await Lab.found(nameserver, service_host("solo"), ports["solo"])
    one = {k: ASYNC_CLIENTS[k] for k in ("headless/llhttp", "headless/httpcore", "httpx")}
    cell = await run_cell("1 pod, concurrency 1", solo, one, 1, total, rounds)
    cell.print(list(one), "httpx", "httpx")
    single = cell.rate_ratio("headless/llhttp", "httpx")
    targets.append(
        f"  {verdict(single >= 0.95)} 3. 1 pod, c=1, >= 0.95x plain httpx: {single:.2f}x"
    )
    for threads in (1, 10):
        sync = await asyncio.to_thread(
            run_sync_cell, f"sync, 3 pods, {threads} thread(s)", lab, threads, total, rounds
        )
        sync.print(list(SYNC_CLIENTS), "mock", "httpx.Client")
    print(f"\nLoad average at end: {load_average()}")
    print("\ntargets (HeadlessTransport, RoundRobin, llhttp engine):")
    for line in targets:
        print(line)
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per client and cell")
    parser.add_argument(
        "--candidates",
        action="store_true",
        help="compare the candidate engines under httpx instead (how the engine was chosen)",
    )
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    pods = context.Process(target=serve_pods, args=(child,), daemon=True)
    pods.start()
    try:
        nameserver, ports = parent.recv()
        run = compare_engines if args.candidates else bench
        asyncio.run(run(nameserver, ports, args.requests, args.rounds))
    finally:
        parent.send("stop")
        pods.join(10)


if __name__ == "__main__":
    main()
