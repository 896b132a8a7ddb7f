"""The six scenarios of ``run.py``; each returns a ``Scenario`` of tables, targets and raw data.

Every number a table shows is compared with the alternatives measured in the same run, on the
same services, one client after another (throughput, tail) or all at once (convergence,
outage: every client sees the same scale event and the same DNS outage).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import bench_engine
import bench_resolver
import bench_strategies
from _clients import (
    AIOHTTP_DNS_TTL,
    CLIENTS,
    DEFAULT,
    WIDE,
    Send,
    open_client,
)
from _report import Check, Scenario, Table, ratio
from _targets import LocalTarget, Target

from headless_resolver import EndpointSet, HeadlessResolver, RoundRobin


@dataclass(frozen=True)
class Sizes:
    """How much of everything a run does."""

    name: str
    ttl: int
    """Cluster DNS TTL, seconds."""
    requests: int
    """Requests per throughput measurement."""
    concurrency: tuple[int, ...]
    wide_pods: int
    tail_requests: int
    window: float
    """Seconds of traffic watched after a scale-up, and the grace of a removed pod."""
    outage: float
    hit_calls: int
    refresh_pods: int
    refreshes: int
    sticky_pods: tuple[int, ...]
    picks: int
    sticky_keys: int
    settle: float = 1.0
    """Seconds of steady traffic before and after a scale event or an outage."""


SIZES = {
    "smoke": Sizes(
        name="smoke", ttl=1, requests=40, concurrency=(1, 10), wide_pods=10,
        tail_requests=150, window=1.5, outage=1.5, hit_calls=2_000, refresh_pods=500,
        refreshes=2, sticky_pods=(10,), picks=2_000, sticky_keys=20_000, settle=0.5,
    ),
    "quick": Sizes(
        name="quick", ttl=2, requests=300, concurrency=(1, 10, 50), wide_pods=10,
        tail_requests=1_200, window=5.0, outage=6.0, hit_calls=30_000, refresh_pods=5_000,
        refreshes=3, sticky_pods=(10, 100), picks=10_000, sticky_keys=100_000,
    ),
    "full": Sizes(
        name="full", ttl=5, requests=2_000, concurrency=(1, 10, 50), wide_pods=10,
        tail_requests=10_000, window=15.0, outage=30.0, hit_calls=200_000, refresh_pods=5_000,
        refreshes=20, sticky_pods=(10, 100), picks=20_000, sticky_keys=100_000,
    ),
}  # fmt: skip

ROUNDS = 3
BOUNDED_PODS = (10, 100, 1000)
"""Pod counts for Sticky with bounded loads: up to the 1,000 the strategies issue names."""
"""Throughput: each cell's clients take turns this many times; a client's best round counts,
so a burst of load from elsewhere on the machine does not decide a ratio."""
SLOW_POD_LATENCY = 0.050
TAIL_CONCURRENCY = 10
PACED_WORKERS = 4
PACE = 0.02
"""Seconds each worker of a paced client waits between requests (about 200 req/s a client)."""


# -- load generation ----------------------------------------------------------------------------


@dataclass
class Load:
    rate: float = 0.0
    hits: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


async def drive(send: Send, concurrency: int, total: int, *, warmup: int = 0) -> Load:
    """``total`` requests from ``concurrency`` workers as fast as they answer.

    A failed request is counted (``failures``, ``errors`` by type) and the run goes on, as in
    ``paced()``: in a real cluster one lookup may fail (glibc's parallel A/AAAA queries racing
    in conntrack) and must not abort the whole benchmark. ``rate`` counts answered requests.
    """
    load = Load()

    async def attempt() -> str | None:
        try:
            return await send()
        except Exception as error:  # every failure counts, whatever the client raises
            load.failures += 1
            load.errors[type(error).__name__] += 1
            return None

    if warmup:
        await asyncio.gather(*(attempt() for _ in range(warmup)))
        load.failures, load.errors = 0, collections.Counter()
    per_worker = max(total // concurrency, 1)

    async def worker() -> None:
        for _ in range(per_worker):
            started = time.perf_counter()
            pod = await attempt()
            if pod is not None:
                load.latencies.append(time.perf_counter() - started)
                load.hits[pod] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    answered = per_worker * concurrency - load.failures
    load.rate = answered / (time.perf_counter() - started)
    if load.failures:
        errors = ", ".join(f"{name} {n}" for name, n in load.errors.most_common())
        print(
            f"{load.failures} of {per_worker * concurrency} requests failed: {errors}",
            file=sys.stderr,
        )
    return load


@dataclass
class Timeline:
    """Paced traffic of one client: ``(seconds since start, pod or None if it failed)``."""

    events: list[tuple[float, str | None]] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


async def paced(send: Send, timeline: Timeline, origin: float, stop: asyncio.Event) -> None:
    """``PACED_WORKERS`` workers, each sending a request every ``PACE`` seconds until ``stop``."""

    async def worker() -> None:
        while not stop.is_set():
            sent = time.perf_counter() - origin
            try:
                pod: str | None = await send()
            except Exception as error:  # every failure counts, whatever the client raises
                pod = None
                timeline.errors[type(error).__name__] += 1
            timeline.events.append((sent, pod))
            await asyncio.sleep(PACE)

    await asyncio.gather(*(worker() for _ in range(PACED_WORKERS)))


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``samples``."""
    rank = max(math.ceil(fraction * len(samples)), 1)
    return samples[min(rank, len(samples)) - 1]


