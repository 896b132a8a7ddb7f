"""DNS over UDP, then TCP when truncated: dnspython builds the query, a lean reader parses.

One ``query`` is one attempt against one nameserver (rotating between calls), bounded by
``timeout`` across both transports. A truncated UDP answer is never used: it is asked again
over TCP, and only a TCP answer that is itself truncated is kept (marked ``truncated``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import dns.exception
import dns.message
import dns.name

from headless_resolver._dns._base import (
    EDNS_PAYLOAD,
    DnsAnswer,
    RecordType,
    check_nameservers,
    check_query,
    check_timeout,
    server_text,
)
from headless_resolver._dns._wire import (
    MalformedResponse,
    Response,
    parse_response,
    response_id,
)
from headless_resolver._errors import InvalidServiceName, ResolutionError


class DnspythonBackend:
    """Queries the nameservers in turn, one attempt per call, no cache, no search list."""

    def __init__(self, nameservers: Sequence[tuple[str, int]], *, timeout: float) -> None:
        self._nameservers = check_nameservers(nameservers)
        self._timeout = check_timeout(timeout)
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
        where = server_text(host, port)
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
                reason="TIMEOUT",
            ) from None
        except OSError as exc:
            raise ResolutionError(
                f"{name} {rdtype}: {where} unreachable: {exc}", name=name, reason="NETWORK"
            ) from None
        if response.answer is None:
            raise ResolutionError(
                f"{name} {rdtype}: {where} answered {response.rcode}",
                name=name,
                reason="RCODE",
                rcode=response.rcode,
            )
        return response.answer

    async def aclose(self) -> None:
        """Nothing to free: every query opens and closes its own sockets."""


def _read(reply: bytes, query_id: int, name: str, rdtype: RecordType, where: str) -> Response:
    try:
        return parse_response(reply, query_id, name, rdtype)
    except MalformedResponse as exc:
        raise ResolutionError(
            f"{name} {rdtype}: {where}: {exc}", name=name, reason="MALFORMED"
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
