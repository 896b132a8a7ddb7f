"""PodServer: a loopback pod that reports who it is and misbehaves on request."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from headless_resolver.testing._pods import PodServer, make_tls
from tests.loopback import needs_ipv6_loopback
from tests.waiting import eventually


def client(**kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=5.0, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(
    params=[
        pytest.param(("127.0.0.21", "127.0.0.22"), id="ipv4"),
        # One IPv6 loopback address: IPv6 pods differ by port only.
        pytest.param(("::1", "::1"), id="ipv6", marks=needs_ipv6_loopback),
    ]
)
def addresses(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The addresses of ``pod`` and ``other_pod``: every pod test runs on both IP families."""
    pair: tuple[str, str] = request.param
    return pair


@pytest.fixture
async def pod(addresses: tuple[str, str]) -> AsyncIterator[PodServer]:
    async with PodServer(addresses[0], hostname="web-0") as server:
        yield server


@pytest.fixture
async def other_pod(addresses: tuple[str, str]) -> AsyncIterator[PodServer]:
    async with PodServer(addresses[1], hostname="web-1") as server:
        yield server


def url(pod: PodServer, path: str = "/") -> str:
    host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
    return f"http://{host}:{pod.port}{path}"


async def raw_exchange(pod: PodServer, data: bytes) -> bytes:
    """Send bytes on a fresh connection and read until the pod closes it."""
    reader, writer = await asyncio.open_connection(pod.ip, pod.port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()


async def test_pod_reports_its_identity_and_what_it_was_asked(pod: PodServer) -> None:
    async with client() as http:
        response = await http.get(url(pod, "/a/b?c=1"), headers={"Host": "web"})
    assert response.status_code == 200
    assert response.headers["x-pod"] == "web-0"
    assert response.json() == {
        "pod": "web-0",
        "ip": pod.ip,
        "host": "web",
        "sni": None,
        "method": "GET",
        "path": "/a/b?c=1",
        "count": 1,
    }


async def test_requests_share_one_kept_alive_connection(pod: PodServer) -> None:
    async with client() as http:
        counts = [(await http.get(url(pod))).json()["count"] for _ in range(3)]
    assert counts == [1, 2, 3]
    assert pod.requests == 3
    assert pod.connections_total == 1


async def test_request_bodies_are_read_and_discarded(pod: PodServer) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"abc", b"", b"x" * 70_000, b"end"):
            yield part

    async with client() as http:
        sized = await http.post(url(pod, "/sized"), content=b"y" * 100_000)
        chunked = await http.put(url(pod, "/chunked"), content=chunks())
        after = await http.get(url(pod, "/after"))
    assert [r.json()["method"] for r in (sized, chunked, after)] == ["POST", "PUT", "GET"]
    assert after.json()["path"] == "/after"
    assert pod.connections_total == 1


async def test_head_answers_without_a_body_and_keeps_the_connection(pod: PodServer) -> None:
    async with client() as http:
        head = await http.head(url(pod))
        get = await http.get(url(pod))
    assert head.content == b""
    assert head.headers["x-pod"] == "web-0"
    assert get.json()["count"] == 2
    assert pod.connections_total == 1


async def test_http_1_0_closes_after_the_response(pod: PodServer) -> None:
    answer = await raw_exchange(pod, b"GET /old HTTP/1.0\r\nHost: web\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in answer
    assert answer.endswith(b"}")


async def test_status_knob_sets_the_answer(pod: PodServer) -> None:
    pod.status = 503
    async with client() as http:
        response = await http.get(url(pod))
    assert response.status_code == 503
    assert response.json()["pod"] == "web-0"


@pytest.mark.parametrize("status", [99, 600, "200", True])
def test_status_knob_rejects_what_is_not_an_http_status(status: object) -> None:
    server = PodServer("127.0.0.21")
    with pytest.raises(ValueError, match="status"):
        server.status = status  # type: ignore[assignment]


async def test_latency_knob_delays_the_answer(pod: PodServer, other_pod: PodServer) -> None:
    pod.latency = 0.5
    finished: list[str] = []

    async def fetch(http: httpx.AsyncClient, server: PodServer) -> None:
        finished.append((await http.get(url(server))).json()["pod"])

    async with client() as http:
        slow = asyncio.create_task(fetch(http, pod))
        await eventually(lambda: pod.requests == 1)
        await fetch(http, other_pod)
        await slow
    assert finished == ["web-1", "web-0"]


async def test_refuse_refuses_new_connections_but_keeps_open_ones(pod: PodServer) -> None:
    async with client() as kept, client() as fresh:
        await kept.get(url(pod))
        pod.refuse = True
        with pytest.raises(httpx.ConnectError):
            await fresh.get(url(pod))
        assert (await kept.get(url(pod))).json()["count"] == 2
        pod.refuse = False
        assert (await fresh.get(url(pod))).json()["count"] == 3
    assert pod.connections_total == 2


async def test_refused_address_cannot_be_taken_by_another_server(pod: PodServer) -> None:
    pod.refuse = True
    intruder = PodServer(pod.ip, pod.port)
    with pytest.raises(OSError, match="in use"):
        await intruder.start()


async def test_a_pod_can_start_refusing() -> None:
    server = PodServer("127.0.0.24", hostname="late-0")
    server.refuse = True
    async with server, client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url(server))
        server.refuse = False
        assert (await http.get(url(server))).json()["pod"] == "late-0"


