"""benchmarks/kind: the in-cluster benchmark kit is valid and wired together.

Docker and kind cannot run here, so the manifests are validated against the Kubernetes
schemas, their names are checked against what ``run.py --target cluster`` expects, and the
echo pod they run is started on loopback and asked who it is.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

KIND = Path(__file__).resolve().parent.parent / "benchmarks" / "kind"
REPO = KIND.parent.parent
MANIFESTS = sorted((KIND / "manifests").glob("*.yaml"))
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def named(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents() if doc["kind"] == kind}


def image_tag() -> str:
    found = re.search(r'^image="([^"]+)"$', (KIND / "run.sh").read_text(), re.MULTILINE)
    assert found is not None, "run.sh names the image it builds"
    return found.group(1)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    assert MANIFESTS
    for doc in documents():
        kubernetes_validate.validate(doc, version, strict=True)


def test_three_headless_services_each_backed_by_a_statefulset_of_its_name() -> None:
    services, statefulsets = named("Service"), named("StatefulSet")
    assert sorted(services) == sorted(statefulsets) == ["echo", "echo-slow", "echo-wide"]
    for name, service in services.items():
        spec = service["spec"]
        assert spec["clusterIP"] == "None"
        assert [(p["name"], p["port"]) for p in spec["ports"]] == [("http", 8080)]
        statefulset = statefulsets[name]["spec"]
        assert statefulset["serviceName"] == name, "pods get per-pod DNS names"
        labels = statefulset["template"]["metadata"]["labels"]
        assert spec["selector"].items() <= labels.items()


def test_replicas_are_what_the_benchmark_job_expects() -> None:
    statefulsets = named("StatefulSet")
    job = named("Job")["headless-bench"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in job["env"]}
    assert statefulsets["echo"]["spec"]["replicas"] == 3
    assert statefulsets["echo-slow"]["spec"]["replicas"] == 3
    assert statefulsets["echo-wide"]["spec"]["replicas"] == int(env["BENCH_WIDE_PODS"])
    assert env["BENCH_PORT"] == "8080"


def test_one_pod_of_echo_slow_is_told_to_answer_50_ms_late() -> None:
    container = named("StatefulSet")["echo-slow"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env == {"SLOW_POD": "echo-slow-0", "SLOW_MS": "50"}
    for name in ("echo", "echo-wide"):
        container = named("StatefulSet")[name]["spec"]["template"]["spec"]["containers"][0]
        assert "env" not in container


def test_the_job_runs_the_benchmark_against_the_cluster_once() -> None:
    job = named("Job")["headless-bench"]["spec"]
    pod = job["template"]["spec"]
    command = pod["containers"][0]["command"] + pod["containers"][0]["args"]
    assert command[:2] == ["python", "benchmarks/run.py"]
    assert command[command.index("--target") + 1] == "cluster"
    assert "--nameserver" not in command, "in the cluster DNS comes from /etc/resolv.conf"
    assert pod["restartPolicy"] == "Never"
    assert job["backoffLimit"] == 0


def test_every_container_runs_the_image_run_sh_builds_and_loads_into_kind() -> None:
    tag = image_tag()
    containers = [
        container
        for doc in documents()
        if doc["kind"] in ("StatefulSet", "Job")
        for container in doc["spec"]["template"]["spec"]["containers"]
    ]
    assert len(containers) == 4
    for container in containers:
        assert container["image"] == tag
        assert container["imagePullPolicy"] == "Never", "the image only exists in kind's nodes"
    script = (KIND / "run.sh").read_text()
    assert 'kind load docker-image "$image"' in script
    assert 'docker build -f "$here/Dockerfile" -t "$image" "$repo"' in script
    assert "trap 'kind delete cluster" in script
    assert 'kubectl --context "$context" logs job/headless-bench' in script


def test_kind_config_and_dockerfile_refer_to_what_exists() -> None:
    config = yaml.safe_load((KIND / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [node["role"] for node in config["nodes"]].count("worker") == 2
    for line in (KIND / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def echo_pod() -> AsyncIterator[str]:
    """The echo server as the slow pod of echo-slow, on loopback."""
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "HOSTNAME": "echo-slow-0",
        "SLOW_POD": "echo-slow-0",
        "SLOW_MS": "50",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(KIND / "echo.py"), env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert b"listening on 127.0.0.1" in line
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        await process.wait()


async def test_echo_pod_says_who_it_is_over_one_kept_alive_connection(echo_pod: str) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        answers = []
        for _ in range(3):
            started = time.perf_counter()
            response = await client.get(echo_pod, headers={"host": "echo-slow.default.svc"})
            answers.append((response, time.perf_counter() - started))
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1
    for response, elapsed in answers:
        assert response.status_code == 200
        assert response.headers["x-pod"] == "echo-slow-0"
        assert response.json() == {
            "pod": "echo-slow-0",
            "ip": "127.0.0.1",
            "host": "echo-slow.default.svc",
            "sni": None,
        }
        assert elapsed >= 0.05, "SLOW_POD names this pod: every answer waits SLOW_MS"
