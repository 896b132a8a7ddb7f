"""PodConnectionPool: one pod's HTTP/1.1 connections, against real loopback pods.

What the pod pools promise httpx and the transport above them: keep-alive within the limits,
httpx's timeouts and exception types, streaming with the connection handed back on close,
the service's TLS name, no connection reused half-read or after the pod hung up, and nothing
left behind by a cancelled request.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme

from headless_resolver import HeadlessResolver, HeadlessTransport, RoundRobin
from headless_resolver._transports._engine import PodConnectionPool
from headless_resolver.testing import LocalCluster, PodServer, make_tls
from tests.leaks import open_fds, pending_tasks
from tests.waiting import eventually

SERVICE = "web.default.svc.cluster.local"
NO_VERIFY = ssl.create_default_context()
TEN = httpx.Limits(max_connections=10, max_keepalive_connections=10)


@pytest.fixture
async def pod() -> AsyncIterator[PodServer]:
    async with PodServer("127.0.0.21", hostname="web-0") as server:
        yield server


def url(pod: PodServer, path: str = "/", scheme: str = "http") -> str:
    return f"{scheme}://{pod.ip}:{pod.port}{path}"


def pool_client(
    limits: httpx.Limits = TEN,
    timeout: httpx.Timeout | float = 5.0,
    verify: ssl.SSLContext = NO_VERIFY,
) -> tuple[PodConnectionPool, httpx.AsyncClient]:
    pool = PodConnectionPool(verify=verify, limits=limits)
    return pool, httpx.AsyncClient(transport=pool, timeout=timeout, trust_env=False)


# --- keep-alive and limits --------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(pod: PodServer) -> None:
    _pool, http = pool_client()
    async with http:
        for n in range(1, 6):
            response = await http.get(url(pod), headers={"host": SERVICE})
            assert response.json()["count"] == n
            assert response.json()["host"] == SERVICE
            assert response.extensions["http_version"] == b"HTTP/1.1"
            assert response.extensions["reason_phrase"] == b"OK"
    assert pod.connections_total == 1


async def test_concurrent_requests_stay_within_max_connections(pod: PodServer) -> None:
    pod.latency = 0.05
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    pool, http = pool_client(limits)
    async with http:
        responses = await asyncio.gather(*(http.get(url(pod)) for _ in range(20)))
        assert {r.status_code for r in responses} == {200}
        assert pod.connections_total == 4
        assert pool.connections == 4


async def test_no_more_connections_kept_alive_than_the_limit(pod: PodServer) -> None:
    pod.latency = 0.05
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=3)
    pool, http = pool_client(limits)
    async with http:
        await asyncio.gather(*(http.get(url(pod)) for _ in range(10)))
        assert pod.connections_total == 10
        await eventually(lambda: pod.open_connections == 3)
        assert pool.idle_connections == 3


async def test_idle_connections_close_after_keepalive_expiry(pod: PodServer) -> None:
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=0.1)
    pool, http = pool_client(limits)
    async with http:
        await http.get(url(pod))
        assert pod.open_connections == 1
        await eventually(lambda: pod.open_connections == 0)  # with no further request
        assert pool.connections == 0
        await http.get(url(pod))
    assert pod.connections_total == 2


async def test_pool_timeout_when_every_connection_stays_busy(pod: PodServer) -> None:
    pod.latency = 1.0
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    _pool, http = pool_client(limits, timeout=httpx.Timeout(5.0, pool=0.1))
    async with http:
        slow = asyncio.create_task(http.get(url(pod)))
        await eventually(lambda: pod.requests == 1)
        with pytest.raises(httpx.PoolTimeout):
            await http.get(url(pod))
        pod.latency = 0.0
        assert (await slow).status_code == 200
        assert (await http.get(url(pod))).status_code == 200  # the slot came back
    assert pod.connections_total == 1


async def test_a_waiting_request_takes_the_connection_handed_back(pod: PodServer) -> None:
    pod.latency = 0.1
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    _pool, http = pool_client(limits, timeout=httpx.Timeout(5.0, pool=2.0))
    async with http:
        responses = await asyncio.gather(*(http.get(url(pod)) for _ in range(3)))
    assert [r.json()["count"] for r in responses] == [1, 2, 3]
    assert pod.connections_total == 1


# --- what a connection may not be reused after --------------------------------------------------


async def test_connection_close_is_honoured_both_ways(pod: PodServer) -> None:
    _pool, http = pool_client()
    async with http:
        asked = await http.get(url(pod), headers={"connection": "close"})
        assert asked.headers["connection"] == "close"
        await http.get(url(pod))
    assert pod.connections_total == 2


async def test_a_connection_the_pod_closed_while_idle_costs_no_get(pod: PodServer) -> None:
    pod.hang_up = True  # answers, then closes without saying so
    _pool, http = pool_client()
    async with http:
        for n in range(1, 4):
            assert (await http.get(url(pod))).json()["count"] == n
    assert pod.connections_total == 3


async def _one_answer_per_connection(ip: str) -> tuple[asyncio.Server, list[bytes]]:
    """Answers a connection's first request; closes it unanswered on the second, as a server
    whose idle timeout fires just as the request arrives."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    return await asyncio.start_server(serve, ip, 0), seen


