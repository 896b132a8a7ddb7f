"""The demo behind ``headless-resolver demo``: every strategy and plain httpx on one local cluster.

A ``LocalCluster`` runs a cluster DNS and pods on 127.0.0.x. One pod is slow from the start,
one crashes midway (refuses new connections and resets open ones), and the service is scaled
up and back down while four clients send the same paced traffic: ``HeadlessTransport`` with
each strategy, and plain httpx resolving the service name the way glibc does inside a pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import httpx

from headless_resolver._resolver import HeadlessResolver
from headless_resolver._strategies import LeastLatency, RoundRobin, Sticky
from headless_resolver._top import render_traffic
from headless_resolver._transports import HeadlessTransport
from headless_resolver.testing import LocalCluster
from headless_resolver.testing._system_dns import system_resolution_via

SERVICE = "web"
NAMESPACE = "default"
DOMAIN = "cluster.local"
HOST = f"{SERVICE}.{NAMESPACE}.svc.{DOMAIN}"
WORKERS_PER_CLIENT = 4
REQUEST_INTERVAL = 0.05
"""Mean time between a worker's request starts (at most one in flight per worker), so every
client offers the same load; each gap is drawn from 0.5..1.5 times it, so workers do not march
in step and queue behind each other."""
SLOW_POD_LATENCY = 0.05
USERS = 1000
EXTRA_PODS = 2
SCALE_UP_AT, FAIL_AT, SCALE_DOWN_AT = 0.2, 0.5, 0.8
"""Fractions of the run at which the scripted events happen."""


@dataclass
class ClientTally:
    """What one client saw: answers per pod, latencies, errors, when each pod first answered."""

    label: str
    per_pod: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    """By kind: the httpx exception's name, or ``HTTP <status>``."""
    first_answer: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(self.per_pod.values()) + self.errors.total()

    def percentile_ms(self, q: int) -> float | None:
        if len(self.latencies) < 2:
            return None
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000

    def new_pod_wait(self, new_pods: list[str], since: float | None) -> float | None:
        """Seconds from the scale-up until the slowest new pod got its first request."""
        if since is None or not new_pods or any(p not in self.first_answer for p in new_pods):
            return None
        return max(self.first_answer[p] for p in new_pods) - since


@dataclass
class DemoReport:
    pods: int
    seconds: float
    ttl: int
    slow_pod: str
    failing_pod: str
    clients: list[ClientTally]
    all_pods: list[str] = field(default_factory=list)
    new_pods: list[str] = field(default_factory=list)
    scaled_up_at: float | None = None
    events: list[tuple[float, str]] = field(default_factory=list)


async def _drive(
    client: httpx.AsyncClient, url: str, tally: ClientTally, rng: random.Random, deadline: float
) -> None:
    await asyncio.sleep(rng.uniform(0, REQUEST_INTERVAL))
    while (started := time.monotonic()) < deadline:
        headers = {"x-user": f"user-{rng.randrange(USERS)}"}
        try:
            response = await client.get(url, headers=headers)
            answered = time.monotonic()
            if response.status_code >= 500:
                tally.errors[f"HTTP {response.status_code}"] += 1
            else:
                pod = response.json()["pod"]
                tally.per_pod[pod] += 1
                tally.latencies.append(answered - started)
                tally.first_answer.setdefault(pod, answered)
        except httpx.HTTPError as exc:
            tally.errors[type(exc).__name__] += 1
        gap = REQUEST_INTERVAL * rng.uniform(0.5, 1.5)
        await asyncio.sleep(max(0.0, started + gap - time.monotonic()))


