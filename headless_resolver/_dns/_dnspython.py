"""DNS over UDP, then TCP when truncated: dnspython builds the query, a lean reader parses.

One ``query`` is one attempt against one nameserver (rotating between calls), bounded by
``timeout`` across both transports. A truncated UDP answer is never used: it is asked again
over TCP, and only a TCP answer that is itself truncated is kept (marked ``truncated``).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

import dns.exception
import dns.message
import dns.name

from headless_resolver._dns._base import DnsAnswer, RecordType
from headless_resolver._dns._wire import (
    TYPE_CODES,
    MalformedResponse,
    Response,
    parse_response,
    response_id,
)
from headless_resolver._errors import InvalidServiceName, ResolutionError

EDNS_PAYLOAD = 1232
"""The DNS Flag Day 2020 size: fits any path MTU, holds ~73 A records."""


class DnspythonBackend:
    """Queries the nameservers in turn, one attempt per call, no cache, no search list."""

    def __init__(self, nameservers: Sequence[tuple[str, int]], *, timeout: float) -> None:
        self._nameservers = check_nameservers(nameservers)
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self._timeout = timeout
        self._next = 0

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        name = check_query(name, rdtype)
        host, port = self._nameservers[self._next]
        self._next = (self._next + 1) % len(self._nameservers)
        try:
            message = dns.message.make_query(name, rdtype, use_edns=0, payload=EDNS_PAYLOAD)
        except dns.exception.DNSException as exc:
            raise InvalidServiceName(f"{name!r} cannot be sent as a DNS name: {exc}") from None
        wire = message.to_wire()
        where = f"{host}:{port}"
        try:
            async with asyncio.timeout(self._timeout):
                reply = await _exchange_udp(wire, host, port)
                response = _read(reply, message.id, name, rdtype, where)
                if response.truncated:
                    reply = await _exchange_tcp(wire, host, port)
                    response = _read(reply, message.id, name, rdtype, where)
        except TimeoutError:
            raise ResolutionError(
                f"{name} {rdtype}: no answer from {where} within {self._timeout} s",
                name=name,
                rcode="TIMEOUT",
            ) from None
        except OSError as exc:
            raise ResolutionError(
                f"{name} {rdtype}: {where} unreachable: {exc}", name=name, rcode="NETWORK"
            ) from None
        if response.answer is None:
            raise ResolutionError(
                f"{name} {rdtype}: {where} answered {response.rcode}",
                name=name,
                rcode=response.rcode,
            )
        return response.answer

    async def aclose(self) -> None:
        """Nothing to free: every query opens and closes its own sockets."""


def check_nameservers(nameservers: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Validate ``(host, port)`` pairs up front, so a typo fails at construction."""
    checked = tuple(nameservers)
    if not checked:
        raise ValueError("at least one nameserver is required")
    for entry in checked:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ValueError(f"nameserver {entry!r} is not a (host, port) pair")
        host, port = entry
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except (OSError, TypeError):
            raise ValueError(f"nameserver host {host!r} is not an IP address") from None
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"nameserver port {port!r} is not in 1..65535")
    return checked


def check_query(name: str, rdtype: str) -> str:
    """Both backends take absolute names and A/AAAA/SRV only; anything else is a caller bug."""
    if rdtype not in TYPE_CODES:
        raise ValueError(f"record type {rdtype!r} is not one of {sorted(TYPE_CODES)}")
    if not isinstance(name, str) or not name.endswith(".") or name == ".":
        raise InvalidServiceName(f"{name!r} is not an absolute DNS name (with trailing dot)")
    labels = name[:-1].split(".")
    if len(name) > 254 or not all(0 < len(label) < 64 for label in labels):
        raise InvalidServiceName(f"{name!r} has an empty or over-long label, or is too long")
    return name.lower()


def _read(reply: bytes, query_id: int, name: str, rdtype: RecordType, where: str) -> Response:
    try:
        return parse_response(reply, query_id, name, rdtype)
    except MalformedResponse as exc:
        raise ResolutionError(
            f"{name} {rdtype}: {where}: {exc}", name=name, rcode="MALFORMED"
        ) from None


class _ReplyProtocol(asyncio.DatagramProtocol):
    """Waits for the datagram carrying our ID; others (late, spoofed) are ignored."""

    def __init__(self, query_id: int, reply: asyncio.Future[bytes]) -> None:
        self._query_id = query_id
        self._reply = reply

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if response_id(data) == self._query_id and not self._reply.done():
            self._reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self._reply.done():
            self._reply.set_exception(exc)


async def _exchange_udp(wire: bytes, host: str, port: int) -> bytes:
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[bytes] = loop.create_future()
    query_id = int.from_bytes(wire[:2], "big")
    # A connected socket: the kernel drops datagrams from any other address.
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _ReplyProtocol(query_id, reply), remote_addr=(host, port)
    )
    try:
        transport.sendto(wire)
        return await reply
    finally:
        transport.close()


async def _exchange_tcp(wire: bytes, host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise ConnectionResetError(f"connection closed after {len(exc.partial)} bytes") from None
    finally:
        writer.close()
