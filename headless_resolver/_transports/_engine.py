"""PodConnectionPool: one pod's HTTP/1.1 connections, on asyncio protocols and llhttp.

httpcore spends most of a pooled request's client CPU on its own machinery (pool bookkeeping
that walks every connection, anyio locks and events, h11's pure-Python parser). Here each
connection is an ``asyncio.Protocol`` whose bytes go to llhttp (through ``httptools``, the
parser uvicorn uses), and the pool is a stack of idle connections, a count and a queue of
waiters: a request that finds an idle connection costs a pop, one write and one wait.

It serves what the pod pools need: HTTP/1.1 over TCP or TLS to an address, with httpx's
limits, timeouts and exception types. HTTP/2, proxies and Unix sockets stay with httpcore.
"""

from __future__ import annotations

import asyncio
import collections
import math
import socket
import ssl
from collections.abc import AsyncIterable, Iterable
from typing import Any

import httptools
import httpx

from headless_resolver._errors import InvalidArgument
from headless_resolver._transports._pools import DEFAULT_LIMITS, SocketOption

_READ_HIGH_WATER = 256 * 1024
"""Unread response body bytes above which the connection stops reading from the socket."""
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
_CONNECT_BACKOFF = 0.5
"""httpcore's connect retry delays: 0, 0.5, 1, 2... seconds."""


class _Expired(Exception):
    """A wait's deadline passed (turned into the httpx timeout of the wait's kind)."""


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


async def _wait(waiter: asyncio.Future[Any], within: float | None) -> Any:
    """Await ``waiter``; raise ``_Expired`` after ``within`` seconds (None: no limit)."""
    if within is None:
        return await waiter
    handle = waiter.get_loop().call_later(within, _expire, waiter)
    try:
        return await waiter
    finally:
        handle.cancel()