async def test_a_reused_connection_lost_before_any_answer_is_replaced_once_for_a_get() -> None:
    server, seen = await _one_answer_per_connection("127.0.0.27")
    port = server.sockets[0].getsockname()[1]
    _pool, http = pool_client()
    async with server, http:
        await http.get(f"http://127.0.0.27:{port}/")
        assert (await http.get(f"http://127.0.0.27:{port}/")).content == b"ok"
        assert len(seen) == 3  # answered, dropped on the old connection, answered on a new one

        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(f"http://127.0.0.27:{port}/", content=b"order")
        assert len(seen) == 4  # a POST is not sent twice


async def test_a_body_closed_before_its_end_closes_the_connection(pod: PodServer) -> None:
    pod.body_delay = 0.2
    _pool, http = pool_client()
    async with http:
        async with http.stream("GET", url(pod)) as response:
            assert response.status_code == 200  # head only: the body is 0.2 s away
        await eventually(lambda: pod.open_connections == 0)
        pod.body_delay = 0.0
        async with http.stream("GET", url(pod)) as response:
            assert (await response.aread()).startswith(b"{")
        await http.get(url(pod))  # the fully read stream's connection is reused
    assert pod.connections_total == 2


async def test_a_streamed_body_arrives_after_a_slow_start(pod: PodServer) -> None:
    pod.body_delay = 0.1
    pool, http = pool_client()
    async with http:
        async with http.stream("GET", url(pod)) as response:
            chunks = [chunk async for chunk in response.aiter_raw()]
        assert b"".join(chunks).startswith(b"{")
        assert pool.idle_connections == 1


async def test_a_body_received_with_its_head_frees_the_connection_before_it_is_read(
    pod: PodServer,
) -> None:
    pool, http = pool_client()
    async with http:
        async with http.stream("GET", url(pod)) as first, http.stream("GET", url(pod)) as second:
            # the first answer came whole: its connection served the second while it is unread
            assert (pool.connections, pool.idle_connections) == (1, 1)
            assert (await first.aread()).startswith(b"{")
            assert b"".join([chunk async for chunk in second.aiter_raw()]).startswith(b"{")
        pod.body_delay = 0.2
        async with http.stream("GET", url(pod)) as late:
            assert pool.idle_connections == 0  # its body is still on the way
            assert (await late.aread()).startswith(b"{")
        assert pool.idle_connections == 1
    assert pod.connections_total == 1


async def test_a_pool_given_the_pods_address_sends_the_request_there_as_it_is() -> None:
    server_context, ca = make_tls([SERVICE])
    async with PodServer("127.0.0.27", ssl_context=server_context()) as tls_pod:
        pool = PodConnectionPool(
            verify=ssl.create_default_context(cafile=str(ca)),
            address=(tls_pod.ip, tls_pod.port, SERVICE),
        )
        async with httpx.AsyncClient(transport=pool, trust_env=False) as http:
            response = await http.get(f"https://{SERVICE}/path")
        seen = response.json()
        assert (seen["host"], seen["sni"], seen["path"]) == (SERVICE, SERVICE, "/path")
        assert str(response.request.url) == f"https://{SERVICE}/path"