def spread(hits: collections.Counter[str], pods: Sequence[str]) -> float:
    """Max over min requests per pod; ``inf`` when a pod got none."""
    counts = [hits.get(pod, 0) for pod in pods]
    return max(counts) / min(counts) if min(counts) else math.inf


# -- 2. throughput and spread ------------------------------------------------------------------


async def throughput(target: Target, sizes: Sizes, tick: Callable[[str], None]) -> Scenario:
    small = await target.service("small", 3)
    wide = await target.service("wide", sizes.wide_pods)
    single = (small.pod_url(small.pods[0]), small.pods[:1])
    cases = [("1 pod", *single), ("3 pods", small.url, small.pods)]
    cases.append((f"{len(wide.pods)} pods", wide.url, wide.pods))
    scenario = Scenario(
        "throughput",
        "2. Throughput and spread",
        notes=[
            f"{sizes.requests} requests per client and cell in {ROUNDS} interleaved rounds after a "
            "warm-up (req/s: the best round), limits max_connections=100, "
            "max_keepalive_connections=100 unless marked; spread = max/min requests per pod; "
            "1 pod = the per-pod name of one pod",
        ],
    )
    table = Table(
        "Requests per second",
        ["pods", "concurrency", "client", "req/s", "vs httpx", "vs aiohttp", "spread"],
    )
    rows: list[dict[str, Any]] = []
    for label, url, pods in cases:
        for concurrency in sizes.concurrency:
            limits_cases = [("keep 100", WIDE)]
            if label == "3 pods" and concurrency == max(sizes.concurrency):
                limits_cases.append(("httpx default limits", DEFAULT))
            for limits_name, limits in limits_cases:
                clients = CLIENTS if limits is WIDE else ("headless/round-robin", "httpx")
                measured: dict[str, Load] = {}
                tick(f"throughput {label} c={concurrency} {limits_name}")
                for _ in range(ROUNDS):
                    for client in clients:
                        async with open_client(
                            client, url, target.nameserver, limits=limits
                        ) as send:
                            load = await drive(
                                send,
                                concurrency,
                                sizes.requests // ROUNDS,
                                warmup=min(4 * concurrency, 100),
                            )
                        best = measured.setdefault(client, Load())
                        best.rate = max(best.rate, load.rate)
                        best.hits.update(load.hits)
                for client, load in measured.items():
                    row = {
                        "pods": label,
                        "concurrency": concurrency,
                        "limits": limits_name,
                        "client": client,
                        "rate": load.rate,
                        "vs_httpx": ratio(load.rate, measured["httpx"].rate),
                        "vs_aiohttp": ratio(load.rate, measured["aiohttp"].rate)
                        if "aiohttp" in measured
                        else math.nan,
                        "spread": spread(load.hits, pods),
                        "hits": dict(load.hits),
                    }
                    rows.append(row)
                    name = client if limits is WIDE else f"{client} ({limits_name})"
                    table.rows.append(
                        [
                            label,
                            concurrency,
                            name,
                            load.rate,
                            row["vs_httpx"],
                            "" if math.isnan(row["vs_aiohttp"]) else row["vs_aiohttp"],
                            row["spread"],
                        ]
                    )
    scenario.tables.append(table)
    scenario.data["rows"] = rows
    scenario.checks += throughput_checks(rows)
    return scenario


