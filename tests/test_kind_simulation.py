"""benchmarks/kind/simulate.sh: the kind benchmark's Job, run as its pod would see the cluster.

No Docker here, so the script builds what the Job's container sees from namespaces: the echo
pods of ``manifests/echo.yaml`` each in a network namespace of its own, the client in another
with a pod's ``/etc/resolv.conf`` (``ndots:5``), cluster DNS at a service address (ClusterDNS,
TTL 30) and glibc resolving for the plain clients; then it runs the Job's command from
``manifests/job.yaml`` and takes the results out of its log as ``run.sh`` does. It needs root
and namespaces: skipped, saying why, where they cannot be made; when they can, a missing tool
is a failure under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

KIND = Path(__file__).resolve().parent.parent / "benchmarks" / "kind"
SCRIPT = KIND / "simulate.sh"
TOOLS = ("unshare", "nsenter", "ip", "nft")
TIMEOUT = 480
"""Seconds for the whole simulated run (about 2 minutes on 2 busy CPUs)."""


def namespaces_refused() -> str | None:
    """Why this machine cannot make the namespaces, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and mounts"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--net", "--mount", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"network namespaces are not allowed here: {probe.stderr.strip()}"
    return None


def require_namespaces() -> None:
    refused = namespaces_refused()
    if refused:
        pytest.skip(refused)
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        message = f"missing {', '.join(missing)}: apt-get install iproute2 nftables"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def echo_processes() -> list[int]:
    """Processes running this checkout's echo pod."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(KIND / "echo.py").encode() in command:
                found.append(int(entry.name))
    return found


def gone_within(seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := echo_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


class Simulated:
    def __init__(self, out: Path, completed: subprocess.CompletedProcess[str]) -> None:
        assert completed.returncode == 0, completed.stderr[-4000:]
        self.out = out
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.report = (out / "results.md").read_text()
        self.results: dict[str, Any] = json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Simulated:
    require_namespaces()
    out = tmp_path_factory.mktemp("kind-simulated")
    process = subprocess.Popen(
        [str(SCRIPT), "--out", str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"simulate.sh took more than {TIMEOUT} s:\n{stderr[-4000:]}")
    return Simulated(
        out, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    )


def test_the_job_ends_with_exit_0_and_the_report_run_sh_prints(simulated: Simulated) -> None:
    assert simulated.stdout == simulated.report
    lines = simulated.report.splitlines()
    assert lines[0] == "## headless_resolver benchmark (quick run, target cluster)"
    assert (
        "Plain httpx and aiohttp: system resolution: the pod's own glibc and /etc/resolv.conf "
        "(no emulation)." in lines
    )
    assert any(line.startswith("Cluster: none: network namespaces") for line in lines)
    assert any(
        line.startswith("Target cluster: convergence and DNS outage skipped") for line in lines
    )
    sections = [line for line in lines if line.startswith("### ")]
    assert sections[:4] == [
        "### 1. Hot path: a lookup on a cache hit",
        "### 2. Throughput and spread",
        "### 3. Tail latency, one pod 50 ms slower",
        "### 6. Scale: a 5,000-pod service",
    ]
    assert sections[4].startswith("### Targets: ")
    checks = [line for line in lines if line.startswith(("MET ", "MISSED "))]
    assert len(checks) == len(simulated.results["targets"]) == 11


def test_results_json_plots_and_the_jobs_log_land_in_the_out_folder(simulated: Simulated) -> None:
    files = {path.name for path in simulated.out.iterdir()}
    assert files == {
        "results.md",
        "results.json",
        "latency_cdf.png",
        "requests_per_pod.png",
        "job.log",
    }
    for plot in ("latency_cdf.png", "requests_per_pod.png"):
        assert (simulated.out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = simulated.results["meta"]
    assert meta["target"] == "cluster"
    assert meta["run"] == "quick"
    assert meta["cluster"].startswith("none: network namespaces")
    assert list(simulated.results["scenarios"]) == ["hot_path", "throughput", "tail", "scale"]


def test_glibc_in_the_client_resolves_the_service_through_the_pods_resolv_conf(
    simulated: Simulated,
) -> None:
    assert (
        "glibc in the client pod: echo.default.svc.cluster.local -> "
        "10.244.1.2 10.244.1.3 10.244.1.4" in simulated.stderr
    )


def test_every_echo_pod_answered_and_the_one_told_to_be_slow_was(simulated: Simulated) -> None:
    rows = simulated.results["scenarios"]["throughput"]["data"]["rows"]
    wide = next(
        row for row in rows if row["pods"] == "10 pods" and row["client"] == "headless/round-robin"
    )
    assert sorted(wide["hits"]) == sorted(f"echo-wide-{i}" for i in range(10))
    share = simulated.results["scenarios"]["tail"]["data"]["slow_share"]
    assert 0.25 < share["headless/round-robin"] < 0.42
    assert share["headless/least-latency"] < share["headless/round-robin"]


def test_nothing_is_left_running_after_a_run(simulated: Simulated) -> None:
    assert gone_within(5) == []


def test_an_interrupted_run_takes_every_pod_with_it(tmp_path: Path) -> None:
    require_namespaces()
    process = subprocess.Popen(
        [str(SCRIPT), "--out", str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if "preparing the client pod" in line:
                break
        assert len(echo_processes()) == 16, "every echo pod of manifests/echo.yaml started"
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
        assert status == 130, process.stderr.read()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stderr.close()
    assert gone_within(5) == []
    assert not (tmp_path / "results.md").exists()
