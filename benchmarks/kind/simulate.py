"""The Python half of ``simulate.sh``: the kind manifests read as a kubelet and CoreDNS would.

``pods SUBNET``: one line per echo pod of ``manifests/echo.yaml`` (``service hostname ip`` and
the container's ``NAME=value`` environment, space-separated), addresses in order from ``SUBNET``.
``dns SUBNET``: the cluster DNS for those pods (the project's ``ClusterDNS``, TTL 30 as
kubeadm configures CoreDNS), on ``--listen`` port 53 until SIGTERM; writes ``--ready`` once it
answers. ``job``: becomes the container of ``manifests/job.yaml``: its command and arguments,
its environment (the image's ``ENV``, the manifest's values, the namespace from the downward
API, ``BENCH_CLUSTER_INFO`` from ``--cluster-info``) and working directory (the repository
stands in for the image's ``/src``); it keeps this user, not the image's ``USER``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

KIND = Path(__file__).resolve().parent
REPO = KIND.parent.parent
NAMESPACE = "default"
DNS_TTL = 30
"""What kubeadm (and so kind) configures in CoreDNS's kubernetes plugin."""


def documents(name: str) -> list[dict[str, Any]]:
    text = (KIND / "manifests" / name).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def echo_pods(subnet: str) -> Iterator[tuple[str, str, str, dict[str, str]]]:
    """``(service, hostname, ip, env)`` per pod of every StatefulSet, in manifest order."""
    addresses = ipaddress.ip_network(subnet).hosts()
    next(addresses)  # the first address is the node's (the pods' gateway)
    for doc in documents("echo.yaml"):
        if doc["kind"] != "StatefulSet":
            continue
        name = doc["metadata"]["name"]
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item["value"] for item in container.get("env", [])}
        for ordinal in range(doc["spec"]["replicas"]):
            yield name, f"{name}-{ordinal}", str(next(addresses)), env


def print_pods(subnet: str) -> None:
    for service, hostname, ip, env in echo_pods(subnet):
        variables = [f"{key}={value}" for key, value in env.items()]
        if any(" " in variable for variable in variables):
            raise SystemExit(f"simulate.py: {hostname}: an environment value with a space")
        print(" ".join([service, hostname, ip, *variables]))


async def serve_dns(subnet: str, listen: str, ready: Path) -> None:
    from headless_resolver.testing import ClusterDNS

    ports = {
        doc["metadata"]["name"]: [
            (port["name"], port["protocol"], port["port"]) for port in doc["spec"]["ports"]
        ]
        for doc in documents("echo.yaml")
        if doc["kind"] == "Service"
    }
    endpoints: dict[str, list[tuple[str, str]]] = {}
    for service, hostname, ip, _ in echo_pods(subnet):
        endpoints.setdefault(service, []).append((ip, hostname))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with ClusterDNS(ttl=DNS_TTL, host=listen, port=53) as dns:
        for service, addresses in endpoints.items():
            dns.add_service(service, NAMESPACE, endpoints=addresses, ports=ports[service])
        await asyncio.to_thread(ready.write_text, f"{dns.nameserver} ttl {dns.ttl}\n")
        await stop.wait()


def image_env() -> dict[str, str]:
    """The ``ENV`` instructions of the Dockerfile (``NAME=value`` pairs)."""
    env = {}
    for line in (KIND / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def job_env(container: dict[str, Any], cluster_info: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it from the manifest."""
    env = {
        "PATH": os.environ["PATH"],
        "HOSTNAME": "headless-bench-sim",
        "HOME": "/tmp",
        **image_env(),
    }
    for item in container.get("env", []):
        source = item.get("valueFrom")
        if source is None:
            env[item["name"]] = item["value"]
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = NAMESPACE
        elif source.get("configMapKeyRef", {}).get("name") == "headless-bench-cluster":
            env[item["name"]] = cluster_info
        else:
            raise SystemExit(f"simulate.py: cannot provide {item['name']} from {source}")
    return env


def become_job(cluster_info: str) -> None:
    (job,) = documents("job.yaml")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    argv = [*container["command"], *container.get("args", [])]
    env = job_env(container, cluster_info)
    os.chdir(REPO)
    print(f"job: {shlex.join(argv)}", file=sys.stderr, flush=True)
    os.execvpe(argv[0], argv, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pods = commands.add_parser("pods")
    pods.add_argument("subnet")
    dns = commands.add_parser("dns")
    dns.add_argument("subnet")
    dns.add_argument("--listen", required=True)
    dns.add_argument("--ready", type=Path, required=True)
    job = commands.add_parser("job")
    job.add_argument("--cluster-info", required=True)
    args = parser.parse_args()
    if args.command == "pods":
        print_pods(args.subnet)
    elif args.command == "dns":
        asyncio.run(serve_dns(args.subnet, args.listen, args.ready))
    else:
        become_job(args.cluster_info)


if __name__ == "__main__":
    main()
