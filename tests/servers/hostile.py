"""A hostile DNS responder on loopback, and the malformed packets it sends.

Authoritative servers only ever send well-formed answers. To show that the resolver survives
everything else (random bytes, wrong IDs, foreign records, CNAME and compression-pointer
loops, TCP length prefixes that lie), a script maps each query to the bytes that go back, on
UDP and TCP alike, and every query that arrives is recorded, so a test can also prove that
nothing was sent at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Self, cast

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

HOST = "127.0.0.1"
MAX_TTL = 2**31 - 1
"""RFC 2181 §8: the largest TTL a server may send."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What goes back for one query.

    Over UDP each packet is one datagram. Over TCP the packets are written as they are, so a
    script frames them itself (``framed``) or lies about the length; ``then`` says what the
    connection does next: ``keep`` serving, ``close``, or ``stall`` silent until the client
    gives up.
    """

    packets: tuple[bytes, ...] = ()
    then: Literal["keep", "close", "stall"] = "keep"


Script = Callable[[dns.message.Message, bool], Reply]
"""``script(query, over_tcp) -> Reply``."""


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    rdtype: str
    over_tcp: bool


class HostileDns:
    """UDP and TCP on one loopback port, answering each query as ``script`` says."""

    def __init__(self, script: Script, *, host: str = HOST) -> None:
        self.script = script
        self.host = host
        self.port = 0
        self.queries: list[Query] = []
        """Every well-formed query received, in order."""
        self.packets_received = 0
        """Every datagram or TCP frame received, well-formed or not."""
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def nameserver(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> Self:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _HostileUdp(self), local_addr=(self.host, 0)
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError:
                udp.close()
                continue
            self._udp, self.port = udp, port
            return self
        raise OSError(f"no port free for both UDP and TCP on {self.host}")

    async def aclose(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def reply(self, data: bytes, over_tcp: bool) -> Reply:
        self.packets_received += 1
        try:
            query = dns.message.from_wire(data)
        except Exception:  # a hostile server does not care what it was sent
            return Reply()
        question = query.question[0]
        self.queries.append(
            Query(
                question.name.to_text().lower(),
                dns.rdatatype.to_text(question.rdtype),
                over_tcp,
            )
        )
        return self.script(query, over_tcp)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = self.reply(await reader.readexactly(size), True)
                for packet in reply.packets:
                    writer.write(packet)
                await writer.drain()
                if reply.then == "close":
                    break
                if reply.then == "stall":
                    await reader.read()  # until the client closes
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class _HostileUdp(asyncio.DatagramProtocol):
    def __init__(self, server: HostileDns) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self.server.reply(data, False)
        if self.transport is not None:
            for packet in reply.packets:
                self.transport.sendto(packet, addr)


# -- packets ------------------------------------------------------------------------------------


def response(
    query: dns.message.Message,
    records: Iterable[tuple[str, str, Sequence[str]]] = (),
    *,
    ttl: int = 5,
    additional: Iterable[tuple[str, str, Sequence[str]]] = (),
    authority: Iterable[tuple[str, str, Sequence[str]]] = (),
    soa: bool = True,
    truncated: bool = False,
) -> bytes:
    """A response to ``query``: ``records`` are ``(owner, type, [rdata text...])``.

    A response without answer records carries the zone's SOA (negative TTL = ``ttl``), as
    Kubernetes DNS sends it.
    """
    message = dns.message.make_response(query)
    message.answer.extend(_rrsets(records, ttl))
    message.additional.extend(_rrsets(additional, ttl))
    message.authority.extend(_rrsets(authority, ttl))
    if soa and not message.answer:
        zone = "cluster.local."
        message.authority.append(
            dns.rrset.from_text(
                zone, ttl, "IN", "SOA", f"ns.dns.{zone} hostmaster.{zone} 1 7200 1800 86400 {ttl}"
            )
        )
    if truncated:
        message.flags |= dns.flags.TC
    return message.to_wire(max_size=65535)


def _rrsets(records: Iterable[tuple[str, str, Sequence[str]]], ttl: int) -> list[dns.rrset.RRset]:
    return [
        dns.rrset.from_text_list(owner, ttl, "IN", rdtype, list(data))
        for owner, rdtype, data in records
    ]


def framed(wire: bytes) -> bytes:
    """``wire`` with its TCP length prefix."""
    return len(wire).to_bytes(2, "big") + wire


def with_id(wire: bytes, ident: int) -> bytes:
    return ident.to_bytes(2, "big") + wire[2:]


def flipped(wire: bytes, rng: random.Random, count: int) -> bytes:
    """``wire`` with ``count`` random bytes XOR-ed with random non-zero masks."""
    data = bytearray(wire)
    for _ in range(count):
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    return bytes(data)


def question_bytes(query: dns.message.Message) -> bytes:
    """Header (counts: one question) and question section of a response to ``query``."""
    question = query.question[0]
    header = struct.pack("!HHHHHH", query.id, 0x8400, 1, 0, 0, 0)
    name = question.name.to_wire()
    assert name is not None  # no file given: to_wire returns the bytes
    return header + name + struct.pack("!HH", question.rdtype, 1)


def with_answers(head: bytes, count: int, records: bytes) -> bytes:
    """``head`` (from ``question_bytes``) with ANCOUNT set to ``count`` and ``records`` after."""
    return head[:6] + count.to_bytes(2, "big") + head[8:] + records


def address_record(owner: bytes, rdtype: int, rdata: bytes, ttl: int = 5) -> bytes:
    """One resource record with an owner already in wire form (labels or pointers)."""
    return owner + struct.pack("!HHIH", rdtype, 1, ttl, len(rdata)) + rdata


def pointer(offset: int) -> bytes:
    return (0xC000 | offset).to_bytes(2, "big")


def pointer_loop(query: dns.message.Message, variant: int) -> bytes:
    """A response whose one answer record has an owner name that never ends.

    0: a pointer to itself; 1: a label, then a pointer back to that label; 2: two pointers
    pointing at each other; 3: a chain of 2,000 pointers, each to the one before, ending in
    the question name (too long to be honest: a name has at most 127 labels).
    """
    head = question_bytes(query)
    at = len(head)
    rdata = b"\x0a\x00\x00\x01"
    if variant == 0:
        return with_answers(head, 1, address_record(pointer(at), 1, rdata))
    if variant == 1:
        return with_answers(head, 1, address_record(b"\x01x" + pointer(at), 1, rdata))
    if variant == 2:
        # An unknown-type record whose data is two pointers to each other, then an A record
        # owned by the second of them.
        loop_at = at + 11
        loop = pointer(loop_at + 2) + pointer(loop_at)
        first = address_record(b"\x00", 65280, loop)
        return with_answers(head, 2, first + address_record(pointer(loop_at + 2), 1, rdata))
    chain_at = at + 11
    chain = pointer(12) + b"".join(pointer(chain_at + 2 * i) for i in range(1999))
    first = address_record(b"\x00", 65280, chain)
    owner = pointer(chain_at + 2 * 1999)
    return with_answers(head, 2, first + address_record(owner, 1, rdata))


def cname_loop(query: dns.message.Message, length: int, ttl: int = 5) -> bytes:
    """CNAMEs from the question name through ``length`` aliases and back, each with an address."""
    qname = query.question[0].name.to_text()
    aliases = [f"loop{k}.{qname}" for k in range(length)]
    chain = [qname, *aliases, qname]
    records = [(chain[k], "CNAME", [chain[k + 1]]) for k in range(len(chain) - 1)]
    records += [(alias, "A", ["192.0.2.66"]) for alias in aliases]
    return response(query, records, ttl=ttl)