@pytest.mark.parametrize("method", ["HEAD", "GET"])
@pytest.mark.parametrize("status", [200, 204, 304])
async def test_answers_without_a_body_leave_the_connection_usable(
    pod: PodServer, method: str, status: int
) -> None:
    pod.status = status
    _pool, http = pool_client()
    async with http:
        response = await http.request(method, url(pod))
        assert response.status_code == status
        if method == "HEAD" or status != 200:
            assert response.content == b""
        pod.status = 200
        assert (await http.get(url(pod))).json()["count"] == 2
    assert pod.connections_total == 1


# --- request bodies ---------------------------------------------------------------------------


async def test_request_bodies_in_memory_and_streamed_chunked(pod: PodServer) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 10_000

    _pool, http = pool_client()
    async with http:
        assert (await http.post(url(pod), content=b"y" * 300_000)).status_code == 200
        assert (await http.post(url(pod), content=parts())).status_code == 200
        assert (await http.get(url(pod))).json()["count"] == 3
    assert pod.body_bytes == 400_000
    assert pod.connections_total == 1


# --- timeouts and errors, as httpx's types ------------------------------------------------------


async def test_read_timeout_waiting_for_the_head(pod: PodServer) -> None:
    pod.latency = 1.0
    pool, http = pool_client(timeout=httpx.Timeout(5.0, read=0.1))
    async with http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url(pod))
        await eventually(lambda: pool.connections == 0)  # never reused half-way


async def test_read_timeout_in_the_middle_of_the_body(pod: PodServer) -> None:
    pod.body_delay = 1.0
    _pool, http = pool_client(timeout=httpx.Timeout(5.0, read=0.1))
    async with http:
        async with http.stream("GET", url(pod)) as response:
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()
        await eventually(lambda: pod.open_connections == 0)


async def test_a_shorter_read_timeout_on_a_reused_connection_still_applies(
    pod: PodServer,
) -> None:
    _pool, http = pool_client(timeout=httpx.Timeout(5.0, read=30.0))
    async with http:
        assert (await http.get(url(pod))).status_code == 200  # the connection's timer: 30 s
        pod.latency = 1.0
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url(pod), timeout=httpx.Timeout(5.0, read=0.1))
        assert asyncio.get_running_loop().time() - started < 0.9
    assert pod.connections_total == 1


async def test_a_read_timeout_counts_from_its_own_wait_not_an_earlier_one(
    pod: PodServer,
) -> None:
    pool, http = pool_client(timeout=httpx.Timeout(5.0, read=0.3))
    async with http:
        assert (await http.get(url(pod))).status_code == 200  # armed for now + 0.3 s
        await asyncio.sleep(0.2)
        pod.latency = 0.2  # answers 0.4 s after the first wait began, within its own 0.3
        assert (await http.get(url(pod))).status_code == 200
        assert pool.connections == 1


async def test_connect_error_for_a_refusing_pod(pod: PodServer) -> None:
    pod.refuse = True
    _pool, http = pool_client()
    async with http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url(pod))
        pod.refuse = False
        assert (await http.get(url(pod))).status_code == 200  # the failed slot was freed


async def _silent_server(ip: str) -> tuple[asyncio.Server, int]:
    """Accepts connections and never says or reads a thing."""
    silent: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)
        try:
            await asyncio.sleep(30)
        finally:
            writer.close()

    server = await asyncio.start_server(hold, ip, 0)
    return server, server.sockets[0].getsockname()[1]


async def test_connect_timeout_when_the_tls_handshake_never_ends() -> None:
    server, port = await _silent_server("127.0.0.22")
    pool, http = pool_client(timeout=httpx.Timeout(5.0, connect=0.2))
    async with server, http:
        with pytest.raises(httpx.ConnectTimeout):
            await http.get(f"https://127.0.0.22:{port}/")
        assert pool.connections == 0


async def test_write_timeout_when_the_pod_reads_nothing() -> None:
    server, port = await _silent_server("127.0.0.23")
    _pool, http = pool_client(timeout=httpx.Timeout(5.0, write=0.2))
    async with server, http:
        with pytest.raises(httpx.WriteTimeout):
            await http.post(f"http://127.0.0.23:{port}/", content=b"z" * 50_000_000)


async def test_a_reset_mid_body_is_a_read_error(pod: PodServer) -> None:
    pod.reset = True
    _pool, http = pool_client()
    async with http:
        with pytest.raises(httpx.ReadError):
            await http.post(url(pod), content=b"order")
    assert pod.requests == 1  # never sent again