def throughput_checks(rows: list[dict[str, Any]]) -> list[Check]:
    rr = [row for row in rows if row["client"] == "headless/round-robin"]
    top = max(row["concurrency"] for row in rows)
    single = [row["vs_httpx"] for row in rr if row["pods"] == "1 pod"]
    busy = [
        row["vs_httpx"]
        for row in rr
        if row["pods"] == "3 pods" and row["concurrency"] == top and row["limits"] == "keep 100"
    ]
    spreads = [row["spread"] for row in rr if row["pods"] != "1 pod"]
    return [
        Check("transport: 1 pod vs plain httpx, worst concurrency", min(single), 0.95, ">="),
        Check(
            f"transport: 3 pods, concurrency {top}, keep 100 alive, vs plain httpx",
            busy[0],
            2.0,
            ">=",
        ),
        Check("transport: round-robin max/min requests per pod", max(spreads), 1.05, "<="),
    ]


# -- 3. tail latency -------------------------------------------------------------------------


async def tail_latency(target: Target, sizes: Sizes, tick: Callable[[str], None]) -> Scenario:
    slow = await target.service("slow", 3)
    if isinstance(target, LocalTarget):
        await target.call("latency", slow.name, 0, SLOW_POD_LATENCY)
    scenario = Scenario(
        "tail",
        "3. Tail latency, one pod 50 ms slower",
        notes=[
            f"3 pods, {slow.pods[0]} answers {SLOW_POD_LATENCY * 1000:.0f} ms late; "
            f"{sizes.tail_requests} requests per client at concurrency {TAIL_CONCURRENCY}"
        ],
    )
    table = Table(
        "Latency, ms",
        ["client", "p50", "p99", "p99.9", "p99 vs httpx", "p99 vs aiohttp", "to slow pod"],
    )
    measured: dict[str, Load] = {}
    for client in CLIENTS:
        tick(f"tail latency {client}")
        async with open_client(client, slow.url, target.nameserver) as send:
            load = await drive(send, TAIL_CONCURRENCY, sizes.tail_requests, warmup=30)
        load.latencies.sort()
        measured[client] = load
    p99 = {client: percentile(load.latencies, 0.99) for client, load in measured.items()}
    for client, load in measured.items():
        total = sum(load.hits.values())
        table.rows.append(
            [
                client,
                percentile(load.latencies, 0.5) * 1000,
                p99[client] * 1000,
                percentile(load.latencies, 0.999) * 1000,
                ratio(p99[client], p99["httpx"]),
                ratio(p99[client], p99["aiohttp"]),
                f"{load.hits.get(slow.pods[0], 0) / total:.0%}",
            ]
        )
    scenario.tables.append(table)
    simulated = {
        name: bench_strategies.slow_pod_share(name) for name in bench_strategies.strategies()
    }
    scenario.tables.append(
        Table(
            "Fake-clock simulation (bench_strategies): 10 pods, one 50 ms slower, 16 in flight",
            ["strategy", "requests to the slow pod"],
            [[name, f"{share:.2%}"] for name, share in simulated.items()],
        )
    )
    scenario.data["simulated_slow_share"] = simulated
    scenario.data["latencies_ms"] = {
        client: [round(x * 1000, 3) for x in load.latencies] for client, load in measured.items()
    }
    scenario.data["slow_share"] = {
        client: load.hits.get(slow.pods[0], 0) / sum(load.hits.values())
        for client, load in measured.items()
    }
    return scenario


# -- 4. convergence --------------------------------------------------------------------------


