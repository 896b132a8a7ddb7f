"""HeadlessAiohttpResolver: aiohttp connections spread over the pods of a service."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from headless_resolver import HeadlessAiohttpResolver, HeadlessResolver, RoundRobin
from headless_resolver.testing import LocalCluster

WEB = "web.default.svc.cluster.local"
URL = f"http://{WEB}:8080/"


@pytest.fixture
async def resolver(cluster: LocalCluster) -> AsyncIterator[HeadlessResolver]:
    async with HeadlessResolver([cluster.nameserver]) as resolver:
        yield resolver


def session(
    resolver: HeadlessAiohttpResolver,
    *,
    force_close: bool = False,
    verify: ssl.SSLContext | bool = True,
) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        resolver=resolver, use_dns_cache=False, force_close=force_close, ssl=verify
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False)


async def test_new_connections_are_spread_round_robin(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    async with session(HeadlessAiohttpResolver(resolver, RoundRobin()), force_close=True) as http:
        for _ in range(30):
            async with http.get(URL) as response:
                body = await response.json()
                assert body["host"] == f"{WEB}:8080"
    assert [pod.connections_total for pod in pods] == [10, 10, 10]


async def test_kept_alive_connections_stay_on_their_pod(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3)
    async with session(HeadlessAiohttpResolver(resolver, RoundRobin())) as http:
        for _ in range(9):
            async with http.get(URL) as response:
                await response.read()
    assert sorted(pod.connections_total for pod in pods) == [0, 0, 1]
    assert sorted(pod.requests for pod in pods) == [0, 0, 9]


async def test_picked_pod_first_then_the_others_on_the_named_port(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    pods = await cluster.add_service("web", pods=3, port=0, port_name="api")
    plugin = HeadlessAiohttpResolver(resolver, RoundRobin(), ports={WEB: "api"})
    answers = [await plugin.resolve(WEB, 80, socket.AF_INET) for _ in range(3)]
    assert sorted(a[0]["host"] for a in answers) == sorted(pod.ip for pod in pods)
    for answer in answers:
        assert sorted(r["host"] for r in answer) == sorted(pod.ip for pod in pods)
        assert {(r["hostname"], r["port"], r["family"]) for r in answer} == {
            (WEB, pods[0].port, socket.AF_INET)
        }


async def test_tls_server_name_is_the_service(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    await cluster.add_service("web", pods=2, tls=True)
    verify = ssl.create_default_context(cafile=str(cluster.ca_cert))
    async with (
        session(HeadlessAiohttpResolver(resolver), verify=verify) as http,
        http.get(f"https://{WEB}:8080/") as response,
    ):
        body = await response.json()
    assert body["sni"] == WEB


async def test_other_hosts_go_to_the_fallback_resolver(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    plugin = HeadlessAiohttpResolver(resolver)
    [answer] = await plugin.resolve("127.0.0.1", 80, socket.AF_INET)
    await plugin.close()
    assert answer["host"] == "127.0.0.1"
    assert resolver.stats.queries == 0


async def test_unknown_service_is_an_os_error_aiohttp_reports(
    cluster: LocalCluster, resolver: HeadlessResolver
) -> None:
    async with session(HeadlessAiohttpResolver(resolver)) as http:
        with pytest.raises(aiohttp.ClientConnectorDNSError):
            await http.get("http://nothing.default.svc.cluster.local/")


def test_aiohttp_stays_optional() -> None:
    code = (
        "import sys, headless_resolver\n"
        "assert 'aiohttp' not in sys.modules\n"
        "headless_resolver.HeadlessAiohttpResolver\n"
        "assert 'aiohttp' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
