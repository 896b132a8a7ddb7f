"""benchmarks/kind: the in-cluster benchmark kit is valid and wired together.

Docker and kind cannot run here, so the manifests are validated against the Kubernetes
schemas (the release the kit pins and the oldest the README claims), their names are checked
against what ``run.py --target cluster`` expects, the echo pod they run is started on loopback
and asked who it is, and the shell functions run.sh relies on run on real input. The Job's
command itself runs in ``tests/test_kind_simulation.py``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import subprocess
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
CONFIG = yaml.safe_load((KIND / "kind-config.yaml").read_text())
NODE_IMAGE = re.compile(r"kindest/node:v(\d+\.\d+\.\d+)@sha256:[0-9a-f]{64}")


def _pinned() -> re.Match[str]:
    pinned = NODE_IMAGE.fullmatch(CONFIG["nodes"][0]["image"])
    assert pinned is not None, "kind-config.yaml pins the node image by tag and digest"
    return pinned


PINNED = _pinned()
# The oldest release the README claims, the one the kit pins, the newest schemas shipped.
KUBERNETES_VERSIONS = ["1.29.0", PINNED.group(1), kubernetes_validate.latest_version()]


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
    assert command == ["python", "benchmarks/kind/job.py", "--quick"]
    assert "--nameserver" not in command, "in the cluster DNS comes from /etc/resolv.conf"
    assert pod["restartPolicy"] == "Never"
    assert job["backoffLimit"] == 0


def test_the_readme_claims_the_versions_validated_here() -> None:
    readme = (REPO / "README.md").read_text()
    assert f"Kubernetes {KUBERNETES_VERSIONS[0].removesuffix('.0')} or newer" in readme
    assert f"kindest/node:v{PINNED.group(1)}" in readme


def test_every_node_runs_the_pinned_image_of_the_kind_release_run_sh_requires() -> None:
    images = {node["image"] for node in CONFIG["nodes"]}
    assert images == {PINNED.group(0)}
    found = re.search(r'^min_kind="([0-9.]+)"$', (KIND / "run.sh").read_text(), re.MULTILINE)
    assert found is not None
    comment = (KIND / "kind-config.yaml").read_text()
    assert f"kind v{found.group(1)} publishes for Kubernetes v{PINNED.group(1)}" in comment


def test_the_job_runs_on_a_node_of_its_own_away_from_every_echo_pod() -> None:
    roles = {
        node["labels"]["headless-bench/role"]: node["role"]
        for node in CONFIG["nodes"]
        if "labels" in node
    }
    assert roles == {"echo": "worker", "client": "worker"}
    job = named("Job")["headless-bench"]["spec"]["template"]
    assert job["spec"]["nodeSelector"] == {"headless-bench/role": "client"}
    (term,) = job["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    avoided = term["labelSelector"]["matchLabels"].items()
    assert not avoided <= job["metadata"]["labels"].items()
    for statefulset in named("StatefulSet").values():
        template = statefulset["spec"]["template"]
        assert template["spec"]["nodeSelector"] == {"headless-bench/role": "echo"}
        assert avoided <= template["metadata"]["labels"].items()


def test_the_report_header_gets_what_run_sh_learns_about_the_cluster() -> None:
    container = named("Job")["headless-bench"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    source = env["BENCH_CLUSTER_INFO"]["valueFrom"]["configMapKeyRef"]
    assert source["optional"] is True, "the Job still starts when applied by hand"
    script = (KIND / "run.sh").read_text()
    assert f"k create configmap {source['name']} --from-literal={source['key']}=" in script


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
    assert "--provenance=false --sbom=false" in script, "kind cannot load attestations"
    assert 'k logs job/headless-bench >"$out/job.log"' in script


def test_kind_config_and_dockerfile_refer_to_what_exists() -> None:
    assert CONFIG["kind"] == "Cluster"
    assert CONFIG["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [node["role"] for node in CONFIG["nodes"]].count("worker") == 2
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


def kit(function: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """A function of benchmarks/kind/_kit.sh, run by bash as run.sh runs it."""
    script = f'source "$0" && {function} "$@"'
    return subprocess.run(
        ["bash", "-c", script, str(KIND / "_kit.sh"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_results_the_job_prints_come_out_of_its_log_whole(tmp_path: Path) -> None:
    sys.path.insert(0, str(KIND))
    try:
        import job
    finally:
        sys.path.remove(str(KIND))
    results = tmp_path / "results"
    results.mkdir()
    (results / "results.md").write_text("## report\n")
    (results / "latency_cdf.png").write_bytes(bytes(range(256)) * 40)
    encoded = base64.encodebytes(job.archive(results)).decode()
    log = tmp_path / "job.log"
    log.write_text(
        f"[#####-----] 9/18  52s throughput\n## report\n{job.BEGIN}\n{encoded}{job.END}\n"
    )
    out = tmp_path / "out"
    extracted = kit("extract_results", str(log), str(out))
    assert extracted.returncode == 0, extracted.stderr
    assert sorted(p.name for p in out.iterdir()) == ["latency_cdf.png", "results.md"]
    assert (out / "latency_cdf.png").read_bytes() == (results / "latency_cdf.png").read_bytes()


def test_a_log_without_the_whole_archive_is_an_error(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("Traceback (most recent call last):\n----- BEGIN headless-bench results\n")
    extracted = kit("extract_results", str(log), str(tmp_path / "out"))
    assert extracted.returncode == 1
    assert "no results archive" in extracted.stderr


def test_the_job_exits_with_run_py_status_and_prints_no_archive_without_results(
    tmp_path: Path,
) -> None:
    completed = subprocess.run(
        [sys.executable, str(KIND / "job.py"), "--no-such-option"],
        env={**os.environ, "BENCH_OUT": str(tmp_path / "never-written")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "--no-such-option" in completed.stderr
    assert "BEGIN" not in completed.stdout


KUBEADM_COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""


@pytest.mark.parametrize(
    ("corefile", "settings"),
    [
        (
            KUBEADM_COREFILE,
            "kubernetes plugin ttl 30; "
            "cache 30 { disable success cluster.local; disable denial cluster.local }",
        ),
        (
            KUBEADM_COREFILE.replace("       ttl 30\n", "").replace(
                "cache 30 {\n       disable success cluster.local\n"
                "       disable denial cluster.local\n    }",
                "cache 30",
            ),
            "kubernetes plugin ttl 5 (the default); cache 30",
        ),
        (
            ".:53 {\n    kubernetes cluster.local\n    forward . 8.8.8.8\n}\n",
            "kubernetes plugin ttl 5 (the default); no cache plugin",
        ),
    ],
    ids=["kubeadm-1.34", "older-kubeadm-without-ttl", "no-cache"],
)
def test_the_header_names_the_corefile_ttl_and_cache(corefile: str, settings: str) -> None:
    found = kit("corefile_settings", stdin=corefile)
    assert found.returncode == 0, found.stderr
    assert found.stdout == settings + "\n"
