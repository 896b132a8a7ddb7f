"""Soak: constant traffic while pods churn every second and DNS blips now and then.

Run: ``python benchmarks/soak.py --minutes N [--out DIR] [--clients 20] [--rate 25]``.

Clients send GETs at a constant rate through ``HeadlessTransport`` to a headless Service whose
pods churn every second: a new pod starts and joins DNS, the oldest leaves DNS and stops
``grace`` seconds later, as a Deployment's rolling pods do. Every ``blip_every`` seconds DNS
misbehaves for ``blip_length`` seconds: SERVFAIL, silence, or the server stopped outright.

Reports every second: requests, failures, requests a removed pod served after its grace,
RSS, open file descriptors and asyncio tasks; at the end ``samples.csv``, ``summary.json``
and ``soak.png`` in ``--out``. The cluster DNS and the pods run in this process too, so the
counts include them; the pod population is steady, so growth over the run is what leaks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import errno
import itertools
import json
import logging
import os
import random
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from headless_resolver import HeadlessResolver, HeadlessTransport, RoundRobin  # noqa: E402
from headless_resolver.testing import ClusterDNS, PodServer  # noqa: E402

SERVICE = "web"
URL_TEMPLATE = "http://web.default.svc.cluster.local:{port}/"
BLIPS = ("servfail", "drop", "outage")


@dataclass(frozen=True)
class SoakConfig:
    seconds: float
    clients: int = 20
    rate: float = 25.0
    """GETs per second per client."""
    pods: int = 4
    ttl: int = 1
    grace: float = 5.0
    """Seconds a pod keeps serving after it leaves DNS (terminationGracePeriodSeconds)."""
    linger: float = 2.0
    """Seconds a pod stays up after its grace, to count the requests it should not get."""
    churn_every: float = 1.0
    blip_every: float = 7.0
    blip_length: float = 1.5
    backend: str = "dnspython"
    seed: int = 0
    keepalive: int = 20
    """Connections kept alive per pod (httpx's default 20). Pools keep the most connections a
    burst ever needed, up to this, so the descriptor count ratchets up to a plateau that
    depends on bursts; a small value makes that plateau come early, leaving only leaks."""
    keepalive_expiry: float = 5.0
    """Seconds an idle kept-alive connection lives (httpx's default 5)."""
    settle: float = 2.0
    """Seconds of one sequential client before the churn starts and after it ends (at least
    two TTLs, and long enough for connections a burst opened to expire): the same service,
    pods and traffic both times, so any difference between the two counts is a leak."""


@dataclass(frozen=True)
class Sample:
    t: float
    requests: int
    failures: int
    after_grace: int
    rss_mb: float
    fds: int
    tasks: int
    pods_in_dns: int
    dns: str


@dataclass
class SoakReport:
    config: SoakConfig
    samples: list[Sample] = field(default_factory=list)
    requests: int = 0
    failures: int = 0
    failure_examples: list[str] = field(default_factory=list)
    after_grace: int = 0
    """Requests served by removed pods after their grace: clients that missed the removal."""
    churns: int = 0
    blips: int = 0
    stale_served: int = 0

    fds_before: int = 0
    fds_after: int = 0
    """Open descriptors before the soak and after everything it opened was closed."""
    tasks_before: int = 0
    tasks_after: int = 0
    warm_fds: int = 0
    warm_tasks: int = 0
    """Descriptors and tasks open after the settle before the churn, between two requests."""
    settled_fds: int = 0
    settled_tasks: int = 0
    """The same after the settle that ends the run: more than when warm is a leak."""
    stray_pools: list[str] = field(default_factory=list)
    """Pools the transport still held after the last settle for pods no longer in DNS."""

    def growth(self, metric: str) -> float:
        """Floor of the second half minus floor of the first (without warm-up and wind-down).

        Floors, not means or peaks: blips and churn swing the counts up for a few seconds
        (connections to old and new pods at once), but a leak raises the floor.
        """
        warm_up = max(2, len(self.samples) // 10)
        values = [getattr(s, metric) for s in self.samples[warm_up:-1]]
        half = len(values) // 2
        if half < 1:
            return 0.0
        return float(min(values[half:]) - min(values[:half]))

    def summary(self) -> dict[str, object]:
        return {
            "seconds": self.config.seconds,
            "requests": self.requests,
            "failures": self.failures,
            "failure_examples": self.failure_examples,
            "requests_to_removed_pods_after_grace": self.after_grace,
            "pod_churns": self.churns,
            "dns_blips": self.blips,
            "stale_served": self.stale_served,
            "rss_mb": self.extent("rss_mb"),
            "rss_growth_mb": self.growth("rss_mb"),
            "fds": self.extent("fds"),
            "fd_growth": self.growth("fds"),
            "fds_before_and_after": [self.fds_before, self.fds_after],
            "tasks": self.extent("tasks"),
            "task_growth": self.growth("tasks"),
            "tasks_before_and_after": [self.tasks_before, self.tasks_after],
            "warm_and_settled_fds": [self.warm_fds, self.settled_fds],
            "warm_and_settled_tasks": [self.warm_tasks, self.settled_tasks],
            "stray_pools": self.stray_pools,
            "config": asdict(self.config),
        }

    def extent(self, metric: str) -> dict[str, float]:
        """``metric`` in the first and last samples, and at its highest."""
        return {
            "first": getattr(self.samples[0], metric),
            "last": getattr(self.samples[-1], metric),
            "max": float(max(getattr(s, metric) for s in self.samples)),
        }


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Fleet:
    """The service's pods, on 127.0.3.x and one port; a churn replaces the oldest pod."""

    def __init__(self, dns: ClusterDNS, config: SoakConfig, report: SoakReport) -> None:
        self.dns = dns
        self.config = config
        self.report = report
        self.port = _free_port()
        self.live: list[PodServer] = []
        self.retiring: set[asyncio.Task[None]] = set()
        self._addresses = itertools.cycle(f"127.0.3.{n}" for n in range(1, 255))
        self._in_use: set[str] = set()
        self._ordinal = itertools.count()

    async def start(self) -> None:
        for _ in range(self.config.pods):
            self.live.append(await self._start_pod())
        self._publish()

    async def churn(self) -> None:
        """One new pod joins (listening before DNS names it); the oldest leaves DNS."""
        self.live.append(await self._start_pod())
        leaving = self.live.pop(0)
        self._publish()
        self.report.churns += 1
        task = asyncio.create_task(self._retire(leaving))
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)

    async def aclose(self) -> None:
        for task in list(self.retiring):
            task.cancel()
        await asyncio.gather(*self.retiring, return_exceptions=True)
        for pod in self.live:
            await pod.stop()
        self.live.clear()

    async def _retire(self, pod: PodServer) -> None:
        try:
            await asyncio.sleep(self.config.grace)
            served = pod.requests
            await asyncio.sleep(self.config.linger)
            self.report.after_grace += pod.requests - served
        finally:
            await pod.stop()
            self._in_use.discard(pod.ip)

    def _publish(self) -> None:
        self.dns.set_endpoints(SERVICE, endpoints=[(pod.ip, pod.hostname) for pod in self.live])

    async def _start_pod(self) -> PodServer:
        hostname = f"{SERVICE}-{next(self._ordinal)}"
        for _ in range(254):
            address = next(self._addresses)
            if address in self._in_use:
                continue
            pod = PodServer(address, self.port, hostname=hostname)
            try:
                await pod.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            self._in_use.add(address)
            return pod
        raise OSError(errno.EADDRINUSE, f"no free 127.0.3.x address for port {self.port}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.3.1", 0))
        return int(probe.getsockname()[1])


async def soak(config: SoakConfig, on_sample: Callable[[Sample], None] | None = None) -> SoakReport:
    """Run the soak for ``config.seconds``; ``on_sample`` sees each one-second sample."""
    report = SoakReport(config, fds_before=open_fds(), tasks_before=len(asyncio.all_tasks()))
    rng = random.Random(config.seed)
    dns_state = ["ok"]
    async with ClusterDNS(ttl=config.ttl) as dns:
        dns.add_service(SERVICE)
        fleet = Fleet(dns, config, report)
        await fleet.start()
        url = URL_TEMPLATE.format(port=fleet.port)
        resolver = HeadlessResolver(
            [dns.nameserver],
            backend=config.backend,
            timeout=0.5,
            attempts=2,
            failure_backoff=0.2,  # type: ignore[arg-type]
        )
        limits = httpx.Limits(
            max_connections=100,
            max_keepalive_connections=config.keepalive,
            keepalive_expiry=config.keepalive_expiry,
        )
        transport = HeadlessTransport(resolver, RoundRobin(), limits=limits)
        http = httpx.AsyncClient(transport=transport, trust_env=False, timeout=5.0)
        loop = asyncio.get_running_loop()

        async def client() -> None:
            interval = 1.0 / config.rate
            next_at = loop.time() + rng.uniform(0, interval)
            while next_at < deadline:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                # A constant rate, not a catch-up burst after the loop fell behind.
                next_at = max(next_at + interval, loop.time())
                await get_once()

        async def churn() -> None:
            while loop.time() + config.churn_every < deadline:
                await asyncio.sleep(config.churn_every)
                await fleet.churn()

        async def blips() -> None:
            for kind in itertools.cycle(BLIPS):
                await asyncio.sleep(config.blip_every)
                if loop.time() + config.blip_length >= deadline:
                    return
                report.blips += 1
                dns_state[0] = kind
                if kind == "outage":
                    await dns.stop()
                else:
                    setattr(dns, kind, True)
                await asyncio.sleep(config.blip_length)
                if kind == "outage":
                    await dns.start()
                else:
                    setattr(dns, kind, False)
                dns_state[0] = "ok"

        async def sampler() -> None:
            while True:
                sample = Sample(
                    t=round(loop.time() - start, 1),
                    requests=report.requests,
                    failures=report.failures,
                    after_grace=report.after_grace,
                    rss_mb=round(rss_mb(), 1),
                    fds=open_fds(),
                    tasks=len(asyncio.all_tasks()),
                    pods_in_dns=len(fleet.live),
                    dns=dns_state[0],
                )
                report.samples.append(sample)
                if on_sample is not None:
                    on_sample(sample)
                if loop.time() >= deadline:
                    return
                await asyncio.sleep(1.0)

        async def get_once() -> None:
            try:
                response = await http.get(url)
                response.raise_for_status()
            except (httpx.HTTPError, OSError) as exc:
                report.failures += 1
                if len(report.failure_examples) < 5:
                    report.failure_examples.append(f"{type(exc).__name__}: {exc}")
            report.requests += 1

        async def settle() -> tuple[int, int]:
            """DNS healthy, no churn: one client until the set is fresh and connections a
            burst opened have expired; then the fewest descriptors and tasks seen between
            requests (a background refresh may hold a socket and a task for a moment)."""
            await dns.start()  # a no-op unless the run ended inside an outage
            dns.servfail = dns.drop = False
            dns_state[0] = "ok"
            duration = max(config.settle, 2.0 * config.ttl, config.keepalive_expiry + 1.0)
            settled_at = loop.time() + duration
            while loop.time() < settled_at:
                await get_once()
                await asyncio.sleep(1.0 / config.rate)
            # A connection httpx just closed is closed by its pod a moment later.
            counts = []
            for _ in range(25):
                counts.append((open_fds(), len(asyncio.all_tasks())))
                await asyncio.sleep(0.02)
            return min(fds for fds, _ in counts), min(tasks for _, tasks in counts)

        try:
            report.warm_fds, report.warm_tasks = await settle()
            start = loop.time()
            deadline = start + config.seconds
            background = [asyncio.create_task(churn()), asyncio.create_task(blips())]
            monitor = asyncio.create_task(sampler())
            await asyncio.gather(*(client() for _ in range(config.clients)))
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await monitor
            # Let the last retirements finish counting before the report is read.
            await asyncio.gather(*fleet.retiring, return_exceptions=True)
            report.settled_fds, report.settled_tasks = await settle()
            live = {pod.ip for pod in fleet.live}
            report.stray_pools = [
                f"{ip}:{port}" for ip, port, _ in transport.pools() if ip not in live
            ]
        finally:
            report.stale_served = resolver.stats.stale_served
            await http.aclose()
            await resolver.aclose()
            await fleet.aclose()
    for _ in range(100):  # closed sockets are released a loop iteration or two later
        report.fds_after, report.tasks_after = open_fds(), len(asyncio.all_tasks())
        if report.fds_after <= report.fds_before and report.tasks_after <= report.tasks_before:
            break
        await asyncio.sleep(0.02)
    return report


def write_outputs(report: SoakReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "samples.csv", "w", newline="", encoding="utf-8") as samples:
        writer = csv.DictWriter(samples, fieldnames=list(asdict(report.samples[0])))
        writer.writeheader()
        writer.writerows(asdict(s) for s in report.samples)
    (out / "summary.json").write_text(json.dumps(report.summary(), indent=2) + "\n")
    plot(report, out / "soak.png")


def plot(report: SoakReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report.samples
    t = [s.t for s in samples]
    rates = [0] + [b.requests - a.requests for a, b in itertools.pairwise(samples)]
    figure, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    axes[0].plot(t, rates, label="requests/s")
    axes[0].plot(t, [s.failures for s in samples], label="failures (total)")
    axes[0].plot(t, [s.after_grace for s in samples], label="to removed pods after grace")
    for s in samples:
        if s.dns != "ok":
            for axis in axes:
                axis.axvspan(s.t - 0.5, s.t + 0.5, color="orange", alpha=0.15, lw=0)
    axes[1].plot(t, [s.rss_mb for s in samples])
    axes[1].set_ylabel("RSS (MB)")
    axes[2].plot(t, [s.fds for s in samples])
    axes[2].set_ylabel("open FDs")
    axes[3].plot(t, [s.tasks for s in samples])
    axes[3].set_ylabel("asyncio tasks")
    axes[3].set_xlabel("seconds (orange: DNS blip)")
    axes[0].legend(loc="upper left")
    figure.suptitle(
        f"soak: {report.requests} requests, {report.failures} failed, "
        f"{report.churns} pod churns, {report.blips} DNS blips"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("bench-results/soak"))
    parser.add_argument("--clients", type=int, default=SoakConfig.clients)
    parser.add_argument("--rate", type=float, default=SoakConfig.rate, help="GETs/s per client")
    parser.add_argument("--backend", choices=("dnspython", "aiodns"), default="dnspython")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    config = SoakConfig(
        seconds=args.minutes * 60, clients=args.clients, rate=args.rate, backend=args.backend
    )

    def progress(sample: Sample) -> None:
        if int(sample.t) % 10 == 0:
            print(
                f"{sample.t:7.1f}s requests={sample.requests} failures={sample.failures} "
                f"after_grace={sample.after_grace} rss={sample.rss_mb}MB fds={sample.fds} "
                f"tasks={sample.tasks} dns={sample.dns}",
                file=sys.stderr,
                flush=True,
            )

    began = time.monotonic()
    report = asyncio.run(soak(config, progress))
    write_outputs(report, args.out)
    print(json.dumps(report.summary(), indent=2))
    print(f"wall time {time.monotonic() - began:.0f} s; outputs in {args.out}", file=sys.stderr)
    return 0 if report.failures == 0 else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