async def convergence(target: LocalTarget, sizes: Sizes, tick: Callable[[str], None]) -> Scenario:
    tick("convergence")
    service = await target.service("conv", 3)
    new_pod = f"{service.name}-3"
    timelines = {client: Timeline() for client in CLIENTS}
    stop = asyncio.Event()
    origin = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        senders = {
            client: await stack.enter_async_context(
                open_client(client, service.url, target.nameserver, seed=i)
            )
            for i, client in enumerate(CLIENTS)
        }
        traffic = [
            asyncio.create_task(paced(send, timelines[client], origin, stop))
            for client, send in senders.items()
        ]
        await asyncio.sleep(sizes.settle)
        scaled_up = time.perf_counter() - origin
        await target.call("scale", service.name, 4, 0.0)
        await asyncio.sleep(sizes.window)
        removed = time.perf_counter() - origin
        await target.call("scale", service.name, 3, sizes.window)
        stopped = time.perf_counter() - origin
        await asyncio.sleep(sizes.settle)
        stop.set()
        await asyncio.gather(*traffic)
    marks = {"scale_up": scaled_up, "removed_from_dns": removed, "pod_stopped": stopped}
    scenario = Scenario(
        "convergence",
        "4. Convergence after scale-up and scale-down",
        notes=[
            f"3 -> 4 pods, then back to 3: {new_pod} leaves DNS and keeps serving "
            f"{sizes.window:g} s (termination grace) before it stops; DNS TTL {target.ttl} s; "
            f"each client sends from {PACED_WORKERS} workers with keep-alive, "
            f"one request per worker every {PACE * 1000:.0f} ms; aiohttp ttl_dns_cache="
            f"{AIOHTTP_DNS_TTL} s"
        ],
    )
    table = Table(
        "After scale-up / scale-down",
        [
            "client",
            "s to first request on new pod",
            "new pod share, last second",
            "requests to removed pod after DNS removal",
            "failed requests",
        ],
    )
    summary = {}
    for client, timeline in timelines.items():
        events = timeline.events
        firsts = [t - scaled_up for t, pod in events if pod == new_pod and t >= scaled_up]
        last = [pod for t, pod in events if removed - 1.0 <= t < removed]
        after = sum(1 for t, pod in events if pod == new_pod and t >= removed)
        failed = sum(1 for _, pod in events if pod is None)
        first = min(firsts) if firsts else math.inf
        share = last.count(new_pod) / len(last) if last else 0.0
        summary[client] = {
            "first_request_s": first,
            "new_pod_share": share,
            "after_removal": after,
            "failed": failed,
            "errors": dict(timeline.errors),
        }
        shown_first = f"{first:.2f}" if firsts else f"never in {sizes.window:g} s"
        table.rows.append([client, shown_first, f"{share:.0%}", after, failed])
    scenario.tables.append(table)
    scenario.data = {
        "marks": marks,
        "new_pod": new_pod,
        "summary": summary,
        "events": {
            client: [(round(t, 3), pod) for t, pod in timeline.events]
            for client, timeline in timelines.items()
        },
    }
    return scenario


# -- 5. DNS outage ---------------------------------------------------------------------------

NO_STALE = "headless/round-robin, stale_ttl=0"