class ProgressDisplay:
    """One updating line on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, stream: TextIO, seconds: float) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._every = 0.25 if self._tty else max(1.0, seconds / 10)
        self._seconds = seconds

    async def run(self, report: DemoReport, started: float, pods: Callable[[], int]) -> None:
        while True:
            await asyncio.sleep(self._every)
            self.show(report, time.monotonic() - started, pods())

    def show(self, report: DemoReport, elapsed: float, pods: int) -> None:
        requests = sum(c.requests for c in report.clients)
        errors = sum(c.errors.total() for c in report.clients)
        last = report.events[-1][1] if report.events else "warming up"
        line = (
            f"{elapsed:5.1f}/{self._seconds:.0f} s  pods {pods}  requests {requests}  "
            f"errors {errors}  [{last}]"
        )
        if self._tty:
            self._stream.write("\r\033[K" + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def done(self) -> None:
        if self._tty:
            self._stream.write("\r\033[K")
            self._stream.flush()


async def run_demo(
    *, pods: int = 4, seconds: float = 30.0, out: TextIO, progress: TextIO
) -> DemoReport:
    """Run the scripted scenario for ``seconds`` and print the summary table to ``out``."""
    # Short enough that a new pod is found well inside the part of the run it lives in.
    ttl = max(1, min(5, round(seconds / 15)))
    async with LocalCluster(ttl=ttl) as cluster:
        # port=0: one free port for every pod, so a busy 8080 on this machine does not matter.
        originals = await cluster.add_service(SERVICE, pods=pods, port=0, port_name="http")
        url = f"http://{HOST}:{originals[0].port}/"
        slow, failing = originals[1], originals[2]
        slow.latency = SLOW_POD_LATENCY
        report = DemoReport(
            pods=pods,
            seconds=seconds,
            ttl=ttl,
            slow_pod=slow.hostname,
            failing_pod=failing.hostname,
            clients=[ClientTally(label) for label in _CLIENT_LABELS],
        )
        async with (
            HeadlessResolver([cluster.nameserver]) as resolver,
            contextlib.AsyncExitStack() as stack,
        ):
            stack.enter_context(system_resolution_via(cluster.nameserver, DOMAIN))
            least_latency = HeadlessTransport(resolver, LeastLatency())
            names = {p.ip: p.hostname for p in originals}  # and the pods added later
            clients = [
                httpx.AsyncClient(transport=HeadlessTransport(resolver, RoundRobin())),
                httpx.AsyncClient(transport=least_latency),
                httpx.AsyncClient(transport=HeadlessTransport(resolver, Sticky(key="x-user"))),
                httpx.AsyncClient(),
            ]
            for client in clients:
                await stack.enter_async_context(client)
            started = time.monotonic()
            deadline = started + seconds
            rng = random.Random()
            display = ProgressDisplay(progress, seconds)

            def at(fraction: float) -> float:
                return started + fraction * seconds - time.monotonic()

            def note(what: str) -> None:
                report.events.append((time.monotonic() - started, what))

            async def script() -> None:
                await asyncio.sleep(at(SCALE_UP_AT))
                await cluster.scale(SERVICE, pods + EXTRA_PODS)
                report.scaled_up_at = time.monotonic()
                report.new_pods = [p.hostname for p in cluster.pods(SERVICE)[pods:]]
                names.update((p.ip, p.hostname) for p in cluster.pods(SERVICE))
                note(f"scaled {pods} -> {pods + EXTRA_PODS}")
                await asyncio.sleep(at(FAIL_AT))
                failing.refuse = True  # crashed: new connections refused,
                failing.reset_connections()  # open ones reset
                note(f"{failing.hostname} failing")
                await asyncio.sleep(at(SCALE_DOWN_AT))
                await cluster.scale(SERVICE, pods)
                note(f"scaled {pods + EXTRA_PODS} -> {pods}")

            async with asyncio.TaskGroup() as group:
                for client, tally in zip(clients, report.clients, strict=True):
                    for _ in range(WORKERS_PER_CLIENT):
                        worker_rng = random.Random(rng.random())
                        group.create_task(_drive(client, url, tally, worker_rng, deadline))
                group.create_task(script())
                ticker = group.create_task(
                    display.run(report, started, lambda: len(cluster.pods(SERVICE)))
                )
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                ticker.cancel()
            display.done()
            traffic = least_latency.stats()[HOST]
        report.all_pods = [p.hostname for p in originals] + report.new_pods
    out.write(render_summary(report))
    out.write("\nleast-latency's own view at the end (transport.stats(), as the metrics):\n")
    out.write(render_traffic(traffic, names) + "\n")
    out.flush()
    return report


_CLIENT_LABELS = ("round-robin", "least-latency", "sticky", "plain-httpx")


def _table(rows: list[list[str]], left: tuple[int, ...] = (0,)) -> list[str]:
    """Align columns: numbers to the right, the columns in ``left`` to the left."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_summary(report: DemoReport) -> str:
    """The summary: one row per client, then requests per pod with one column per client."""
    events = ", ".join(f"{what} at {when:.1f} s" for when, what in report.events)
    header = (
        f"demo: {report.seconds:g} s, {report.pods} pods, DNS TTL {report.ttl} s, "
        f"{report.slow_pod} slow (+{SLOW_POD_LATENCY * 1000:.0f} ms); {events}"
    )
    clients = [["client", "requests", "errors", "p50_ms", "p99_ms", "new_pod_wait_s"]]
    for tally in report.clients:
        wait = tally.new_pod_wait(report.new_pods, report.scaled_up_at)
        clients.append(
            [
                tally.label,
                str(tally.requests),
                str(tally.errors.total()),
                _ms(tally.percentile_ms(50)),
                _ms(tally.percentile_ms(99)),
                "never" if wait is None else f"{wait:.2f}",
            ]
        )
    per_pod = [["pod", *(t.label for t in report.clients), "note"]]
    for pod in report.all_pods:
        note = {report.slow_pod: "slow", report.failing_pod: "failing"}.get(pod, "")
        if pod in report.new_pods:
            note = "added, then removed"
        per_pod.append([pod, *(str(t.per_pod[pod]) for t in report.clients), note])
    notes = [
        f"errors of {t.label}: " + ", ".join(f"{kind} {n}" for kind, n in t.errors.most_common())
        for t in report.clients
        if t.errors
    ]
    notes += [
        "plain-httpx: one getaddrinfo per new connection, then keep-alive pins each connection "
        "to one pod.",
        "new_pod_wait_s: time from the scale-up until the last new pod got its first request.",
    ]
    return "\n".join(
        [
            header,
            "",
            *_table(clients),
            "",
            *_table(per_pod, left=(0, len(per_pod[0]) - 1)),
            "",
            *notes,
            "",
        ]
    )
