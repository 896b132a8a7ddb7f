"""LocalCluster: cluster DNS and loopback pods, kept in step through add, scale and remove."""

from __future__ import annotations

import asyncio
import socket
import ssl

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import httpx
import pytest

from headless_resolver.testing import LocalCluster, PodServer
from tests.waiting import eventually

ZONE = "svc.cluster.local."


async def query(cluster: LocalCluster, name: str, rdtype: str = "A") -> dns.message.Message:
    host, port = cluster.nameserver.rsplit(":", 1)
    request = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(request, host, port=int(port), timeout=2.0)


async def addresses(cluster: LocalCluster, name: str) -> set[str] | None:
    """The A records DNS publishes for ``name``; ``None`` for NXDOMAIN."""
    answer = await query(cluster, name)
    if answer.rcode() == dns.rcode.NXDOMAIN:
        return None
    return {rr.address for rrset in answer.answer for rr in rrset}


async def srv(cluster: LocalCluster, name: str) -> set[tuple[str, int]]:
    answer = await query(cluster, name, "SRV")
    return {(rr.target.to_text(), rr.port) for rrset in answer.answer for rr in rrset}


async def who_answers(pod: PodServer, **kwargs: object) -> str:
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
        response = await http.get(f"http://{pod.ip}:{pod.port}/", **kwargs)  # type: ignore[arg-type]
    return str(response.json()["pod"])


async def test_add_service_starts_named_pods_and_publishes_them(cluster: LocalCluster) -> None:
    pods = await cluster.add_service("web", pods=3, port=0)
    assert [pod.hostname for pod in pods] == ["web-0", "web-1", "web-2"]
    assert len({pod.ip for pod in pods}) == 3
    assert all(pod.ip.startswith("127.") for pod in pods)
    assert len({pod.port for pod in pods}) == 1
    assert [await who_answers(pod) for pod in pods] == ["web-0", "web-1", "web-2"]
    assert await addresses(cluster, f"web.default.{ZONE}") == {pod.ip for pod in pods}
    assert await addresses(cluster, f"web-1.web.default.{ZONE}") == {pods[1].ip}
    assert await srv(cluster, f"_http._tcp.web.default.{ZONE}") == {
        (f"web-{k}.web.default.{ZONE}", pods[0].port) for k in range(3)
    }
    assert cluster.pods("web") == pods


async def test_pods_listen_on_the_service_port(cluster: LocalCluster) -> None:
    pods = await cluster.add_service("api", namespace="prod", pods=2, port=18080, port_name="grpc")
    assert {pod.port for pod in pods} == {18080}
    assert await srv(cluster, f"_grpc._tcp.api.prod.{ZONE}") == {
        (f"api-{k}.api.prod.{ZONE}", 18080) for k in range(2)
    }
    assert await who_answers(pods[1], headers={"Host": "api.prod"}) == "api-1"


async def test_same_name_in_two_namespaces_are_two_services(cluster: LocalCluster) -> None:
    blue = await cluster.add_service("web", namespace="blue", pods=1, port=0)
    green = await cluster.add_service("web", namespace="green", pods=2, port=0)
    assert await addresses(cluster, f"web.blue.{ZONE}") == {blue[0].ip}
    assert await addresses(cluster, f"web.green.{ZONE}") == {pod.ip for pod in green}
    assert cluster.pods("web", "green") == green


async def test_refusing_pod_stays_in_dns(cluster: LocalCluster) -> None:
    pods = await cluster.add_service("web", pods=2, port=0)
    cluster.pods("web")[1].refuse = True
    assert await addresses(cluster, f"web.default.{ZONE}") == {pod.ip for pod in pods}
    with pytest.raises(httpx.ConnectError):
        await who_answers(pods[1])
    assert await who_answers(pods[0]) == "web-0"


async def test_pod_knobs_reach_the_pod(cluster: LocalCluster) -> None:
    await cluster.add_service("web", pods=1, port=0)
    (pod,) = cluster.pods("web")
    pod.status = 503
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
        response = await http.get(f"http://{pod.ip}:{pod.port}/")
    assert response.status_code == 503
    assert pod.requests == 1


async def test_scale_up_starts_pods_then_publishes_them(cluster: LocalCluster) -> None:
    await cluster.add_service("web", pods=2, port=0)
    pods = await cluster.scale("web", 4)
    assert [pod.hostname for pod in pods] == ["web-0", "web-1", "web-2", "web-3"]
    assert len({pod.ip for pod in pods}) == 4
    assert await who_answers(pods[3]) == "web-3"
    assert await addresses(cluster, f"web.default.{ZONE}") == {pod.ip for pod in pods}
    assert await srv(cluster, f"_http._tcp.web.default.{ZONE}") == {
        (f"web-{k}.web.default.{ZONE}", pods[0].port) for k in range(4)
    }