async def test_reset_knob_breaks_the_response_midway(pod: PodServer) -> None:
    pod.reset = True
    async with client() as http:
        with pytest.raises(httpx.ReadError):
            await http.get(url(pod))
        pod.reset = False
        assert (await http.get(url(pod))).json()["count"] == 2
    await eventually(lambda: pod.open_connections == 0)


async def test_reset_connections_aborts_idle_connections(pod: PodServer) -> None:
    reader, writer = await asyncio.open_connection(pod.ip, pod.port)
    await eventually(lambda: pod.open_connections == 1)
    pod.reset_connections()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    await eventually(lambda: pod.open_connections == 0)


async def test_open_connections_drop_to_zero_when_the_client_closes(pod: PodServer) -> None:
    async with client() as http:
        pod.latency = 0.1
        await asyncio.gather(*(http.get(url(pod)) for _ in range(3)))
        assert pod.open_connections == 3
    await eventually(lambda: pod.open_connections == 0)
    assert pod.connections_total == 3


@pytest.mark.parametrize(
    "garbage",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: -5\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    ],
)
async def test_garbage_gets_400_and_the_connection_closed(pod: PodServer, garbage: bytes) -> None:
    answer = await raw_exchange(pod, garbage)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert pod.requests == 0


async def test_client_leaving_mid_request_is_not_an_error(
    pod: PodServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    for partial in (
        b"GET / HT",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: 10\r\n\r\nabc",
    ):
        _, writer = await asyncio.open_connection(pod.ip, pod.port)
        writer.write(partial)
        await writer.drain()
        writer.close()
    await eventually(lambda: pod.connections_total == 3 and pod.open_connections == 0)
    assert pod.requests == 0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_stop_closes_the_listener_and_every_connection(pod: PodServer) -> None:
    reader, writer = await asyncio.open_connection(pod.ip, pod.port)
    await eventually(lambda: pod.open_connections == 1)
    await pod.stop()
    assert pod.open_connections == 0
    assert await asyncio.wait_for(reader.read(), 5.0) == b""
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(pod.ip, pod.port)


@pytest.mark.parametrize("ip", ["10.0.0.1", "::2", "web-0", ""])
def test_pods_live_on_loopback_addresses_only(ip: str) -> None:
    with pytest.raises(ValueError, match="pod ip"):
        PodServer(ip)


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Callable[[], ssl.SSLContext], ssl.SSLContext]:
    server_context, ca_cert = make_tls(["web", "web.default.svc.cluster.local"], tmp_path)
    assert ca_cert.parent == tmp_path
    return server_context, ssl.create_default_context(cafile=str(ca_cert))


async def test_tls_pod_is_verified_by_service_name_and_sees_it(
    tls: tuple[Callable[[], ssl.SSLContext], ssl.SSLContext],
) -> None:
    server_context, client_context = tls
    async with PodServer("127.0.0.23", hostname="web-2", ssl_context=server_context()) as pod:
        for name in ("web", "web.default.svc.cluster.local"):
            # One client per name: httpcore pools by host and would reuse the first handshake.
            async with client(verify=client_context) as http:
                response = await http.get(
                    f"https://{pod.ip}:{pod.port}/",
                    headers={"Host": name},
                    extensions={"sni_hostname": name},
                )
            assert response.json()["pod"] == "web-2"
            assert response.json()["sni"] == name
            assert response.json()["host"] == name


async def test_tls_certificate_is_not_valid_for_the_pod_ip(
    tls: tuple[Callable[[], ssl.SSLContext], ssl.SSLContext],
) -> None:
    server_context, client_context = tls
    async with (
        PodServer("127.0.0.23", ssl_context=server_context()) as pod,
        client(verify=client_context) as http,
    ):
        with pytest.raises(httpx.ConnectError, match="IP address mismatch"):
            await http.get(f"https://{pod.ip}:{pod.port}/")
        with pytest.raises(httpx.ConnectError, match="Hostname mismatch"):
            await http.get(f"https://{pod.ip}:{pod.port}/", extensions={"sni_hostname": "db"})
        await eventually(lambda: pod.open_connections == 0)
    assert pod.requests == 0


def test_make_tls_wants_a_list_of_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TLS names"):
        make_tls("web", tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TLS names"):
        make_tls([], tmp_path)