class _StaleConnection(Exception):
    """A reused connection was gone before the pod sent a byte: the request may go again."""

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: serves one exchange at a time, then waits in the pool."""

    def __init__(self, pool: PodConnectionPool) -> None:
        self._pool = pool
        self._loop = pool._loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._busy = False
        self._waiter: asyncio.Future[None] | None = None
        self._deadline: float | None = None
        """When the wait in progress times out (None: it never does)."""
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_at = math.inf
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._error: httpx.TransportError | None = None
        self._head_only = False
        self._received = False
        self._informational = False
        self._keep_alive = False
        self._close_after = False
        self.head_done = False
        self.complete = False
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self._buffered = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._busy:  # nothing asked: a pod talking out of turn is not reused
            self.close()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}"))
            self.close()
            return
        if self._buffered > _READ_HIGH_WATER and not self._read_paused and not self.complete:
            self._read_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._busy and not self.complete:
            if self.head_done and exc is None and self._until_eof():
                self.complete = True
            elif exc is None:
                said = "without sending complete message body" if self.head_done else ""
                self._fail(
                    httpx.RemoteProtocolError(
                        f"Server disconnected {said or 'without sending a response'}."
                    )
                )
            else:
                self._fail(httpx.ReadError(str(exc) or type(exc).__name__))
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._disarm()
        self._wake()
        self._pool._lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # llhttp callbacks

    def on_status(self, status: bytes) -> None:
        self.reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim: the final response follows
            self._informational = True
            self.headers = []
            return
        self.status = status
        self.head_done = True
        self._keep_alive = self._parser.should_keep_alive() and status != 101
        if self._head_only:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if not self._head_only:
            self.chunks.append(body)
            self._buffered += len(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self.complete = True

    # the exchange

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: httpx.TransportError) -> None:
        if self._error is None:
            self._error = error

    def _until_eof(self) -> bool:
        """The response has no length and is not chunked: its body ends with the connection."""
        for name, _ in self.headers:
            if name.lower() in (b"content-length", b"transfer-encoding"):
                return False
        return True

    async def wait(self, within: float | None) -> None:
        """Until more of the response arrived (or the connection ended)."""
        if self._error is not None:
            raise self._error
        self._waiter = waiter = self._loop.create_future()
        if within is None:
            self._deadline = None
        else:
            self._deadline = deadline = self._loop.time() + within
            if deadline < self._watchdog_at:
                self._arm(deadline)
        try:
            await waiter
        except _Expired:
            raise httpx.ReadTimeout("timed out reading the response") from None
        finally:
            self._waiter = None
        if self._error is not None and not self.complete and not self.chunks:
            raise self._error

    # One timer per connection, not one per wait: a wait only moves the deadline on. The timer
    # fires at the earliest deadline it was armed for, and then either times the wait in
    # progress out or is armed again for that wait's (later) deadline; with nothing waiting,
    # it rests until the next wait. So a connection answering within its timeouts costs the
    # loop one timer per read timeout, not two heap operations per request.

    def _arm(self, deadline: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = self._loop.call_at(deadline, self._check_deadline)
        self._watchdog_at = deadline

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._watchdog_at = math.inf

    def _check_deadline(self) -> None:
        self._watchdog, self._watchdog_at = None, math.inf
        waiter, deadline = self._waiter, self._deadline
        if waiter is None or deadline is None:
            return
        if self._loop.time() >= deadline:
            _expire(waiter)
        else:
            self._arm(deadline)

    def take_body(self) -> list[bytes]:
        """The body bytes received so far; reading resumes once they are taken."""
        chunks, self.chunks, self._buffered = self.chunks, [], 0
        if self._read_paused:
            self._read_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return chunks

    async def exchange(
        self,
        method: bytes,
        head: bytes,
        body: AsyncIterable[bytes] | None,
        chunked: bool,
        close_after: bool,
        timeouts: dict[str, float | None],
    ) -> None:
        """Send the request and read the response head (status, reason, headers)."""
        transport = self.transport
        assert transport is not None
        self._busy = True
        self._head_only = method == b"HEAD"
        self._close_after = close_after
        if self.closed:
            raise _StaleConnection(httpx.RemoteProtocolError("Server disconnected."))
        transport.write(head)
        if body is not None:
            await self._send_body(body, chunked, timeouts.get("write"))
        elif self._write_paused:
            await self._drained(timeouts.get("write"))
        while not self.head_done:
            try:
                await self.wait(timeouts.get("read"))
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                if self.reused and not self._received and body is None and method in _IDEMPOTENT:
                    raise _StaleConnection(exc) from exc
                raise

    async def _send_body(
        self, body: AsyncIterable[bytes], chunked: bool, within: float | None
    ) -> None:
        transport = self.transport
        assert transport is not None
        async for chunk in body:
            if self.closed:
                break
            if chunk:
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if self._write_paused:
                await self._drained(within)
        if self.closed:
            if self._received:
                return  # the pod answered early (an error status, say): read that answer
            raise httpx.WriteError("the pod closed the connection while the body was sent")
        if chunked:
            transport.write(b"0\r\n\r\n")
        if self._write_paused:
            await self._drained(within)

    async def _drained(self, within: float | None) -> None:
        self._drain = drain = self._loop.create_future()
        try:
            await _wait(drain, within)
        except _Expired:
            raise httpx.WriteTimeout("timed out writing the request") from None
        finally:
            self._drain = None
        if self.closed and not self._received:
            raise httpx.WriteError("the pod closed the connection while the request was sent")

    def finish(self) -> bool:
        """The exchange is over; True if the connection may serve another."""
        reusable = (
            self.complete
            and self._keep_alive
            and not self._close_after
            and not self.closed
            and not self.chunks
        )
        self._busy = False
        self._head_only = False
        self._received = False
        self.head_done = self.complete = False
        self.headers = []
        self.reason = b""
        self._error = None
        return reusable

    def reset_parser(self) -> None:
        """After a HEAD answer: llhttp, not told the method, would expect its announced body."""
        self._parser = httptools.HttpResponseParser(self)

    def close(self) -> None:
        self.closed = True
        self._disarm()
        if self.transport is not None:
            self.transport.abort()


class WholeBody(httpx.AsyncByteStream):
    """A response body received in full with its head: nothing left to read from the pod.

    Its connection is back in the pool before the caller sees the response, so closing the
    body costs nothing, and the transport above knows the attempt is over already.
    """

    __slots__ = ("_chunks",)

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks: list[bytes] | None = chunks

    def __aiter__(self) -> WholeBody:
        return self

    async def __anext__(self) -> bytes:
        chunks, self._chunks = self._chunks, None
        if not chunks:
            raise StopAsyncIteration
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def aclose(self) -> None:
        self._chunks = None


class _ResponseBody(httpx.AsyncByteStream):
    """A response body read from its connection; closing it hands the connection back."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: PodConnectionPool, conn: _Connection, within: float | None) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self._timeout = within

    def __aiter__(self) -> _ResponseBody:
        # An iterator object rather than an async generator: no generator for the loop to
        # track and finalise on every response.
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        try:
            while not conn.chunks:
                if conn.complete:
                    break
                await conn.wait(self._timeout)
            else:
                return b"".join(conn.take_body())
        except BaseException:
            self._done(keep=False)
            raise
        self._done(keep=True)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._done(keep=False)

    def _done(self, keep: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._checkin(conn, keep)


class PodConnectionPool(httpx.AsyncBaseTransport):
    """HTTP/1.1 connections to one address, pooled: an ``httpx.AsyncBaseTransport``.

    Takes the options ``httpx.AsyncHTTPTransport`` takes for a pod:

    - ``verify``: the ``ssl.SSLContext`` for ``https``; the server name is the request's
      ``sni_hostname`` extension, else the URL's host;
    - ``limits``: ``max_connections`` (beyond it requests wait, at most the ``pool``
      timeout, then ``httpx.PoolTimeout``), ``max_keepalive_connections`` and
      ``keepalive_expiry`` (idle connections are closed when it passes);
    - ``local_address``, ``socket_options``, and ``retries`` (connect attempts after the first);
    - ``address``: ``(ip, port, server name)`` of the pod. Given, every request goes there
      whatever its URL's host, and TLS names the server name: the caller's request is sent
      as it is, with no copy per attempt. Without it, the URL says where to connect.

    A connection the pod closed while idle is never reused; a reused one found closed before
    any answer is replaced once for an idempotent request. A response's connection goes back to
    the pool when its body has been read to the end and the pod allows keep-alive; a body
    closed early, a timeout, an error or a cancellation closes it instead.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext,
        limits: httpx.Limits = DEFAULT_LIMITS,
        http1: bool = True,
        http2: bool = False,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[SocketOption] | None = None,
        address: tuple[str, int, str] | None = None,
    ) -> None:
        if http2 or not http1:
            raise InvalidArgument("PodConnectionPool speaks HTTP/1.1 only: use httpx for HTTP/2")
        self._loop = asyncio.get_running_loop()
        self._ssl = verify
        self._max_connections = limits.max_connections
        self._max_keepalive = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._local_address = local_address
        self._retries = retries
        self._socket_options = list(socket_options or ())
        self._address = address
        self._idle: list[_Connection] = []
        self._connections: set[_Connection] = set()
        self._count = 0
        """Connections open, opening, or promised to a waiter."""
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open (idle or serving a request)."""
        return len(self._connections)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the pool is closed")
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        method = request.method.encode("ascii")
        head, body, chunked, close_after = _serialize(request, method)
        retried = False
        while True:
            conn = await self._checkout(request, timeouts)
            try:
                await conn.exchange(method, head, body, chunked, close_after, timeouts)
            except _StaleConnection as stale:
                self._checkin(conn, False)
                if retried:
                    raise stale.error from None
                retried = True
                continue
            except BaseException:
                self._checkin(conn, False)
                raise
            if conn._head_only:
                conn.reset_parser()
            stream: httpx.AsyncByteStream
            if conn.complete:  # the whole body came with the head: the connection is free now
                stream = WholeBody(conn.take_body())
            else:
                stream = _ResponseBody(self, conn, timeouts.get("read"))
            response = httpx.Response(
                conn.status,
                headers=conn.headers,
                stream=stream,
                extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason},
            )
            if conn.complete:
                self._checkin(conn, True)
            return response

    # connections in and out

    async def _checkout(
        self, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> _Connection:
        idle, expiry = self._idle, self._expiry
        while idle:
            conn = idle.pop()
            if expiry is None or self._loop.time() - conn.idle_since < expiry:
                conn.reused = True
                return conn
            conn.close()  # expired; _lost() frees its place
        if self._max_connections is None or self._count < self._max_connections:
            self._count += 1
        else:
            conn_or_slot = await self._queue(timeouts.get("pool"))
            if conn_or_slot is not None:
                conn_or_slot.reused = True
                return conn_or_slot
        try:
            return await self._connect(request, timeouts.get("connect"))
        except BaseException:
            self._free_slot()
            raise

    async def _queue(self, within: float | None) -> _Connection | None:
        """Wait for a connection handed back, or a free place to open one (None)."""
        waiter: asyncio.Future[_Connection | None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            return await _wait(waiter, within)  # type: ignore[no-any-return]
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                given = waiter.result()  # handed over as we gave up: pass it on
                if given is None:
                    self._free_slot()
                else:
                    self._put_back(given)
            else:
                waiter.cancel()
            if isinstance(exc, _Expired):
                raise httpx.PoolTimeout("timed out waiting for a connection to the pod") from None
            raise

    def _next_waiter(self) -> asyncio.Future[_Connection | None] | None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def _checkin(self, conn: _Connection, keep: bool) -> None:
        """The exchange on ``conn`` is over; keep the connection if it can serve another."""
        if conn.finish() and keep:
            self._put_back(conn)
        else:
            conn.close()

    def _put_back(self, conn: _Connection) -> None:
        """A connection ready for another request: to a waiting one, or to the idle stack."""
        if self._closed:
            conn.close()
            return
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(conn)
            return
        if self._max_keepalive is not None and len(self._idle) >= self._max_keepalive:
            conn.close()
            return
        conn.idle_since = self._loop.time()
        self._idle.append(conn)
        if self._sweep is None and self._expiry is not None:
            self._sweep = self._loop.call_at(conn.idle_since + self._expiry, self._expire_idle)

    def _lost(self, conn: _Connection) -> None:
        """``conn`` closed (either side): forget it and free its place."""
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._free_slot()

    def _free_slot(self) -> None:
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(None)  # its place to open a connection in
        else:
            self._count -= 1

    def _expire_idle(self) -> None:
        self._sweep = None
        assert self._expiry is not None
        now = self._loop.time()
        idle = self._idle
        while idle and now - idle[0].idle_since >= self._expiry:
            idle.pop(0).close()
        if idle:
            self._sweep = self._loop.call_at(idle[0].idle_since + self._expiry, self._expire_idle)

    async def _connect(self, request: httpx.Request, within: float | None) -> _Connection:
        url = request.url
        server_name = None
        if self._address is not None:
            host, port, name = self._address
            if url.scheme == "https":
                server_name = name
        else:
            host, port = url.host, url.port or (443 if url.scheme == "https" else 80)
            if url.scheme == "https":
                sni = request.extensions.get("sni_hostname")
                server_name = sni.decode("ascii") if isinstance(sni, bytes) else (sni or host)
        delay = 0.0
        for attempt in range(self._retries + 1):
            try:
                return await self._open(host, port, server_name, within)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt == self._retries:
                    raise
            await asyncio.sleep(delay)
            delay = _CONNECT_BACKOFF if delay == 0 else delay * 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _open(
        self, host: str, port: int, server_name: str | None, within: float | None
    ) -> _Connection:
        conn = _Connection(self)
        tls = self._ssl if server_name is not None else None
        try:
            async with asyncio.timeout(within):
                if self._socket_options or self._local_address:
                    sock = await self._socket(host, port)
                    await self._loop.create_connection(
                        lambda: conn, sock=sock, ssl=tls, server_hostname=server_name
                    )
                else:
                    await self._loop.create_connection(
                        lambda: conn, host, port, ssl=tls, server_hostname=server_name
                    )
        except TimeoutError:
            conn.close()
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            conn.close()
            raise
        if conn.closed:  # lost during the handshake
            raise httpx.ConnectError(f"{host}:{port} closed the connection")
        self._connections.add(conn)
        return conn

    async def _socket(self, host: str, port: int) -> socket.socket:
        """A connected socket with the options and local address asked for."""
        infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            for option in self._socket_options:
                sock.setsockopt(*option)
            if self._local_address:
                sock.bind((self._local_address, 0))
            await self._loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    async def aclose(self) -> None:
        """Close every connection, idle or serving a request."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        connections, self._connections = self._connections, set()
        for conn in connections:
            conn.close()
        self._idle.clear()
        while (waiter := self._next_waiter()) is not None:
            waiter.set_exception(httpx.PoolTimeout("the pool was closed"))
        if connections:
            await asyncio.sleep(0)  # the transports close their sockets in the next loop pass


def _serialize(
    request: httpx.Request, method: bytes
) -> tuple[bytes, AsyncIterable[bytes] | None, bool, bool]:
    """The request head (with the body when in memory), the streamed body, chunked, close."""
    url = request.url
    parts = [method, b" ", url.raw_path, b" HTTP/1.1\r\n"]
    framed = chunked = close = False
    for name, lower, value in request.headers._list:  # as sent, lower-cased, value
        parts += (name, b": ", value, b"\r\n")
        if lower == b"content-length":
            framed = True
        elif lower == b"transfer-encoding":
            framed = chunked = value.lower() == b"chunked"
        elif lower == b"connection":
            close = b"close" in value.lower()
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        content = b"".join(stream)
        if content and not framed:
            parts.append(b"Content-Length: %d\r\n" % len(content))
        parts += (b"\r\n", content)
        return b"".join(parts), None, False, close
    if not framed:
        parts.append(b"Transfer-Encoding: chunked\r\n")
        chunked = True
    parts.append(b"\r\n")
    assert isinstance(stream, AsyncIterable), "an httpx.AsyncClient request's stream"
    return b"".join(parts), stream, chunked, close
