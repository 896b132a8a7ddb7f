"""How long a LocalCluster takes to start a service of many pods (target: 100 pods in < 2 s).

Run: ``python benchmarks/local_cluster_startup.py [pods] [--tls]``. Prints the median of five
runs for add_service (pods listening and published in DNS), scale to double, and teardown.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time

from headless_resolver.testing import LocalCluster

RUNS = 5
PHASES = ("add_service", "scale x2", "teardown")


async def one_run(pods: int, tls: bool) -> list[float]:
    marks = [time.perf_counter()]
    async with LocalCluster() as cluster:
        marks[0] = time.perf_counter()
        await cluster.add_service("web", pods=pods, port=0, tls=tls)
        marks.append(time.perf_counter())
        await cluster.scale("web", 2 * pods)
        marks.append(time.perf_counter())
    marks.append(time.perf_counter())
    return [end - start for start, end in itertools.pairwise(marks)]


async def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    pods = int(args[0]) if args else 100
    tls = "--tls" in sys.argv
    runs = [await one_run(pods, tls) for _ in range(RUNS)]
    for phase, seconds in zip(PHASES, zip(*runs, strict=True), strict=True):
        suffix = " (TLS)" if tls else ""
        print(f"{phase:12} {pods:4} pods{suffix}: median {statistics.median(seconds):.3f} s")


if __name__ == "__main__":
    asyncio.run(main())
