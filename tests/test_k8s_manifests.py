"""The Kubernetes manifests in examples/k8s are valid and wired together as the guide says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S_DIR = REPO / "examples" / "k8s"
MANIFESTS = sorted(K8S_DIR.glob("*.yaml"))
# The oldest release the README claims (preStop sleep is beta, on by default, from 1.30), the
# one the kind kit pins, and the newest schemas shipped.
KUBERNETES_VERSIONS = ["1.30.0", "1.34.0", kubernetes_validate.latest_version()]


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resource(kind: str) -> dict[str, Any]:
    found = [doc for path in MANIFESTS for doc in load(path) if doc["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind} in {K8S_DIR}"
    return found[0]


def test_the_manifests_exist() -> None:
    kinds = sorted(doc["kind"] for path in MANIFESTS for doc in load(path))
    assert kinds == [
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path, version: str) -> None:
    for doc in load(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_a_misspelt_field() -> None:
    service = resource("Service")
    broken = {**service, "spec": {**service["spec"], "clusterIp": "None"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_service_is_headless_with_a_named_port() -> None:
    spec = resource("Service")["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is False
    assert [p["name"] for p in spec["ports"]] == ["http"]


def test_statefulset_pods_get_per_pod_names_under_the_service() -> None:
    service = resource("Service")
    statefulset = resource("StatefulSet")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_service_target_port_names_a_container_port() -> None:
    service = resource("Service")
    containers = resource("StatefulSet")["spec"]["template"]["spec"]["containers"]
    container_ports = {p["name"]: p["containerPort"] for c in containers for p in c["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in container_ports


def test_client_runs_the_library_against_the_service_in_its_namespace() -> None:
    service = resource("Service")
    pod_spec = resource("Deployment")["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    command = " ".join(container["command"] + container["args"])
    fqdn = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert "headless-resolver" in command
    assert fqdn in command
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_client_may_read_endpointslices_in_its_namespace_and_nothing_else() -> None:
    pod_spec = resource("Deployment")["spec"]["template"]["spec"]
    account = resource("ServiceAccount")["metadata"]
    role, binding = resource("Role"), resource("RoleBinding")
    assert pod_spec["serviceAccountName"] == account["name"]
    assert role["rules"] == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    namespace = resource("Deployment")["metadata"]["namespace"]
    assert {role["metadata"]["namespace"], binding["metadata"]["namespace"]} == {namespace}


def test_client_watches_through_the_api_with_dns_as_fallback() -> None:
    (container,) = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    command = " ".join(container["command"] + container["args"])
    assert "--source auto" in command


def test_the_readme_claims_the_oldest_kubernetes_validated_here() -> None:
    readme = (REPO / "README.md").read_text()
    assert "need Kubernetes 1.30 or newer" in readme
    assert KUBERNETES_VERSIONS[0] == "1.30.0"


def test_client_image_is_built_from_this_repository_not_a_package_index() -> None:
    (container,) = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    command = " ".join(container["command"] + container["args"])
    assert "pip install" not in command, "headless-resolver is not published on a package index"
    dockerfile = (K8S_DIR / "Dockerfile").read_text()
    assert f"-t {container['image']} ." in dockerfile, "the Dockerfile says how to build the image"
    assert container["imagePullPolicy"] == "IfNotPresent", "a locally built image is not pulled"
    assert 'ENTRYPOINT ["headless-resolver"]' in dockerfile
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
