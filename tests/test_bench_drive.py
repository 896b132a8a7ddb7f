"""benchmarks/_scenarios.drive: a failed request is counted, and the run goes on."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import httpx

# The benchmark modules import each other by name, as run.py puts them on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _scenarios


async def test_failed_requests_are_counted_by_type_and_the_others_still_measured() -> None:
    calls = itertools.count()

    async def send() -> str:
        number = next(calls)
        if number % 5 == 4:
            raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")
        if number == 7:
            raise httpx.ReadTimeout("timed out")
        return f"pod-{number % 2}"

    load = await _scenarios.drive(send, concurrency=4, total=40, warmup=5)

    assert load.failures == 9
    assert load.errors == {"ConnectError": 8, "ReadTimeout": 1}
    assert sum(load.hits.values()) == len(load.latencies) == 40 - 9
    assert load.rate > 0


async def test_warmup_failures_do_not_count_against_the_measured_requests() -> None:
    calls = itertools.count()

    async def send() -> str:
        if next(calls) < 3:
            raise httpx.ConnectError("not yet")
        return "pod-0"

    load = await _scenarios.drive(send, concurrency=2, total=10, warmup=3)

    assert load.failures == 0
    assert load.hits == {"pod-0": 10}
