"""IPv6 end to end: pods on ``::1``, named by cluster DNS, reached through the transports.

``::1`` is the only IPv6 loopback address, so IPv6 pods share it and differ by port: each
endpoint publishes its own SRV port, as an EndpointSlice does when a named ``targetPort`` is a
different container port in each pod.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from headless_resolver import (
    Endpoint,
    HeadlessResolver,
    HeadlessTransport,
    RoundRobin,
    SyncHeadlessTransport,
)
from headless_resolver.testing import ClusterDNS, PodServer, make_tls
from headless_resolver.testing._model import EndpointSpec, PortSpec
from tests.loopback import needs_ipv6_loopback

pytestmark = [needs_ipv6_loopback, pytest.mark.usefixtures("pod_engine")]

WEB = "web.default.svc.cluster.local"
URL = f"http://{WEB}/path"

StartPod = Callable[..., Awaitable[PodServer]]


@pytest.fixture
async def dns() -> AsyncIterator[ClusterDNS]:
    async with ClusterDNS() as server:
        yield server


@pytest.fixture
async def resolver(dns: ClusterDNS) -> AsyncIterator[HeadlessResolver]:
    async with HeadlessResolver([dns.nameserver]) as resolver:
        yield resolver


@pytest.fixture
async def start_pod() -> AsyncIterator[StartPod]:
    """``await start_pod(ip, hostname, ssl_context=None)``: a pod on a free port, stopped when
    the test ends."""
    async with AsyncExitStack() as pods:

        async def start(
            ip: str, hostname: str | None, ssl_context: ssl.SSLContext | None = None
        ) -> PodServer:
            pod = PodServer(ip, hostname=hostname, ssl_context=ssl_context)
            return await pods.enter_async_context(pod)

        yield start


async def web_pods(start_pod: StartPod, count: int) -> list[PodServer]:
    return [await start_pod("::1", f"web-{ordinal}") for ordinal in range(count)]


def publish(dns: ClusterDNS, name: str, pods: list[PodServer], port_name: str = "http") -> None:
    """A headless service over ``pods``, each endpoint with its own SRV port ``port_name``."""
    dns.add_service(
        name,
        endpoints=[
            EndpointSpec(pod.ip, pod.hostname, ports=(PortSpec(port_name, "tcp", pod.port),))
            for pod in pods
        ],
    )


def client(transport: HeadlessTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, trust_env=False, timeout=5.0)


def served(pods: list[PodServer]) -> list[int]:
    return [pod.requests for pod in pods]


async def test_pods_sharing_ipv6_loopback_are_one_service_told_apart_by_srv_port(
    dns: ClusterDNS, resolver: HeadlessResolver, start_pod: StartPod
) -> None:
    pods = await web_pods(start_pod, 3)
    publish(dns, "web", pods)

    by_srv = await resolver.resolve("web", port="http")
    by_address = await resolver.resolve("web")

    assert set(by_srv) == {Endpoint("::1", pod.port, pod.hostname) for pod in pods}
    assert list(by_address) == [Endpoint("::1")]  # one AAAA: only the SRV ports tell them apart


async def test_requests_reach_every_ipv6_pod_in_turn_under_the_service_name(
    dns: ClusterDNS, resolver: HeadlessResolver, start_pod: StartPod
) -> None:
    pods = await web_pods(start_pod, 3)
    publish(dns, "web", pods)
    transport = HeadlessTransport(resolver, RoundRobin(), ports={WEB: "http"})

    async with client(transport) as http:
        responses = [await http.get(URL) for _ in range(30)]
        pools = transport.pools()

    assert all(9 <= n <= 11 for n in served(pods)), served(pods)
    assert {(r.json()["ip"], r.json()["host"]) for r in responses} == {("::1", WEB)}
    assert {str(r.url) for r in responses} == {URL}
    assert sorted(pools) == sorted(("::1", pod.port, WEB) for pod in pods)


async def test_the_sync_transport_reaches_every_ipv6_pod_under_the_service_name(
    dns: ClusterDNS, start_pod: StartPod
) -> None:
    pods = await web_pods(start_pod, 3)
    publish(dns, "web", pods)

    def fetch() -> list[httpx.Response]:
        transport = SyncHeadlessTransport(
            HeadlessResolver([dns.nameserver]), RoundRobin(), ports={WEB: "http"}
        )
        with httpx.Client(transport=transport, trust_env=False, timeout=5.0) as http:
            return [http.get(URL) for _ in range(30)]

    responses = await asyncio.to_thread(fetch)  # the pods and DNS keep serving on this loop

    assert all(9 <= n <= 11 for n in served(pods)), served(pods)
    assert {(r.json()["ip"], r.json()["host"]) for r in responses} == {("::1", WEB)}
    assert {str(r.url) for r in responses} == {URL}


async def test_a_dual_stack_service_reaches_pods_of_both_families(
    dns: ClusterDNS, resolver: HeadlessResolver, start_pod: StartPod
) -> None:
    pods = [
        await start_pod("::1", "web-0"),
        await start_pod("127.0.0.61", "web-1"),
        await start_pod("::1", "web-2"),
        await start_pod("127.0.0.62", "web-3"),
    ]
    publish(dns, "web", pods)

    async with client(HeadlessTransport(resolver, RoundRobin(), ports={WEB: "http"})) as http:
        bodies = [(await http.get(URL)).json() for _ in range(40)]

    assert all(9 <= n <= 11 for n in served(pods)), served(pods)
    assert {b["ip"] for b in bodies} == {"::1", "127.0.0.61", "127.0.0.62"}
    assert {b["host"] for b in bodies} == {WEB}


async def test_an_ipv6_pod_without_hostname_is_reached_by_aaaa_and_its_dashed_name(
    dns: ClusterDNS, resolver: HeadlessResolver, start_pod: StartPod
) -> None:
    pod = await start_pod("::1", None)
    dns.add_service("api", endpoints=[("::1", None)])  # a Deployment's pod: no SRV port
    service = f"api.default.svc.cluster.local:{pod.port}"
    per_pod = f"--1.{service}"  # CoreDNS writes ::1 as --1

    async with client(HeadlessTransport(resolver)) as http:
        by_service = await http.get(f"http://{service}/")
        by_pod_name = await http.get(f"http://{per_pod}/")

    assert by_service.json()["host"] == service
    assert by_pod_name.json()["host"] == per_pod
    assert by_pod_name.url == f"http://{per_pod}/"
    assert pod.requests == 2


async def test_a_refusing_ipv6_pod_is_retried_on_another_and_ejected(
    dns: ClusterDNS, resolver: HeadlessResolver, start_pod: StartPod
) -> None:
    pods = await web_pods(start_pod, 3)
    publish(dns, "web", pods)
    pods[0].refuse = True
    strategy = RoundRobin()

    async with client(HeadlessTransport(resolver, strategy, ports={WEB: "http"})) as http:
        statuses = [(await http.get(URL)).status_code for _ in range(12)]

    assert statuses == [200] * 12
    assert pods[0].requests == 0
    assert pods[1].requests + pods[2].requests == 12
    assert strategy.health.is_ejected(Endpoint("::1", pods[0].port, "web-0"))


async def test_when_every_ipv6_pod_refuses_the_error_names_each_in_brackets(
    dns: ClusterDNS, resolver: HeadlessResolver, start_pod: StartPod
) -> None:
    pods = await web_pods(start_pod, 2)
    publish(dns, "web", pods)
    for pod in pods:
        pod.refuse = True

    async with client(HeadlessTransport(resolver, ports={WEB: "http"})) as http:
        with pytest.raises(httpx.ConnectError) as failure:
            await http.get(URL)

    (note,) = failure.value.__notes__
    assert sorted(note.removeprefix("tried pods: ").split(", ")) == sorted(
        f"[::1]:{pod.port}" for pod in pods
    )


async def test_tls_to_ipv6_pods_is_verified_against_the_service_name(
    dns: ClusterDNS, resolver: HeadlessResolver, start_pod: StartPod, tmp_path: Path
) -> None:
    server_context, ca_cert = make_tls([WEB], tmp_path)
    pods = [await start_pod("::1", f"web-{i}", server_context()) for i in range(2)]
    publish(dns, "web", pods, port_name="https")
    verify = ssl.create_default_context(cafile=str(ca_cert))

    async with client(HeadlessTransport(resolver, srv_from_scheme=True, verify=verify)) as http:
        responses = [await http.get(f"https://{WEB}/") for _ in range(4)]

    assert served(pods) == [2, 2]
    assert {(r.json()["sni"], r.json()["host"]) for r in responses} == {(WEB, WEB)}
    assert {str(r.url) for r in responses} == {f"https://{WEB}/"}
