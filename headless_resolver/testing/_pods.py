"""Loopback pods: tiny HTTP/1.1 servers that say who they are, with knobs to make them misbehave.

Each pod listens on its own 127.0.0.x address, like a pod IP, and answers every request with
JSON naming the pod and the ``Host`` header and TLS server name it saw, so a test can tell which
pod a client reached and under which name. IPv6 has one loopback address, ``::1``: pods there
differ by port.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import re
import socket
import ssl
import struct
import tempfile
import weakref
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

from headless_resolver._errors import InvalidArgument

__all__ = ["PodServer", "make_tls"]

_LINE_LIMIT = 64 * 1024
_HEADER_LINES_LIMIT = 100
_BODY_READ_SIZE = 64 * 1024
_BACKLOG = 128
_HANDSHAKE_TIMEOUT = 10.0
_REQUEST_LINE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP/1\.([01])$")
_HEADER_NAME = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_NO_BODY_STATUSES = frozenset({204, 304})
_LINGER_ZERO = struct.pack("ii", 1, 0)

# TLS server names by TLS connection. Filled by the SNI callback during the handshake, read once
# the connection is up; module-wide so one SSLContext may serve many pods.
_server_names: weakref.WeakKeyDictionary[ssl.SSLObject | ssl.SSLSocket, str] = (
    weakref.WeakKeyDictionary()
)


def _remember_server_name(
    tls: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, context: ssl.SSLContext
) -> None:
    if server_name is not None:
        _server_names[tls] = server_name


class _BadRequest(Exception):
    """The client sent something that is not HTTP/1.1: answer 400 and hang up."""


class PodServer:
    """An HTTP/1.1 server on one loopback ``ip:port`` standing in for a pod.

    Knobs, settable at any time: ``latency`` (seconds before each answer), ``status`` (the HTTP
    status answered), ``refuse`` (stop listening: new connections get ECONNREFUSED, open ones
    live on), ``reset`` (send half a response, then reset the connection), ``body_delay``
    (seconds between the response head and its body) and ``hang_up`` (close the connection
    after each answer without announcing it, as a server whose idle timeout is zero). A TLS pod
    records the server name each client asked for through ``ssl_context.sni_callback``, which
    it sets. ``body_bytes`` counts the request body bytes received, ``requests`` the requests
    and ``paths`` the requests by path (a ``Counter``).

    Parameters:
        ip: a loopback address (127.0.0.x or ::1). port: 0 picks a free one at ``start()``.
        hostname: what it reports as ``pod`` (default: its IP).
        ssl_context: serve TLS with this context.
    """

    def __init__(
        self,
        ip: str,
        port: int = 0,
        *,
        hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"pod ip: {ip!r} is not an IP address") from None
        if not address.is_loopback:
            raise InvalidArgument(f"pod ip: {ip} is not a loopback address")
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise InvalidArgument(f"pod port: {port!r} is not in 0..65535")
        self.ip = address.compressed
        self.port = port
        self._family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        self.hostname = hostname if hostname is not None else self.ip
        self.latency = 0.0
        self.reset = False
        self.body_delay = 0.0
        self.hang_up = False
        self.body_bytes = 0
        self.requests = 0
        self.paths: collections.Counter[str] = collections.Counter()
        self.connections_total = 0
        self._status = 200
        self._ssl = ssl_context
        if ssl_context is not None:
            ssl_context.sni_callback = _remember_server_name
        self._listener: socket.socket | None = None
        self._refuse = False
        self._transports: set[asyncio.Transport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        host = f"[{self.ip}]" if self._family == socket.AF_INET6 else self.ip
        return f"<PodServer {self.hostname} {host}:{self.port}>"

    @property
    def open_connections(self) -> int:
        """Client connections accepted and not yet closed."""
        return len(self._tasks)

    @property
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not 200 <= value <= 599:
            raise InvalidArgument(f"pod status: {value!r} is not an HTTP status in 200..599")
        self._status = value

    @property
    def refuse(self) -> bool:
        return self._refuse

    @refuse.setter
    def refuse(self, value: bool) -> None:
        # The listening socket stays bound while refusing, with SO_REUSEADDR cleared, so no
        # other server can take this ip:port before the pod listens again.
        value = bool(value)
        if value == self._refuse:
            return
        self._refuse = value
        listener, loop = self._listener, self._loop
        if listener is None or loop is None:
            return
        if value:
            loop.remove_reader(listener.fileno())
            listener.shutdown(socket.SHUT_RD)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        else:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.listen(_BACKLOG)
            loop.add_reader(listener.fileno(), self._accept, listener)

    async def start(self) -> None:
        """Bind and listen; with ``port=0`` a free port is chosen and kept across ``refuse``."""
        if self._listener is not None:
            raise RuntimeError(f"{self!r} is already started")
        self._loop = asyncio.get_running_loop()
        if self.port == 0:
            # An explicitly bound port stays bound while refusing; an ephemeral one would not.
            with socket.socket(self._family) as probe:
                probe.bind((self.ip, 0))
                self.port = probe.getsockname()[1]
        listener = socket.socket(self._family)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.ip, self.port))
            listener.setblocking(False)
            if self._refuse:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
            else:
                listener.listen(_BACKLOG)
                self._loop.add_reader(listener.fileno(), self._accept, listener)
        except BaseException:
            listener.close()
            raise
        self._listener = listener

    async def stop(self) -> None:
        """Close the listener and every open connection."""
        listener, self._listener = self._listener, None
        if listener is not None and self._loop is not None:
            if not self._refuse:
                self._loop.remove_reader(listener.fileno())
            listener.close()
        for transport in list(self._transports):
            transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> PodServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def reset_connections(self) -> None:
        """Reset (RST) every open connection now."""
        for transport in list(self._transports):
            _reset(transport)

    def _accept(self, listener: socket.socket) -> None:
        assert self._loop is not None
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            self.connections_total += 1
            task = self._loop.create_task(self._serve(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_LINE_LIMIT)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                conn,
                ssl=self._ssl,
                ssl_handshake_timeout=_HANDSHAKE_TIMEOUT if self._ssl else None,
            )
        except (TimeoutError, OSError):
            conn.close()
            return
        self._transports.add(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away mid-request: nothing to answer
        finally:
            self._transports.discard(transport)
            transport.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = writer.get_extra_info("ssl_object")
        sni = _server_names.get(tls) if tls is not None else None
        while True:
            try:
                request = await _read_request(reader)
            except _BadRequest as exc:
                writer.write(_bad_request(str(exc)))
                await writer.drain()
                return
            if request is None:
                return
            method, path, host, keep_alive, body_bytes = request
            self.requests += 1
            self.paths[path] += 1
            self.body_bytes += body_bytes
            count = self.requests
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            body = json.dumps(
                {
                    "pod": self.hostname,
                    "ip": self.ip,
                    "host": host,
                    "sni": sni,
                    "method": method,
                    "path": path,
                    "count": count,
                }
            ).encode()
            response = self._response(method, body, keep_alive)
            if self.reset:
                writer.write(response[: len(response) - len(body) // 2])
                await writer.drain()
                _reset(writer.transport)
                return
            if self.body_delay > 0 and len(body) < len(response):
                writer.write(response[: len(response) - len(body)])
                await writer.drain()
                await asyncio.sleep(self.body_delay)
                writer.write(body)
            else:
                writer.write(response)
            await writer.drain()
            if not keep_alive or self.hang_up:
                return

    def _response(self, method: str, body: bytes, keep_alive: bool) -> bytes:
        status = self._status
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {status} {reason}", f"x-pod: {self.hostname}"]
        if status not in _NO_BODY_STATUSES:
            lines += ["content-type: application/json", f"content-length: {len(body)}"]
        if not keep_alive:
            lines.append("connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if method == "HEAD" or status in _NO_BODY_STATUSES:
            return head
        return head + body


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, str | None, bool, int] | None:
    """Read one request, discarding its body: ``(method, path, host, keep_alive, body bytes)``.

    ``None`` when the client closed the connection between requests.
    """
    line = await _read_line(reader)
    while line == b"":  # RFC 9112 2.2: ignore empty lines before the request line
        line = await _read_line(reader)
    if line is None:
        return None
    match = _REQUEST_LINE.match(line)
    if match is None:
        raise _BadRequest("malformed request line")
    method, path = match[1].decode("ascii"), match[2].decode("latin-1")
    headers: dict[str, str] = {}
    for _ in range(_HEADER_LINES_LIMIT):
        line = await _read_line(reader)
        if line is None:
            raise asyncio.IncompleteReadError(b"", None)
        if line == b"":
            break
        name, sep, value = line.partition(b":")
        if not sep or not _HEADER_NAME.match(name):
            raise _BadRequest("malformed header line")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    else:
        raise _BadRequest("too many header lines")
    connection = {t.strip() for t in headers.get("connection", "").lower().split(",")}
    http11 = match[3] == b"1"
    keep_alive = "close" not in connection if http11 else "keep-alive" in connection
    body_bytes = await _discard_body(reader, headers)
    return method, path, headers.get("host"), keep_alive, body_bytes


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """One CRLF-terminated line without the CRLF; ``None`` at a clean end of stream."""
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    except asyncio.LimitOverrunError:
        raise _BadRequest("line too long") from None
    return line[:-2]


async def _discard_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> int:
    """Read past the request body; returns its length."""
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if "content-length" in headers or encoding.lower() != "chunked":
            raise _BadRequest("unsupported transfer-encoding")
        return await _discard_chunked(reader)
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise _BadRequest("malformed content-length")
    await _discard_exactly(reader, int(length_text))
    return int(length_text)


async def _discard_chunked(reader: asyncio.StreamReader) -> int:
    total = 0
    while True:
        size_line = await _read_line(reader)
        if size_line is None:
            raise asyncio.IncompleteReadError(b"", None)
        size_text = size_line.partition(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest("malformed chunk size") from None
        if size < 0:
            raise _BadRequest("malformed chunk size")
        if size == 0:
            break
        total += size
        await _discard_exactly(reader, size)
        if await reader.readexactly(2) != b"\r\n":
            raise _BadRequest("chunk not followed by CRLF")
    while (trailer := await _read_line(reader)) != b"":  # trailer section
        if trailer is None:
            raise asyncio.IncompleteReadError(b"", None)
    return total


async def _discard_exactly(reader: asyncio.StreamReader, size: int) -> None:
    while size > 0:
        chunk = await reader.read(min(size, _BODY_READ_SIZE))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", size)
        size -= len(chunk)


def _bad_request(reason: str) -> bytes:
    body = f"bad request: {reason}\n".encode()
    return (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )


def _reset(transport: asyncio.WriteTransport) -> None:
    """Abort with SO_LINGER 0, so the peer gets a TCP RST instead of a clean FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: abort below still applies
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    transport.abort()


