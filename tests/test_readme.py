"""The README's examples run as written and do what the README says."""

from __future__ import annotations

import ipaddress
import re
import ssl
from pathlib import Path
from typing import Any

import httpx

from headless_resolver import Endpoint, HeadlessResolver, HeadlessTransport, Strategy
from headless_resolver.testing import LocalCluster, PodServer

README = Path(__file__).resolve().parents[1] / "README.md"
URL = "http://web.default.svc.cluster.local:8080/"
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)
"""A new connection per request, so a pod that stops listening is seen at once."""


def endpoint_of(pod: PodServer) -> Endpoint:
    return Endpoint(pod.ip, None, None)


def python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


async def test_the_testing_section_example_passes() -> None:
    example, _ = python_blocks("Testing your code without a cluster")
    namespace: dict[str, Any] = {}
    exec(compile(example, str(README), "exec"), namespace)
    await namespace["test_requests_reach_every_pod"]()


async def test_the_strategy_example_fails_over_from_one_pod_to_the_next(
    cluster: LocalCluster,
) -> None:
    (example,) = python_blocks("Options")
    namespace: dict[str, Any] = {}
    exec(compile(example, str(README), "exec"), namespace)
    strategy = namespace["ActivePassive"]()
    assert isinstance(strategy, Strategy)
    pods = await cluster.add_service("web", pods=3)
    active, passive = sorted(pods, key=lambda pod: ipaddress.ip_address(pod.ip))[:2]
    async with (
        HeadlessResolver([cluster.nameserver]) as resolver,
        httpx.AsyncClient(
            transport=HeadlessTransport(resolver, strategy, limits=NO_KEEPALIVE)
        ) as client,
    ):
        for _ in range(5):
            assert (await client.get(URL)).json()["ip"] == active.ip
        active.refuse = True
        for _ in range(5):
            assert (await client.get(URL)).json()["ip"] == passive.ip
    assert strategy.health.ejected() == {endpoint_of(active)}


async def test_the_tls_example_verifies_pods_with_the_cluster_ca(cluster: LocalCluster) -> None:
    _, snippet = python_blocks("Testing your code without a cluster")
    pods = await cluster.add_service("web", pods=2, tls=True)
    async with HeadlessResolver([cluster.nameserver]) as resolver:
        namespace: dict[str, Any] = {
            "ssl": ssl,
            "cluster": cluster,
            "resolver": resolver,
            "HeadlessTransport": HeadlessTransport,
        }
        exec(compile(snippet, str(README), "exec"), namespace)
        async with httpx.AsyncClient(transport=namespace["transport"]) as client:
            answer = (await client.get(URL.replace("http:", "https:"))).json()
    assert answer["sni"] == "web.default.svc.cluster.local"
    assert answer["ip"] in {pod.ip for pod in pods}
