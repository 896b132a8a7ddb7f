"""system_resolution_via: getaddrinfo for cluster names answered by the cluster DNS, as glibc."""

from __future__ import annotations

import asyncio
import socket

import pytest

from headless_resolver.testing import ClusterDNS, system_resolution_via

PODS = [("127.0.0.21", "web-0"), ("127.0.0.22", "web-1"), ("127.0.0.23", "web-2")]
WEB = "web.default.svc.cluster.local"


def addresses(host: str | bytes) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)]


async def test_cluster_names_get_the_servers_records_in_its_order_uncached() -> None:
    async with ClusterDNS(shuffle=False) as dns:
        dns.add_service("web", endpoints=PODS)
        with system_resolution_via(dns.nameserver):
            first = await asyncio.to_thread(addresses, WEB)
            again = await asyncio.to_thread(addresses, WEB.encode())  # anyio passes bytes
        assert first == again == [ip for ip, _ in PODS]
        assert dns.query_count(WEB, "A") == 2  # nothing cached between the two calls
        assert dns.query_count(WEB, "AAAA") == 2


async def test_failures_are_getaddrinfo_errors_and_other_names_pass_through() -> None:
    async with ClusterDNS() as dns:
        with system_resolution_via(dns.nameserver, timeout=0.2):
            with pytest.raises(socket.gaierror) as missing:
                await asyncio.to_thread(addresses, "nosuch.default.svc.cluster.local")
            assert missing.value.errno == socket.EAI_NONAME
            assert await asyncio.to_thread(addresses, "127.0.0.1") == ["127.0.0.1"]
            await dns.stop()
            with pytest.raises(socket.gaierror) as down:
                await asyncio.to_thread(addresses, WEB)
            assert down.value.errno == socket.EAI_AGAIN
        assert dns.query_count("127.0.0.1", "A") == 0


def test_the_real_getaddrinfo_is_back_after_the_block() -> None:
    real = socket.getaddrinfo
    with system_resolution_via("127.0.0.1:53"):
        assert socket.getaddrinfo is not real
    assert socket.getaddrinfo is real