async def test_scale_down_removes_the_highest_ordinals(cluster: LocalCluster) -> None:
    before = await cluster.add_service("web", pods=4, port=0)
    after = await cluster.scale("web", 2)
    assert after == before[:2]
    assert cluster.pods("web") == before[:2]
    assert await addresses(cluster, f"web.default.{ZONE}") == {pod.ip for pod in after}
    assert await addresses(cluster, f"web-3.web.default.{ZONE}") is None
    for gone in before[2:]:
        with pytest.raises(httpx.ConnectError):
            await who_answers(gone)


async def test_scale_down_leaves_dns_before_the_pod_stops(cluster: LocalCluster) -> None:
    pods = await cluster.add_service("web", pods=2, port=0)
    scaling = asyncio.create_task(cluster.scale("web", 1, grace=0.5))
    await eventually(lambda: cluster.pods("web") == pods[:1])
    assert await addresses(cluster, f"web.default.{ZONE}") == {pods[0].ip}
    assert await who_answers(pods[1]) == "web-1"  # unpublished, still in its grace period
    await scaling
    with pytest.raises(httpx.ConnectError):
        await who_answers(pods[1])


async def test_scale_to_zero_is_nxdomain_and_back(cluster: LocalCluster) -> None:
    await cluster.add_service("web", pods=2, port=0)
    assert await cluster.scale("web", 0) == []
    assert await addresses(cluster, f"web.default.{ZONE}") is None
    (pod,) = await cluster.scale("web", 1)
    assert await addresses(cluster, f"web.default.{ZONE}") == {pod.ip}
    assert await who_answers(pod) == "web-0"


async def test_remove_service_unpublishes_then_stops_pods(cluster: LocalCluster) -> None:
    pods = await cluster.add_service("web", pods=2, port=0)
    await cluster.remove_service("web")
    assert await addresses(cluster, f"web.default.{ZONE}") is None
    for pod in pods:
        with pytest.raises(httpx.ConnectError):
            await who_answers(pod)
    with pytest.raises(KeyError, match=r"web\.default"):
        cluster.pods("web")


async def test_two_clusters_in_one_process_never_share_an_address() -> None:
    async with LocalCluster() as first, LocalCluster() as second:
        ours = await first.add_service("web", pods=3, port=0)
        theirs = await second.add_service("web", pods=3, port=0)
        assert {pod.ip for pod in ours}.isdisjoint(pod.ip for pod in theirs)
        assert first.nameserver != second.nameserver
        assert await addresses(second, f"web.default.{ZONE}") == {pod.ip for pod in theirs}


async def test_addresses_taken_by_another_process_are_skipped(cluster: LocalCluster) -> None:
    (first,) = await cluster.add_service("first", pods=1, port=0)
    await cluster.remove_service("first")
    with socket.socket() as foreign:
        foreign.bind((first.ip, first.port))  # what another test run might hold
        foreign.listen()
        (second,) = await cluster.add_service("second", pods=1, port=first.port)
        assert second.ip != first.ip
        assert await who_answers(second) == "second-0"


async def test_leaving_the_cluster_stops_every_pod() -> None:
    async with LocalCluster() as local:
        pods = await local.add_service("web", pods=2, port=0)
    for pod in pods:
        with pytest.raises(httpx.ConnectError):
            await who_answers(pod)


async def test_tls_pods_are_verified_by_every_service_name(cluster: LocalCluster) -> None:
    pods = await cluster.add_service("web", namespace="shop", pods=2, port=0, tls=True)
    verify = ssl.create_default_context(cafile=str(cluster.ca_cert))
    names = [
        "web",
        "web.shop",
        "web.shop.svc",
        "web.shop.svc.cluster.local",
        "web-1.web.shop.svc.cluster.local",
    ]
    for name in names:
        async with httpx.AsyncClient(trust_env=False, verify=verify, timeout=5.0) as http:
            response = await http.get(
                f"https://{pods[1].ip}:{pods[1].port}/",
                headers={"Host": name},
                extensions={"sni_hostname": name},
            )
        assert response.json() == response.json() | {"pod": "web-1", "sni": name, "host": name}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pods": -1}, "replicas"),
        ({"pods": 1.5}, "replicas"),
        ({"port": 70000}, "port.number"),
        ({"port_name": "not_a_port"}, "port.name"),
        ({"namespace": "Bad!"}, "namespace"),
    ],
)
async def test_add_service_rejects_bad_input(
    cluster: LocalCluster, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await cluster.add_service("web", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        cluster.pods("web", str(kwargs.get("namespace", "default")))


async def test_duplicate_and_unknown_services_are_errors(cluster: LocalCluster) -> None:
    await cluster.add_service("web", pods=1, port=0)
    with pytest.raises(ValueError, match="already exists"):
        await cluster.add_service("web", pods=1, port=0)
    with pytest.raises(KeyError, match=r"nope\.default"):
        await cluster.scale("nope", 2)
    with pytest.raises(KeyError, match=r"web\.other"):
        await cluster.remove_service("web", "other")
    with pytest.raises(ValueError, match="replicas"):
        await cluster.scale("web", -1)