async def dns_outage(target: LocalTarget, sizes: Sizes, tick: Callable[[str], None]) -> Scenario:
    tick("dns outage")
    service = await target.service("outage", 3)
    runs: list[tuple[str, str, bool]] = []
    for close in (False, True):
        mode = "new connection per request" if close else "keep-alive"
        runs += [(client, mode, close) for client in (*CLIENTS, NO_STALE)]
    timelines = {(client, mode): Timeline() for client, mode, _ in runs}
    stop = asyncio.Event()
    origin = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        traffic = []
        for i, (client, mode, close) in enumerate(runs):
            kind = "headless/round-robin" if client == NO_STALE else client
            options = {"stale_ttl": 0.0} if client == NO_STALE else None
            send = await stack.enter_async_context(
                open_client(
                    kind,
                    service.url,
                    target.nameserver,
                    close_connections=close,
                    resolver_options=options,
                    seed=i,
                )
            )
            timeline = timelines[client, mode]
            traffic.append(asyncio.create_task(paced(send, timeline, origin, stop)))
        await asyncio.sleep(sizes.settle)
        down = time.perf_counter() - origin
        await target.call("dns_down")
        await asyncio.sleep(sizes.outage)
        up = time.perf_counter() - origin
        await target.call("dns_up")
        await asyncio.sleep(2 * sizes.settle)
        stop.set()
        await asyncio.gather(*traffic)
    notes = [
        f"DNS stopped (port closed) for {sizes.outage:g} s during paced traffic, TTL "
        f"{target.ttl} s. Keep-alive: requests reuse pooled connections. New connection per "
        "request: every request sends Connection: close (aiohttp: force_close), so plain "
        "clients must resolve the name again for each request."
    ]
    if sizes.outage < 30:
        notes.append(f"Shortened from 30 s to {sizes.outage:g} s for a {sizes.name} run.")
    if sizes.outage <= AIOHTTP_DNS_TTL:
        notes.append(
            f"The outage is shorter than aiohttp's {AIOHTTP_DNS_TTL} s DNS cache, which can "
            "ride it out here."
        )
    scenario = Scenario("outage", "5. DNS outage during traffic", notes=notes)
    table = Table(
        "Failed requests",
        ["client", "connections", "requests", "failed", "failed %", "errors"],
    )
    summary = []
    for (client, mode), timeline in timelines.items():
        during = [pod for t, pod in timeline.events if t >= down]
        failed = sum(1 for pod in during if pod is None)
        errors = ", ".join(f"{name} {n}" for name, n in timeline.errors.most_common(2))
        table.rows.append(
            [client, mode, len(during), failed, f"{failed / max(len(during), 1):.1%}", errors]
        )
        summary.append({"client": client, "mode": mode, "requests": len(during), "failed": failed})
    scenario.tables.append(table)
    scenario.data = {"down": down, "up": up, "summary": summary}
    return scenario


# -- 1. hot path -----------------------------------------------------------------------------

RESOLVER_HIT = "HeadlessResolver.resolve() hit"
ALRU_HIT = "async_lru.alru_cache(ttl=300) hit"
RESOLVE_AND_PICK = "HeadlessResolver.resolve() hit + RoundRobin pick"
GETADDRINFO = "loop.getaddrinfo (system resolution, no cache)"