def make_tls(
    service_names: list[str], directory: str | Path | None = None
) -> tuple[Callable[[], ssl.SSLContext], Path]:
    """A fresh CA and a server certificate for ``service_names`` only, never for pod IPs.

    Returns a factory of server ``SSLContext`` objects presenting that certificate and the path
    of the CA certificate (PEM) clients verify with: they must check the service name, as a
    client of a real headless Service does. The PEM is written to ``directory`` (default: a new
    temporary directory).
    """
    authority = CertificateAuthority(directory)
    return authority.server_context_factory(service_names), authority.ca_cert


class CertificateAuthority:
    """A throwaway CA issuing server certificates for service names."""

    def __init__(self, directory: str | Path | None = None) -> None:
        try:
            import trustme  # the testing extra: imported when TLS pods are asked for
        except ImportError:
            raise ImportError(
                "TLS pods need trustme: pip install 'headless-resolver[testing]'"
            ) from None

        if directory is None:
            directory = tempfile.mkdtemp(prefix="headless-resolver-ca-")
        self._ca = trustme.CA()
        self.ca_cert = Path(directory) / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_cert))

    def server_context_factory(self, names: list[str]) -> Callable[[], ssl.SSLContext]:
        if isinstance(names, str) or not names or not all(isinstance(n, str) for n in names):
            raise InvalidArgument(f"TLS names: {names!r} is not a non-empty list of names")
        certificate = self._ca.issue_cert(*names)

        def server_context() -> ssl.SSLContext:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            certificate.configure_cert(context)
            return context

        return server_context
