"""Latency-aware selection over real sockets: issue #12's six targets, each a ratio in one run.

Run: ``flock /tmp/bench.lock python benchmarks/bench_latency.py [--quick] [--out DIR]``.

Pods and cluster DNS run in a child process (``_targets.LocalTarget``), so the client measured
shares no CPU time with them; each client is ``httpx.AsyncClient`` over ``HeadlessTransport``
with its own resolver. Open loop: requests start at a fixed rate whatever the answers do, and
latency counts from the scheduled start (what a service sees, no coordinated omission).
Closed loop: N workers send back to back (a busy client). Every comparison is measured in the
same run: the same client over the 4 fast pods alone, RoundRobin over identical pods,
PeakEwma (the former LeastLatency) beside LeastLatency. The clients of a cell take turns in
rounds; tables show each client's median round, and a ratio is the median over rounds of the
ratio within a round (the two clients ran back to back).

1. one pod +50 ms among 5, closed loop at concurrency 10 and 50: share on the slow pod and p99
   vs the same client over the 4 fast pods alone;
2. the same in open loop at 200 req/s and at 80 % of the client's measured capacity (its
   CPU-bound open-loop rate: one CPU-second over its CPU time per request in open loop);
3. five identical pods: p50 and p99 vs RoundRobin (open and closed loop), and max/min requests
   per pod of sequential requests;
4. a pod turns 50 ms slow during traffic, then recovers: its share 1-2 s after, and how soon
   it is back to half its fair share;
5. ten independent clients over 5 pods, one twice as fast: its share;
6. slow start: a pod added under traffic, its share in its first second and at the end of the
   window.

Prints Markdown tables and the targets met or missed on stdout, writes ``latency.json`` to
``--out``, progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import httpx  # noqa: E402
from _targets import LocalTarget, Service, cpu_seconds  # noqa: E402

from headless_resolver import (  # noqa: E402
    HeadlessResolver,
    HeadlessTransport,
    LeastLatency,
    PeakEwma,
    RoundRobin,
    SlowStart,
    Strategy,
)

SLOW = 0.050
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)
STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "LeastLatency": LeastLatency,
    "PeakEwma": PeakEwma,
    "RoundRobin": RoundRobin,
}
Send = Callable[[], Awaitable[str]]


@dataclass(frozen=True)
class Sizes:
    seconds: float
    """Measured seconds of each steady run (after a warm-up of a quarter of it)."""
    sequential: int
    slow_for: float
    watch_after: float
    window: float
    """Slow-start window, seconds."""
    rounds: int
    """Runs of each client per cell of scenarios 1 to 3, interleaved with the others': tail
    ratios of a client that is itself the bottleneck move from run to run, medians less so."""


SIZES = {
    "quick": Sizes(
        seconds=2.0, sequential=300, slow_for=3.0, watch_after=10.0, window=10.0, rounds=3
    ),
    "full": Sizes(
        seconds=5.0, sequential=600, slow_for=5.0, watch_after=12.0, window=10.0, rounds=5
    ),
}


@dataclass
class Run:
    """Requests of one measured run: ``(seconds since start, pod, latency)``."""

    events: list[tuple[float, str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.events) / self.seconds if self.seconds else 0.0

    def share(self, pod: str, start: float = 0.0, end: float = math.inf) -> float:
        window = [name for at, name, _ in self.events if start <= at < end]
        return window.count(pod) / max(len(window), 1)

    def percentile_ms(self, fraction: float) -> float:
        latencies = sorted(took for _, _, took in self.events)
        if not latencies:
            return math.nan
        rank = max(math.ceil(fraction * len(latencies)), 1)
        return latencies[min(rank, len(latencies)) - 1] * 1000


@dataclass
class Rounds:
    """The runs of one client in one cell: shares pool every round, percentiles take the
    median round (a burst of load from elsewhere on the machine spoils one round, not the
    figure)."""

    runs: list[Run] = field(default_factory=list)

    def share(self, pod: str) -> float:
        events = [event for run in self.runs for event in run.events]
        return Run(events).share(pod)

    def percentile_ms(self, fraction: float) -> float:
        return statistics.median(run.percentile_ms(fraction) for run in self.runs)

    @property
    def rate(self) -> float:
        return statistics.median(run.rate for run in self.runs)

    def ratio(self, other: Rounds, measure: Callable[[Run, Run], float]) -> float:
        """The median over rounds of ``measure(this round, the other's same round)``: the two
        clients of a round ran back to back, so a slow spell of the machine that spans a
        round weighs on both sides of its ratio, not on one client's median."""
        return statistics.median(map(measure, self.runs, other.runs))


Drive = Callable[[Send], Awaitable[Run]]


def p50_ratio(run: Run, other: Run) -> float:
    return run.percentile_ms(0.5) / other.percentile_ms(0.5)


def p99_ratio(run: Run, other: Run) -> float:
    return run.percentile_ms(0.99) / other.percentile_ms(0.99)


def p99_over_bound(run: Run, fast: Run) -> float:
    """Target 2's ratio: p99 over 1.5 x the fast pods' p99 + 1 ms."""
    return run.percentile_ms(0.99) / (1.5 * fast.percentile_ms(0.99) + 1.0)


async def interleaved(
    nameserver: str,
    cases: dict[str, tuple[Service, Callable[[], Strategy]]],
    drive: Drive,
    rounds: int,
) -> dict[str, Rounds]:
    """Each case's client driven ``rounds`` times, the cases taking turns, in reverse order
    every other round: no case always runs first (right after the previous cell's clients
    closed their connections) or always last."""
    measured = {label: Rounds() for label in cases}
    for round_ in range(rounds):
        order = list(cases) if round_ % 2 == 0 else list(reversed(cases))
        for label in order:
            service, make = cases[label]
            async with open_client(nameserver, service, make()) as send:
                measured[label].runs.append(await drive(send))
    return measured


@contextlib.asynccontextmanager
async def open_client(nameserver: str, service: Service, strategy: Strategy) -> AsyncIterator[Send]:
    async with (
        HeadlessResolver([nameserver]) as resolver,
        httpx.AsyncClient(
            transport=HeadlessTransport(resolver, strategy, limits=LIMITS), trust_env=False
        ) as client,
    ):

        async def send() -> str:
            response = await client.get(service.url)
            response.raise_for_status()
            return response.headers["x-pod"]

        yield send


async def closed(send: Send, workers: int, seconds: float, *, warmup: float = 0.0) -> Run:
    """``workers`` requests always in flight for ``seconds`` (after ``warmup`` unmeasured)."""
    run = Run()
    started = time.perf_counter() + warmup

    async def worker() -> None:
        while (now := time.perf_counter()) - started < seconds:
            pod = await send()
            if now >= started:
                run.events.append((now - started, pod, time.perf_counter() - now))

    await asyncio.gather(*(worker() for _ in range(workers)))
    run.seconds = seconds
    return run


async def open_loop(send: Send, rate: float, seconds: float, *, warmup: float = 0.0) -> Run:
    """A request every ``1 / rate`` seconds, whatever the answers do; latency counts from the
    scheduled start."""
    run = Run()
    origin = time.perf_counter()
    started = origin + warmup

    async def one(scheduled: float) -> None:
        pod = await send()
        if scheduled >= started:
            run.events.append((scheduled - started, pod, time.perf_counter() - scheduled))

    tasks = []
    for tick in range(int((warmup + seconds) * rate)):
        scheduled = origin + tick / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    run.seconds = seconds
    return run


async def open_loop_capacity(
    nameserver: str, service: Service, make: Callable[[], Strategy], rate: float, seconds: float
) -> float:
    """Requests per second the client can start in open loop: one CPU-second over its CPU
    seconds per request, measured at ``rate`` (about half its closed-loop capacity).

    The client is one thread, so it saturates when its CPU time reaches one second per
    second. An open-loop client pays more per request than a closed-loop one (a task and a
    timer per request), so 80 % of its closed-loop rate can be more than it can sustain; at
    such a rate every client queues without bound and the comparison says nothing.
    """
    async with open_client(nameserver, service, make()) as send:
        await open_loop(send, rate, seconds / 4)
        cpu = cpu_seconds()
        run = await open_loop(send, rate, seconds)
        cpu = cpu_seconds() - cpu
    return len(run.events) / cpu


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    checks: list[tuple[str, float, float, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def table(self, title: str, header: list[str], rows: list[list[Any]]) -> None:
        self.lines += [f"### {title}", "", "| " + " | ".join(header) + " |"]
        self.lines.append("|" + "---|" * len(header))
        for row in rows:
            self.lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
        self.lines.append("")

    def check(self, name: str, value: float, bound: float, op: str) -> None:
        self.checks.append((name, value, bound, op))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- 1 and 2: one pod +50 ms among 5 ------------------------------------------------------------


async def slow_pod(lab: LocalTarget, sizes: Sizes, report: Report) -> None:
    five = await lab.service("lat-slow", 5)
    await lab.call("latency", five.name, 0, SLOW)
    four = await lab.service("lat-fast", 4)
    slow = five.pods[0]
    warmup = sizes.seconds / 4
    rows = []
    capacity: dict[str, float] = {}
    # Every strategy over the five pods and over the four fast ones alone, in both loops.
    cases = {
        f"{name} {label}": (service, make)
        for name, make in STRATEGIES.items()
        for label, service in (("five", five), ("four", four))
    }
    for concurrency in (10, 50):
        progress(f"1. closed loop c={concurrency}")
        measured = await interleaved(
            lab.nameserver,
            cases,
            lambda send, c=concurrency: closed(send, c, sizes.seconds, warmup=warmup),
            sizes.rounds,
        )
        rate = measured["LeastLatency four"].rate
        capacity["LeastLatency"] = max(capacity.get("LeastLatency", 0.0), rate)
        for name in STRATEGIES:
            runs = {label: measured[f"{name} {label}"] for label in ("five", "four")}
            share = runs["five"].share(slow)
            ratio = runs["five"].ratio(runs["four"], p99_ratio)
            rows.append(
                [
                    name,
                    concurrency,
                    f"{runs['five'].rate:.0f}",
                    runs["five"].percentile_ms(0.5),
                    runs["five"].percentile_ms(0.99),
                    runs["four"].percentile_ms(0.99),
                    ratio,
                    f"{share:.2%}",
                ]
            )
            report.data.setdefault("closed", []).append(
                {"client": name, "concurrency": concurrency, "share": share, "p99_ratio": ratio}
            )
            if name == "LeastLatency":
                report.check(
                    f"1. closed c={concurrency}: share on the slow pod", share, 0.005, "<="
                )
                report.check(f"1. closed c={concurrency}: p99 / 4 fast pods' p99", ratio, 1.5, "<=")
    report.table(
        "1. One pod +50 ms among 5, closed loop",
        ["client", "concurrency", "req/s", "p50 ms", "p99 ms", "4 fast pods p99 ms",
         "p99 ratio", "share on slow pod"],
        rows,
    )  # fmt: skip
    progress("2. the client's open-loop capacity")
    closed_capacity = capacity["LeastLatency"]
    open_capacity = await open_loop_capacity(
        lab.nameserver, four, LeastLatency, closed_capacity / 2, sizes.seconds
    )
    rates = [200.0, round(0.8 * open_capacity, -1)]
    report.data["closed_capacity_rps"] = closed_capacity
    report.data["capacity_rps"] = open_capacity
    rows = []
    for rate in rates:
        progress(f"2. open loop {rate:.0f}/s")
        measured = await interleaved(
            lab.nameserver,
            cases,
            lambda send, r=rate: open_loop(send, r, sizes.seconds, warmup=warmup),
            sizes.rounds,
        )
        for name in STRATEGIES:
            runs = {label: measured[f"{name} {label}"] for label in ("five", "four")}
            share = runs["five"].share(slow)
            p99, fast_p99 = runs["five"].percentile_ms(0.99), runs["four"].percentile_ms(0.99)
            bounded = runs["five"].ratio(runs["four"], p99_over_bound)
            rows.append(
                [name, f"{rate:.0f}", runs["five"].percentile_ms(0.5), p99, fast_p99, bounded,
                 f"{share:.2%}"]
            )  # fmt: skip
            report.data.setdefault("open", []).append(
                {"client": name, "rate": rate, "share": share, "p99": p99, "fast_p99": fast_p99}
            )
            if name == "LeastLatency":
                report.check(f"2. open {rate:.0f}/s: share on the slow pod", share, 0.005, "<=")
                report.check(
                    f"2. open {rate:.0f}/s: p99 / (1.5 x 4 fast pods' p99 + 1 ms)",
                    bounded,
                    1.0,
                    "<=",
                )
    report.table(
        f"2. One pod +50 ms among 5, open loop (capacity: LeastLatency's over the 4 fast pods "
        f"in open loop, {open_capacity:.0f} req/s; in closed loop {closed_capacity:.0f} req/s)",
        ["client", "req/s", "p50 ms", "p99 ms", "4 fast pods p99 ms",
         "p99 / (1.5 x fast + 1 ms)", "share on slow pod"],
        rows,
    )  # fmt: skip


# -- 3: identical pods ---------------------------------------------------------------------------


async def identical(lab: LocalTarget, sizes: Sizes, report: Report) -> None:
    same = await lab.service("lat-same", 5)
    warmup = sizes.seconds / 4
    rate = round(0.8 * report.data["capacity_rps"], -1)
    loads: list[tuple[str, Drive]] = [
        ("open 200/s", lambda send: open_loop(send, 200, sizes.seconds, warmup=warmup)),
        (f"open {rate:.0f}/s", lambda send: open_loop(send, rate, sizes.seconds, warmup=warmup)),
        ("closed c=10", lambda send: closed(send, 10, sizes.seconds, warmup=warmup)),
    ]
    rows = []
    for label, drive in loads:
        progress(f"3. identical pods {label}")
        runs = await interleaved(
            lab.nameserver,
            {name: (same, STRATEGIES[name]) for name in ("LeastLatency", "RoundRobin")},
            drive,
            sizes.rounds,
        )
        ours, rr = runs["LeastLatency"], runs["RoundRobin"]
        p50 = ours.ratio(rr, p50_ratio)
        p99 = ours.ratio(rr, p99_ratio)
        rows.append(
            [label, ours.percentile_ms(0.5), rr.percentile_ms(0.5), p50,
             ours.percentile_ms(0.99), rr.percentile_ms(0.99), p99]
        )  # fmt: skip
        report.check(f"3. identical pods {label}: p50 vs RoundRobin", p50, 1.2, "<=")
        report.check(f"3. identical pods {label}: p99 vs RoundRobin", p99, 1.2, "<=")
    report.table(
        "3. Five identical pods: LeastLatency vs RoundRobin",
        ["load", "p50 ms", "RoundRobin p50", "ratio", "p99 ms", "RoundRobin p99", "ratio"],
        rows,
    )
    progress("3. sequential requests")
    counts: Counter[str] = Counter()
    async with open_client(lab.nameserver, same, LeastLatency()) as send:
        for _ in range(sizes.sequential):
            counts[await send()] += 1
    served = [counts.get(pod, 0) for pod in same.pods]
    spread = max(served) / min(served) if min(served) else math.inf
    report.lines.append(
        f"Sequential: {sizes.sequential} requests over the 5 identical pods landed "
        f"{', '.join(map(str, served))} (max/min {spread:.2f}).\n"
    )
    report.check("3. sequential requests: max/min per pod", spread, 2.0, "<=")
    report.data["sequential"] = dict(counts)


# -- 4: a pod turns slow, then recovers -----------------------------------------------------------


async def turning(lab: LocalTarget, sizes: Sizes, report: Report) -> None:
    before = 1.0
    rows = []
    for name, make in STRATEGIES.items():
        progress(f"4. a pod turns slow and recovers, {name}")
        service = await lab.service(f"lat-turn-{name.lower()}", 5)
        pod = service.pods[2]
        fair = 1 / 5
        async with open_client(lab.nameserver, service, make()) as send:

            async def turn(service: Service = service) -> None:
                await asyncio.sleep(before)
                await lab.call("latency", service.name, 2, SLOW)
                await asyncio.sleep(sizes.slow_for)
                await lab.call("latency", service.name, 2, 0.0)

            total = before + sizes.slow_for + sizes.watch_after
            run, _ = await asyncio.gather(closed(send, 10, total, warmup=0.5), turn())
        recovered = before + sizes.slow_for
        off = run.share(pod, before + 1.0, before + 2.0)
        back = next(
            (
                step / 10 - recovered
                for step in range(int(recovered * 10) + 10, int(total * 10) + 1)
                if run.share(pod, step / 10 - 1.0, step / 10) >= fair / 2
            ),
            math.inf,
        )
        late = run.share(pod, recovered + 9.0, recovered + 10.0) / fair
        rows.append([name, f"{off:.2%}", f"{back:.1f}", late])
        report.data.setdefault("turning", []).append(
            {"client": name, "share_1_2s": off, "back_to_half_fair_s": back, "late_of_fair": late}
        )
        if name == "LeastLatency":
            report.check("4. turned slow: share 1-2 s after", off, 0.01, "<=")
            report.check("4. recovered: seconds until half its fair share", back, 10.0, "<=")
    report.table(
        f"4. A pod turns 50 ms slow for {sizes.slow_for:g} s under a closed loop (c=10), then "
        "recovers",
        ["client", "share 1-2 s after", "s after recovery to half fair (1 s window)",
         "share 9-10 s after recovery / fair"],
        rows,
    )  # fmt: skip


# -- 5: ten clients, one pod twice as fast ---------------------------------------------------------


async def ten_clients(lab: LocalTarget, sizes: Sizes, report: Report) -> None:
    service = await lab.service("lat-ten", 5)
    for ordinal in range(5):
        await lab.call("latency", service.name, ordinal, 0.005 if ordinal == 0 else 0.010)
    fast = service.pods[0]
    rows = []
    for name, make in STRATEGIES.items():
        progress(f"5. ten clients, {name}")
        async with contextlib.AsyncExitStack() as stack:
            sends = [
                await stack.enter_async_context(open_client(lab.nameserver, service, make()))
                for _ in range(10)
            ]
            runs = await asyncio.gather(
                *(closed(send, 2, sizes.seconds, warmup=sizes.seconds / 4) for send in sends)
            )
        merged = Run([event for run in runs for event in run.events], sizes.seconds)
        share = merged.share(fast)
        rows.append([name, f"{share:.1%}", share / 0.2])
        report.data.setdefault("ten_clients", []).append({"client": name, "share": share})
        if name == "LeastLatency":
            report.check(
                "5. ten clients: share of the pod twice as fast / fair", share / 0.2, 2.0, "<="
            )
    report.table(
        "5. Ten clients (2 workers each, own resolver and strategy), 5 pods answering in 10 ms, "
        "one in 5 ms",
        ["client", "share of the fast pod", "vs fair"],
        rows,
    )


# -- 6: slow start ----------------------------------------------------------------------------


async def slow_start(lab: LocalTarget, sizes: Sizes, report: Report) -> None:
    window = sizes.window
    clients: dict[str, Callable[[], Strategy]] = {
        "LeastLatency(slow_start)": lambda: LeastLatency(slow_start=SlowStart(window)),
        "RoundRobin(slow_start)": lambda: RoundRobin(slow_start=SlowStart(window)),
        "LeastLatency": LeastLatency,
    }
    rows = []
    for index, (name, make) in enumerate(clients.items()):
        progress(f"6. slow start, {name}")
        service = await lab.service(f"lat-grow-{index}", 4)
        newcomer = f"{service.name}-4"
        async with open_client(lab.nameserver, service, make()) as send:

            async def grow(name: str = service.name) -> None:
                await asyncio.sleep(1.0)
                await lab.call("scale", name, 5, 0.0)

            total = 1.0 + lab.ttl + window + 2.0
            run, _ = await asyncio.gather(closed(send, 10, total, warmup=0.5), grow())
        first = min((at for at, pod, _ in run.events if pod == newcomer), default=math.inf)
        fair = 1 / 5
        early = run.share(newcomer, first, first + 1.0) / fair
        late = run.share(newcomer, first + window - 1.0, first + window) / fair
        after = run.share(newcomer, first + window, first + window + 1.0) / fair
        rows.append([name, early, late, after])
        report.data.setdefault("slow_start", []).append(
            {"client": name, "first_second_of_fair": early, "window_end_of_fair": late}
        )
        if name.endswith("(slow_start)"):
            report.check(f"6. {name}: first second's share / fair", early, 0.25, "<=")
            report.check(f"6. {name}: last second of the window / fair", late, 0.75, ">=")
    report.table(
        f"6. Slow start (window {window:g} s): a pod added under a closed loop (c=10); shares "
        "from the client's first request to it",
        ["client", "first second / fair", f"second {window - 1:g}-{window:g} / fair",
         "the second after / fair"],
        rows,
    )  # fmt: skip


# -- main ----------------------------------------------------------------------------------------


async def run_all(sizes: Sizes, report: Report) -> None:
    lab = LocalTarget(ttl=1)
    try:
        await slow_pod(lab, sizes, report)
        await identical(lab, sizes, report)
        await turning(lab, sizes, report)
        await ten_clients(lab, sizes, report)
        await slow_start(lab, sizes, report)
    finally:
        lab.close()


def verdicts(checks: list[tuple[str, float, float, str]]) -> list[str]:
    lines = ["### Targets", ""]
    for name, value, bound, op in checks:
        met = value <= bound if op == "<=" else value >= bound
        shown = f"{value:.2%}" if bound < 0.05 else f"{value:.2f}"
        limit = f"{bound:.2%}" if bound < 0.05 else f"{bound:g}"
        lines.append(f"- {'met' if met else 'MISSED'}: {name} = {shown} (target {op} {limit})")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, about 3 minutes")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    sizes = SIZES["quick" if args.quick else "full"]
    report = Report()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    asyncio.run(run_all(sizes, report))
    header = [
        f"## Latency-aware selection ({'quick' if args.quick else 'full'} run), {started}",
        "",
        "Pods and DNS in a child process; each client is httpx over HeadlessTransport.",
        "",
    ]
    text = "\n".join([*header, *report.lines, *verdicts(report.checks)])
    sys.stdout.write(text + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(
        json.dumps({"date": started, "sizes": sizes.__dict__, **report.data}, indent=1)
    )
    (args.out / "latency.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