async def hot_path(lab: LocalTarget, sizes: Sizes, tick: Callable[[str], None]) -> Scenario:
    """Costs of a lookup that needs no I/O, from ``bench_resolver``, plus pick and getaddrinfo."""
    tick("hot path")
    await lab.call("dns_only", "web", 3)
    host, _, port = lab.nameserver.rpartition(":")
    costs = await bench_resolver.hit_costs(lab.nameserver, host, int(port), calls=sizes.hit_calls)
    strategy = RoundRobin()
    async with HeadlessResolver(
        [lab.nameserver], namespace="default", cluster_domain="cluster.local"
    ) as resolver:

        async def resolve_and_pick(name: str) -> None:
            strategy.release(strategy.pick(await resolver.resolve(name)))

        costs[RESOLVE_AND_PICK] = await bench_resolver.ns_per_call(
            resolve_and_pick, bench_resolver.WEB, calls=sizes.hit_calls
        )
    loop = asyncio.get_running_loop()
    with lab.system_dns():
        costs[GETADDRINFO] = await bench_resolver.ns_per_call(
            loop.getaddrinfo, bench_resolver.WEB, 80, calls=max(sizes.hit_calls // 1000, 20)
        )
    ours = costs[RESOLVE_AND_PICK]
    table = Table(
        "Cost of one lookup that hits a cache",
        ["lookup", "ns per call", "vs resolve() + pick"],
        [[label, ns, ratio(ns, ours)] for label, ns in costs.items()],
    )
    return Scenario(
        "hot_path",
        "1. Hot path: a lookup on a cache hit",
        [table],
        [
            Check(
                "resolver: resolve() hit vs alru_cache hit",
                costs[RESOLVER_HIT] / costs[ALRU_HIT],
                0.5,
                "<=",
            )
        ],
        notes=[
            f"best of {bench_resolver.REPEATS} runs of {sizes.hit_calls:,} sequential awaits "
            "(fewer for the slower lookups); 3-pod service; the getaddrinfo row is a full DNS "
            "exchange per call, as glibc does without nscd"
        ],
        data={"ns_per_call": costs},
    )


# -- 6. scale --------------------------------------------------------------------------------


async def scale(lab: LocalTarget, sizes: Sizes, tick: Callable[[str], None]) -> Scenario:
    tick("scale: refresh cost")
    huge = sizes.refresh_pods
    await lab.call("dns_only", "big", 2000)
    await lab.call("dns_only", "huge", huge)
    table = Table(
        "Refresh: CPU per full refresh (A + AAAA, UDP truncated then TCP, parse, build the set)",
        ["pods", "backend", "endpoints received", "CPU ms"],
    )
    refresh: dict[str, dict[str, float]] = {}
    for backend in ("dnspython", "aiodns"):
        ms = await bench_resolver.refresh_cpu_ms(backend, lab.nameserver, 2000, sizes.refreshes)
        table.rows.append([2000, backend, 2000, ms])
        cost = await bench_resolver.refresh_cost(backend, lab.nameserver, "huge", sizes.refreshes)
        table.rows.append([huge, backend, cost.received, cost.cpu_ms])
        refresh[backend] = {"2000": ms, str(huge): cost.cpu_ms, "received": cost.received}
    fastest = min(values["2000"] for values in refresh.values())
    checks = [
        Check("resolver: 2,000-pod refresh, faster backend, CPU ms", fastest, 20.0, "<=", " ms")
    ]
    tick("scale: pick cost and sticky balance")
    picks = Table(
        f"Pick cost (pick + release, best of 5 x {sizes.picks:,} picks, warm table)",
        ["strategy", "3 pods, µs", f"{huge:,} pods, µs", "ratio", f"table build {huge:,}, ms"],
    )
    pick_data = {}
    small, big = (EndpointSet("web", bench_strategies.pods(n), version=1) for n in (3, huge))
    for name, strategy in bench_strategies.strategies().items():
        _, cost_small = bench_strategies.pick_cost_us(strategy, small, sizes.picks)
        build_ms, cost_big = bench_strategies.pick_cost_us(strategy, big, sizes.picks)
        picks.rows.append([name, cost_small, cost_big, cost_big / cost_small, build_ms])
        pick_data[name] = {"3": cost_small, str(huge): cost_big, "build_ms": build_ms}
        checks.append(
            Check(
                f"strategies: {name} pick cost {huge:,} / 3 pods", cost_big / cost_small, 1.5, "<="
            )
        )
    sticky = Table(
        f"Sticky, {sizes.sticky_keys:,} keys",
        [
            "pods",
            "max/mean load",
            "uniform hash max/mean",
            "moved x N (one removed)",
            "moved x (N+1) (one added)",
        ],
    )
    keys = bench_strategies.KEYS[: sizes.sticky_keys]
    balance = {size: bench_strategies.sticky_balance(size, keys) for size in sizes.sticky_pods}
    for size, (high, uniform, _, moved_out, moved_in) in balance.items():
        sticky.rows.append([size, high, uniform, moved_out, moved_in])
    pods_shown = " and ".join(str(size) for size in sizes.sticky_pods)
    checks += [
        Check(
            f"strategies: sticky moved fraction x N on removal, {pods_shown} pods",
            max(b[3] for b in balance.values()),
            1.2,
            "<=",
        ),
        Check(
            f"strategies: sticky max/mean load, {pods_shown} pods",
            max(b[0] for b in balance.values()),
            1.1,
            "<=",
        ),
    ]
    bounded = Table(
        f"Sticky(balance_factor=1.1), {sizes.sticky_keys:,} keys all in flight",
        ["pods", "max/mean load", "keys not on their first choice", "µs per pick"],
    )
    bounded_data = {}
    for size in BOUNDED_PODS:
        high, moved, cost = bench_strategies.bounded_balance(size, 1.1, keys)
        bounded.rows.append([size, high, f"{moved:.2%}", cost])
        bounded_data[str(size)] = {"max_mean": high, "moved": moved, "pick_us": cost}
    # The bound is ceil(1.1 x keys / N) requests a pod: exactly 1.1 x the mean at these sizes.
    checks.append(
        Check(
            "strategies: Sticky(balance_factor=1.1) max/mean load, 10 to 1,000 pods",
            max(row["max_mean"] for row in bounded_data.values()),
            1.1,
            "<=",
        )
    )
    return Scenario(
        "scale",
        f"6. Scale: a {huge:,}-pod service",
        [table, picks, sticky, bounded],
        checks,
        notes=[
            "DNS answers past ~4,000 A records do not fit even a TCP message: the resolver "
            "keeps what arrived. Pick costs and Sticky balance from bench_strategies."
        ],
        data={
            "refresh_cpu_ms": refresh,
            "pick_us": pick_data,
            "sticky": balance,
            "sticky_bounded": bounded_data,
        },
    )


# -- 7. client CPU per request -----------------------------------------------------------------


async def engine_cost(target: Target, sizes: Sizes, tick: Callable[[str], None]) -> Scenario:
    """HeadlessTransport's pod engines against httpx's front end alone, aiohttp and plain httpx.

    The clients of ``bench_engine``, over the 3-pod service, at each concurrency above 1.
    """
    small = await target.service("small", 3)
    lab = await bench_engine.Lab.found(
        target.nameserver, small.fqdn, small.port, emulate_system_dns=False
    )
    engine = await bench_engine.default_engine()
    scenario = Scenario(
        "engine",
        "7. Client CPU per request",
        notes=[
            f"HeadlessTransport's default engine here: {engine}. {sizes.requests} GETs per "
            f"client and cell in {ROUNDS} interleaved rounds; cpu = client CPU (user + system) "
            "per request; ratios are medians of same-round ratios. mock = httpx.AsyncClient + "
            "httpx.MockTransport (httpx's front end, no network); aiohttp sends to the pods' "
            "addresses in turn; httpx = plain httpx over the service name, default limits "
            "(20 kept alive) and keep100 (100 kept alive)",
        ],
    )
    table = Table(
        "Client CPU per request, 3 pods",
        ["concurrency", "client", "req/s", "vs aiohttp", "cpu us", "vs mock"],
    )
    rows: list[dict[str, Any]] = []
    for concurrency in [c for c in sizes.concurrency if c > 1]:
        tick(f"engine cost c={concurrency}")
        cell = await bench_engine.run_cell(
            f"c={concurrency}",
            lab,
            bench_engine.ASYNC_CLIENTS,
            concurrency,
            sizes.requests,
            ROUNDS,
        )
        for client in bench_engine.ASYNC_CLIENTS:
            row = {
                "concurrency": concurrency,
                "client": client,
                "rate": cell.rate(client),
                "vs_aiohttp": cell.rate_ratio(client, "aiohttp"),
                "cpu_us": cell.cpu(client),
                "cpu_vs_mock": cell.cpu_ratio(client, "mock"),
            }
            rows.append(row)
            table.rows.append(
                [
                    concurrency,
                    client,
                    row["rate"],
                    row["vs_aiohttp"],
                    row["cpu_us"],
                    row["cpu_vs_mock"],
                ]
            )
        ours, old = "headless/llhttp", "headless/httpcore"
        scenario.checks += [
            Check(
                f"engine: CPU per request vs httpx + MockTransport, concurrency {concurrency}",
                cell.cpu_ratio(ours, "mock"),
                2.0,
                "<=",
            ),
            Check(
                f"engine: req/s vs aiohttp, concurrency {concurrency}",
                cell.rate_ratio(ours, "aiohttp"),
                0.5,
                ">=",
            ),
            Check(
                f"engine: req/s vs the httpcore engine, concurrency {concurrency}",
                cell.rate_ratio(ours, old),
                3.0,
                ">=",
            ),
        ]
    scenario.tables.append(table)
    scenario.data["rows"] = rows
    scenario.data["engine"] = engine
    return scenario
