"""Every benchmark scenario in one run, side by side with the alternatives.

Run: ``python benchmarks/run.py [--quick] [--out DIR] [--target local|cluster]``.

1. hot path: ``resolve()`` + pick on a cache hit vs alru_cache, aiohttp's and dnspython's
   caches and ``loop.getaddrinfo``;
2. throughput and spread: HeadlessTransport (each strategy) vs plain httpx vs aiohttp;
3. tail latency with one pod 50 ms slower;
4. convergence after scale-up and scale-down;
5. a DNS outage during traffic;
6. refresh cost of a 5,000-pod service (and the strategies' pick cost and balance);
7. client CPU per request: HeadlessTransport on each pod engine vs httpx's front end alone,
   aiohttp and plain httpx (``bench_engine.py`` has the standalone version with sync clients).

Prints a Markdown report on stdout (tables, then every target met or missed and by how much),
writes ``results.json``, ``results.md`` and PNG plots to ``--out``, and shows progress on
stderr. ``--target cluster`` runs the traffic scenarios against the ``benchmarks/kind``
Services through the pod's own DNS (or ``--nameserver``); convergence and outage need control
of the cluster and run only locally, while the hot path and scale run against a local DNS in
both cases because they measure CPU, not the network.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import platform
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import _plots  # noqa: E402
import _scenarios  # noqa: E402
from _clients import CLIENTS  # noqa: E402
from _progress import Progress  # noqa: E402
from _report import Scenario, markdown, write_json  # noqa: E402
from _targets import ClusterTarget, LocalTarget, Target  # noqa: E402

Step = Callable[[], Awaitable[Scenario]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, about 2 minutes")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output dir")
    parser.add_argument("--target", choices=("local", "cluster"), default="local")
    env = os.environ.get
    cluster = parser.add_argument_group("--target cluster")
    cluster.add_argument(
        "--nameserver",
        default=env("BENCH_NAMESERVER"),
        help="cluster DNS host:port (default: /etc/resolv.conf and the system resolver)",
    )
    cluster.add_argument(
        "--namespace", default=env("BENCH_NAMESPACE", env("POD_NAMESPACE", "default"))
    )
    cluster.add_argument("--domain", default=env("BENCH_DOMAIN", "cluster.local"))
    cluster.add_argument("--port", type=int, default=int(env("BENCH_PORT", "8080")))
    cluster.add_argument(
        "--wide-pods",
        type=int,
        default=int(env("BENCH_WIDE_PODS", "10")),
        help="replicas of the echo-wide StatefulSet",
    )
    cluster.add_argument(
        "--cluster-info",
        default=env("BENCH_CLUSTER_INFO"),
        help="what the cluster runs (Kubernetes version, CoreDNS ttl and cache), for the header",
    )
    return parser.parse_args(argv)


def planned_steps(sizes: _scenarios.Sizes, local: bool) -> int:
    throughput = 3 * len(sizes.concurrency) + 1
    engine = len([c for c in sizes.concurrency if c > 1])
    return 1 + throughput + len(CLIENTS) + (2 if local else 0) + 2 + engine


async def run_all(
    target: Target, lab: LocalTarget, sizes: _scenarios.Sizes, progress: Progress
) -> list[Scenario]:
    tick = progress.step
    results = [await _scenarios.hot_path(lab, sizes, tick)]
    with target.system_dns():
        results.append(await _scenarios.throughput(target, sizes, tick))
        results.append(await _scenarios.tail_latency(target, sizes, tick))
        if isinstance(target, LocalTarget):
            results.append(await _scenarios.convergence(target, sizes, tick))
            results.append(await _scenarios.dns_outage(target, sizes, tick))
    results.append(await _scenarios.scale(lab, sizes, tick))
    with target.system_dns():
        results.append(await _scenarios.engine_cost(target, sizes, tick))
    return results


def plot(out: Path, results: list[Scenario]) -> list[Path]:
    by_key = {scenario.key: scenario for scenario in results}
    written = []
    tail = by_key["tail"].data
    path = out / "latency_cdf.png"
    _plots.latency_cdf(path, tail["latencies_ms"], "Latency CDF, 3 pods, one 50 ms slower")
    written.append(path)
    rows = by_key["throughput"].data["rows"]
    top = max(row["concurrency"] for row in rows)
    widest = rows[-1]["pods"]
    hits = {
        row["client"]: row["hits"]
        for row in rows
        if row["pods"] == widest and row["concurrency"] == top and row["limits"] == "keep 100"
    }
    path = out / "requests_per_pod.png"
    _plots.requests_per_pod(path, hits, f"Requests per pod, {widest}, concurrency {top}")
    written.append(path)
    if "convergence" in by_key:
        path = out / "convergence.png"
        _plots.convergence(path, by_key["convergence"].data)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # The outage scenario makes every refresh fail on purpose; the tables count what it costs.
    logging.getLogger("headless_resolver").setLevel(logging.CRITICAL)
    kind = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = _scenarios.SIZES[kind]
    args.out.mkdir(parents=True, exist_ok=True)
    lab = LocalTarget(ttl=sizes.ttl)
    target: Target = lab
    if args.target == "cluster":
        replicas = {"small": 3, "wide": args.wide_pods, "slow": 3}
        target = ClusterTarget(args.nameserver, args.namespace, args.domain, args.port, replicas)
    progress = Progress(planned_steps(sizes, isinstance(target, LocalTarget)))
    started = datetime.datetime.now(datetime.UTC)
    try:
        results = asyncio.run(run_all(target, lab, sizes, progress))
    finally:
        lab.close()
    progress.finish()
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}",
        "python": platform.python_version(),
        "run": kind,
        "target": args.target,
        "system_resolution": target.how,
        "cluster": args.cluster_info if args.target == "cluster" else None,
        "sizes": sizes.__dict__,
    }
    header = [
        f"## headless_resolver benchmark ({kind} run, target {args.target})",
        "",
        f"{meta['date']}; {meta['machine']}; Python {meta['python']}.",
        f"Plain httpx and aiohttp: {target.how}.",
    ]
    if meta["cluster"]:
        header.append(f"Cluster: {meta['cluster']}.")
    if not isinstance(target, LocalTarget):
        header.append(
            "Target cluster: convergence and DNS outage skipped (they scale pods and stop DNS, "
            "which only a local run controls); hot path and scale measured against a local DNS."
        )
    report = markdown(results, header)
    sys.stdout.write(report)
    (args.out / "results.md").write_text(report)
    write_json(args.out / "results.json", results, meta)
    for path in plot(args.out, results):
        print(f"plot: {path}", file=sys.stderr)
    print(f"results: {args.out / 'results.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
