"""benchmarks/run.py: every scenario runs, side by side, and reports what it measured.

A hidden ``--smoke`` size runs the whole suite in seconds; these tests check the report, the
JSON and the plots it writes, against a LocalCluster it starts itself (``--target local``) and
against services someone else runs (``--target cluster`` pointed at a ClusterDNS).
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from benchmarks._progress import Progress
from benchmarks._report import Check
from headless_resolver.testing import LocalCluster

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
SCENARIOS = ["hot_path", "throughput", "tail", "convergence", "outage", "scale", "engine"]
TARGETS = [
    "resolver: resolve() hit vs alru_cache hit",
    "transport: 1 pod vs plain httpx",
    "transport: 3 pods, concurrency 10, keep 100 alive, vs plain httpx",
    "transport: round-robin max/min requests per pod",
    "resolver: 2,000-pod refresh, faster backend",
    "strategies: RoundRobin pick cost",
    "strategies: LeastLatency pick cost",
    "strategies: Sticky pick cost",
    "strategies: sticky moved fraction x N on removal",
    "strategies: sticky max/mean load",
    "strategies: Sticky(balance_factor=1.1) max/mean load",
    "engine: CPU per request vs httpx + MockTransport, concurrency 10",
    "engine: req/s vs aiohttp, concurrency 10",
    "engine: req/s vs the httpcore engine, concurrency 10",
]


class Run:
    def __init__(self, out: Path, completed: subprocess.CompletedProcess[str]) -> None:
        assert completed.returncode == 0, completed.stderr[-3000:]
        self.out = out
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.results: dict[str, Any] = json.loads((out / "results.json").read_text())

    def scenario(self, key: str) -> dict[str, Any]:
        scenario: dict[str, Any] = self.results["scenarios"][key]
        return scenario


def run_benchmark(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(RUN), "--smoke", "--out", str(out), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("bench")
    return Run(out, run_benchmark(out))


@pytest.mark.slow
def test_the_report_shows_every_scenario_and_says_how_plain_clients_resolve(
    local_run: Run,
) -> None:
    titles = re.findall(r"^### (\d)\. ", local_run.stdout, re.MULTILINE)
    assert titles == ["1", "2", "3", "4", "5", "6", "7"]
    assert list(local_run.results["scenarios"]) == SCENARIOS
    assert "socket.getaddrinfo answers names under the cluster domain" in local_run.stdout
    for client in ("headless/round-robin", "headless/least-latency", "headless/sticky"):
        assert f"| {client} |" in local_run.stdout
    assert "| httpx |" in local_run.stdout
    assert "| aiohttp |" in local_run.stdout
    assert (local_run.out / "results.md").read_text() == local_run.stdout


@pytest.mark.slow
def test_every_target_is_reported_as_met_or_missed_by_how_much(local_run: Run) -> None:
    lines = re.findall(r"^(MET|MISSED) +(.*)$", local_run.stdout, re.MULTILINE)
    assert len(lines) == len(TARGETS)
    for target in TARGETS:
        assert len([name for _, name in lines if name.startswith(target)]) == 1, target
    for verdict, line in lines:
        assert ("missed by" in line) == (verdict == "MISSED")
    summary = re.search(r"### Targets: (\d+) of (\d+) met", local_run.stdout)
    assert summary is not None
    met = sum(target["met"] for target in local_run.results["targets"])
    assert summary.groups() == (str(met), str(len(TARGETS)))


@pytest.mark.slow
def test_throughput_ratios_are_against_plain_httpx_of_the_same_cell(local_run: Run) -> None:
    rows = local_run.scenario("throughput")["data"]["rows"]
    assert {row["pods"] for row in rows} == {"1 pod", "3 pods", "10 pods"}
    cells: dict[tuple[str, int, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["pods"], row["concurrency"], row["limits"]), {})[row["client"]] = row
    for cell in cells.values():
        httpx_rate = cell["httpx"]["rate"]
        assert cell["httpx"]["vs_httpx"] == 1.0
        for row in cell.values():
            assert row["rate"] > 0
            assert math.isclose(row["vs_httpx"], row["rate"] / httpx_rate)
    assert ("3 pods", 10, "httpx default limits") in cells
    for row in rows:
        if row["client"] == "headless/round-robin" and row["pods"] != "1 pod":
            pods = int(row["pods"].split()[0])
            assert len(row["hits"]) == pods, "round-robin reaches every pod"


@pytest.mark.slow
def test_the_slow_pod_gets_a_third_from_round_robin_and_less_from_least_latency(
    local_run: Run,
) -> None:
    tail = local_run.scenario("tail")["data"]
    share = tail["slow_share"]
    assert 0.25 < share["headless/round-robin"] < 0.42
    assert share["headless/least-latency"] < share["headless/round-robin"]
    for samples in tail["latencies_ms"].values():
        assert samples == sorted(samples)
        assert samples[0] > 0


@pytest.mark.slow
def test_convergence_new_pod_reached_by_the_resolver_but_not_by_pooled_httpx(
    local_run: Run,
) -> None:
    summary = local_run.scenario("convergence")["data"]["summary"]
    window = local_run.results["meta"]["sizes"]["window"]
    for client in ("headless/round-robin", "headless/least-latency", "headless/sticky"):
        assert summary[client]["first_request_s"] < window
        assert summary[client]["failed"] == 0
    assert summary["httpx"]["first_request_s"] == "inf"


@pytest.mark.slow
def test_outage_serve_stale_fails_nothing_and_without_it_requests_fail(local_run: Run) -> None:
    rows = local_run.scenario("outage")["data"]["summary"]
    assert {row["mode"] for row in rows} == {"keep-alive", "new connection per request"}
    for row in rows:
        assert row["requests"] > 0
        if row["client"].startswith("headless/") and "stale_ttl=0" not in row["client"]:
            assert row["failed"] == 0, row
    without_stale = [row for row in rows if "stale_ttl=0" in row["client"]]
    assert all(row["failed"] > 0 for row in without_stale)
    assert "Shortened from 30 s" in local_run.stdout


@pytest.mark.slow
def test_plots_are_written_as_png_images(local_run: Run) -> None:
    for name in ("latency_cdf.png", "requests_per_pod.png", "convergence.png"):
        image = matplotlib.image.imread(local_run.out / name)
        height, width = image.shape[:2]
        assert width >= 600
        assert height >= 300
        assert image.std() > 0.01, f"{name} is blank"


@pytest.mark.slow
def test_progress_goes_to_stderr_as_plain_lines_when_not_a_terminal(local_run: Run) -> None:
    steps = [line for line in local_run.stderr.splitlines() if line.startswith("[")]
    assert len(steps) > 10
    assert "\r" not in local_run.stderr
    assert steps[-1].startswith("[" + "#" * 30 + "]")
    assert "[" not in local_run.stdout.split("\n", 1)[0]


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = Progress(2, screen)
    progress.step("first")
    progress.step("second")
    progress.finish()
    written = screen.getvalue()
    assert written.count("\r") == 3
    assert written.count("\n") == 1
    assert written.rstrip("\n").rsplit("\r\x1b[2K", 1)[1].startswith("[" + "#" * 30 + "] 2/2")


@pytest.mark.parametrize(
    ("value", "op", "line"),
    [
        (0.4, "<=", "MET     t: 0.4x (target <= 0.5x)"),
        (0.6, "<=", "MISSED  t: 0.6x (target <= 0.5x; missed by 20%)"),
        (0.45, ">=", "MISSED  t: 0.45x (target >= 0.5x; missed by 10%)"),
    ],
)
def test_a_target_line_says_met_or_by_how_much_it_missed(value: float, op: str, line: str) -> None:
    assert Check("t", value, 0.5, op).line() == line


@pytest.mark.slow
async def test_cluster_target_measures_services_it_did_not_start(tmp_path: Path) -> None:
    async with LocalCluster(ttl=5) as cluster:
        first = await cluster.add_service("echo", pods=3, port=0)
        port = first[0].port
        await cluster.add_service("echo-wide", pods=4, port=port)
        slow = await cluster.add_service("echo-slow", pods=3, port=port)
        slow[0].latency = 0.05
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(RUN),
            "--smoke",
            "--out",
            str(tmp_path),
            "--target",
            "cluster",
            "--nameserver",
            cluster.nameserver,
            "--port",
            str(port),
            "--wide-pods",
            "4",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, stderr.decode()[-3000:]
        served = {
            name: [pod.requests for pod in cluster.pods(name)]
            for name in ("echo", "echo-wide", "echo-slow")
        }
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["target"] == "cluster"
    assert list(results["scenarios"]) == ["hot_path", "throughput", "tail", "scale", "engine"]
    assert cluster.nameserver in results["meta"]["system_resolution"]
    assert "convergence and DNS outage skipped" in stdout.decode()
    for name, counts in served.items():
        assert all(count > 0 for count in counts), (name, counts)
    rows = results["scenarios"]["throughput"]["data"]["rows"]
    assert {row["pods"] for row in rows} == {"1 pod", "3 pods", "4 pods"}
    share = results["scenarios"]["tail"]["data"]["slow_share"]
    assert 0.25 < share["headless/round-robin"] < 0.42