async def test_a_hang_up_before_the_answer_is_a_remote_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.24", 0)
    port = server.sockets[0].getsockname()[1]
    _pool, http = pool_client()
    async with server, http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(f"http://127.0.0.24:{port}/")


async def test_socket_options_and_local_address_apply(pod: PodServer) -> None:
    pool = PodConnectionPool(
        verify=NO_VERIFY,
        local_address="127.0.0.25",
        socket_options=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)],
    )
    async with httpx.AsyncClient(transport=pool) as http:
        assert (await http.get(url(pod))).status_code == 200


def test_http2_is_refused() -> None:
    with pytest.raises(ValueError, match=r"HTTP/1\.1"):
        PodConnectionPool(verify=NO_VERIFY, http2=True)


# --- TLS --------------------------------------------------------------------------------------


async def test_tls_checks_the_sni_hostname_against_the_custom_context() -> None:
    server_context, ca = make_tls([SERVICE])
    async with PodServer("127.0.0.26", ssl_context=server_context()) as tls_pod:
        verify = ssl.create_default_context(cafile=str(ca))
        _pool, http = pool_client(verify=verify)
        async with http:
            response = await http.get(
                url(tls_pod, scheme="https"),
                headers={"host": SERVICE},
                extensions={"sni_hostname": SERVICE},
            )
            assert response.json()["sni"] == SERVICE
        _pool, http = pool_client(verify=verify)
        async with http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(url(tls_pod, scheme="https"))  # the pod IP is not the name

        other = ssl.create_default_context()
        trustme.CA().configure_trust(other)
        _pool, http = pool_client(verify=other)
        async with http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(url(tls_pod, scheme="https"), extensions={"sni_hostname": SERVICE})
        assert tls_pod.requests == 1


# --- cancellation -----------------------------------------------------------------------------


async def test_cancelled_requests_leave_no_connection_task_or_descriptor(pod: PodServer) -> None:
    fds_before, tasks_before = open_fds(), pending_tasks()
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    pool, http = pool_client(limits, timeout=httpx.Timeout(5.0, pool=1.0))
    async with http:
        pod.latency = 1.0
        waiting = [asyncio.create_task(http.get(url(pod))) for _ in range(4)]  # 2 wait a slot
        await eventually(lambda: pod.requests == 2)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        pod.latency, pod.body_delay = 0.0, 1.0
        async with http.stream("GET", url(pod)) as response:
            reading = asyncio.create_task(response.aread())
            await asyncio.sleep(0.05)
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        pod.body_delay = 0.0
        responses = await asyncio.gather(*(http.get(url(pod)) for _ in range(4)))
        assert {r.status_code for r in responses} == {200}  # no slot was lost
        assert pool.connections <= 2
    assert pool.connections == 0
    await eventually(lambda: pod.open_connections == 0)
    await eventually(lambda: open_fds() <= fds_before)
    await eventually(lambda: pending_tasks() <= tasks_before)


# --- under HeadlessTransport --------------------------------------------------------------------


async def test_headless_transport_picks_the_engine_by_protocol(cluster: LocalCluster) -> None:
    async with HeadlessResolver([cluster.nameserver]) as resolver:
        assert HeadlessTransport(resolver).engine == "llhttp"
        assert HeadlessTransport(resolver, http2=True).engine == "httpcore"
        assert HeadlessTransport(resolver, engine="httpcore").engine == "httpcore"
        with pytest.raises(ValueError, match=r"HTTP/1\.1"):
            HeadlessTransport(resolver, engine="llhttp", http2=True)
        with pytest.raises(ValueError, match="engine"):
            HeadlessTransport(resolver, engine="h11")  # type: ignore[arg-type]


async def test_a_pod_reset_mid_body_never_gets_the_post_again(cluster: LocalCluster) -> None:
    pods = await cluster.add_service("web", pods=3)
    for pod in pods:
        pod.reset = True
    async with (
        HeadlessResolver([cluster.nameserver]) as resolver,
        httpx.AsyncClient(transport=HeadlessTransport(resolver, RoundRobin())) as http,
    ):
        with pytest.raises(httpx.ReadError):
            await http.post(f"http://{SERVICE}:8080/", content=b"order")
        assert sum(pod.requests for pod in pods) == 1
        for pod in pods:
            pod.reset = False
        assert (await http.get(f"http://{SERVICE}:8080/")).status_code == 200
