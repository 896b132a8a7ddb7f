"""A lean reader of DNS responses: only what a DnsAnswer needs, in one pass.

dnspython's ``Message.from_wire`` builds a Name and an Rdata object per record and merges
rdatasets; for a 2,000-pod service that is ~90 ms of CPU per answer. Kubernetes answers are
A/AAAA/SRV plus an SOA, so this reader decodes only those, caches decompressed names by
offset (every owner is the same pointer), and checks the header and question itself.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from headless_resolver._dns._base import (
    NOERROR,
    NXDOMAIN,
    DnsAnswer,
    RecordType,
    SrvRecord,
    rfc2181_ttl,
)

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_QUESTION_FIXED = struct.Struct("!HH")
_SRV_FIXED = struct.Struct("!HHH")
_U32 = struct.Struct("!I")
_MAX_POINTERS = 127
"""A 255-octet name has at most 127 labels: no honest name needs more pointers than that."""

TYPE_CODES: dict[str, int] = {"A": 1, "AAAA": 28, "SRV": 33}
_SOA = 6
_OPT = 41
_CLASS_IN = 1
_QR = 0x8000
_OPCODE_MASK = 0x7800
TC = 0x0200

RCODE_NAMES = {
    0: NOERROR,
    1: "FORMERR",
    2: "SERVFAIL",
    3: NXDOMAIN,
    4: "NOTIMP",
    5: "REFUSED",
    16: "BADVERS",
}


class MalformedResponse(Exception):
    """The bytes are not a well-formed answer to the question we asked."""


@dataclass(frozen=True, slots=True)
class Response:
    """A parsed response: the rcode name, the TC bit, and the answer if the rcode allows one."""

    rcode: str
    truncated: bool
    answer: DnsAnswer | None


def response_id(wire: bytes) -> int | None:
    """The message ID, or None when the datagram is too short to be DNS."""
    return int.from_bytes(wire[:2], "big") if len(wire) >= 12 else None


def parse_response(wire: bytes, query_id: int, name: str, rdtype: RecordType) -> Response:
    """Read ``wire`` as the answer to ``(query_id, name, rdtype)``.

    Raises MalformedResponse for anything that is not a well-formed response to that question:
    wrong ID, not a response, a different question, a record running past the end.
    """
    try:
        return _parse(wire, query_id, name, rdtype)
    except (struct.error, IndexError, ValueError, OSError) as exc:
        raise MalformedResponse(f"unreadable DNS response: {exc}") from None


def _parse(wire: bytes, query_id: int, name: str, rdtype: RecordType) -> Response:
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire, 0)
    if ident != query_id:
        raise MalformedResponse(f"response ID {ident} does not match query ID {query_id}")
    if not flags & _QR or flags & _OPCODE_MASK:
        raise MalformedResponse("not a response to a standard query")
    names: dict[int, str] = {}
    offset = 12
    rcode_value = flags & 0x000F
    if qdcount != 1:
        if qdcount == 0 and rcode_value != 0:
            # Servers may drop the question from error replies (dnspython accepts this too).
            return Response(_rcode_name(rcode_value), bool(flags & TC), None)
        raise MalformedResponse(f"response has {qdcount} questions, expected 1")
    qname, offset = _read_name(wire, offset, names)
    qtype, qclass = _QUESTION_FIXED.unpack_from(wire, offset)
    offset += 4
    wanted = TYPE_CODES[rdtype]
    if qname != name or qtype != wanted or qclass != _CLASS_IN:
        raise MalformedResponse(f"response is for {qname} type {qtype}, not {name} {rdtype}")

    addresses: list[str] = []
    srv: list[SrvRecord] = []
    glue: dict[str, list[str]] = {}
    glue_ttls: dict[str, int] = {}
    min_ttl: int | None = None
    negative_ttl: int | None = None
    end = len(wire)

    for section, count in ((1, ancount), (2, nscount), (3, arcount)):
        for _ in range(count):
            owner, offset = _read_name(wire, offset, names)
            rtype, rclass, raw_ttl, rdlength = _RR_FIXED.unpack_from(wire, offset)
            ttl = rfc2181_ttl(raw_ttl)
            offset += 10
            rdata_end = offset + rdlength
            if rdata_end > end:
                raise MalformedResponse("record data runs past the end of the message")
            if rtype == _OPT:
                rcode_value |= (raw_ttl >> 24) << 4
            elif rclass != _CLASS_IN:
                pass
            elif section == 1:
                if owner == name and rtype == wanted:
                    if wanted == 33:
                        priority, weight, port = _SRV_FIXED.unpack_from(wire, offset)
                        target, _ = _read_name(wire, offset + 6, names)
                        srv.append(SrvRecord(priority, weight, port, target))
                    else:
                        addresses.append(_address(wire, offset, rdlength, rtype))
                    min_ttl = ttl if min_ttl is None or ttl < min_ttl else min_ttl
            elif section == 2:
                if rtype == _SOA and negative_ttl is None:
                    minimum = _U32.unpack_from(wire, rdata_end - 4)[0]
                    negative_ttl = min(ttl, rfc2181_ttl(minimum))
            elif wanted == 33 and rtype in (1, 28):
                glue.setdefault(owner, []).append(_address(wire, offset, rdlength, rtype))
                glue_ttls[owner] = min(ttl, glue_ttls.get(owner, ttl))
            offset = rdata_end

    rcode = _rcode_name(rcode_value)
    if rcode not in (NOERROR, NXDOMAIN):
        return Response(rcode, bool(flags & TC), None)
    used_glue: dict[str, tuple[str, ...]] = {}
    if srv:
        for record in srv:
            target = record.target
            if target in glue and target not in used_glue:
                used_glue[target] = tuple(glue[target])
                ttl = glue_ttls[target]
                min_ttl = ttl if min_ttl is None or ttl < min_ttl else min_ttl
    positive = rcode == NOERROR and bool(addresses or srv)
    answer = DnsAnswer(
        name=name,
        rdtype=rdtype,
        rcode="NXDOMAIN" if rcode == NXDOMAIN else "NOERROR",
        addresses=tuple(addresses),
        srv=tuple(srv),
        glue=used_glue,
        ttl=float(min_ttl) if positive and min_ttl is not None else None,
        negative_ttl=None if positive or negative_ttl is None else float(negative_ttl),
        truncated=bool(flags & TC),
    )
    return Response(rcode, bool(flags & TC), answer)


def _rcode_name(value: int) -> str:
    return RCODE_NAMES.get(value, f"RCODE{value}")


def _address(wire: bytes, offset: int, length: int, rtype: int) -> str:
    if rtype == 1:
        if length != 4:
            raise MalformedResponse(f"A record with {length} bytes of data")
        return socket.inet_ntop(socket.AF_INET, wire[offset : offset + 4])
    if length != 16:
        raise MalformedResponse(f"AAAA record with {length} bytes of data")
    return socket.inet_ntop(socket.AF_INET6, wire[offset : offset + 16])


def _read_name(wire: bytes, offset: int, names: dict[int, str], hops: int = 0) -> tuple[str, int]:
    """Decode the (possibly compressed) name at ``offset``: absolute, with its end, and its
    ASCII letters lower-cased (RFC 4343: DNS folds no other octet, so neither do we); a dot or
    backslash inside a label is escaped with a backslash, so that two names never read alike.

    Names reached by a compression pointer are cached by offset, so 2,000 owners that all
    point at the question cost one dictionary lookup each. Every pointer must point before the
    name it ends, and a name may follow at most ``_MAX_POINTERS``, so hostile loops and chains
    end in MalformedResponse instead of unbounded recursion.
    """
    first = wire[offset]
    if first >= 0xC0:
        target = ((first & 0x3F) << 8) | wire[offset + 1]
        cached = names.get(target)
        if cached is None:
            if target >= offset:
                raise MalformedResponse("compression pointer does not point backwards")
            if hops >= _MAX_POINTERS:
                raise MalformedResponse("too many compression pointers in one name")
            cached = _read_name(wire, target, names, hops + 1)[0]
            names[target] = cached
        return cached, offset + 2
    labels: list[str] = []
    start = offset
    length = 0
    while True:
        size = wire[offset]
        if size == 0:
            offset += 1
            break
        if size >= 0xC0:
            if (((size & 0x3F) << 8) | wire[offset + 1]) >= start:
                raise MalformedResponse("compression pointer does not point before its name")
            rest, offset = _read_name(wire, offset, names, hops)
            if rest != ".":
                labels.append(rest)
                length += _octets(rest)
            break
        if size > 63:
            raise MalformedResponse(f"label length {size} is not valid")
        label = wire[offset + 1 : offset + 1 + size]
        if len(label) != size:
            raise MalformedResponse("label runs past the end of the message")
        text = label.lower().decode("latin-1")
        if "." in text or "\\" in text:
            # Escaped as in zone files: a label holding a dot is not two labels.
            text = text.replace("\\", "\\\\").replace(".", "\\.")
        labels.append(text + ".")
        length += size + 1
        offset += size + 1
    if length > 255:
        raise MalformedResponse("name longer than 255 octets")
    decoded = "".join(labels) or "."
    names[start] = decoded
    return decoded, offset


def _octets(text: str) -> int:
    """The wire length (less the root octet) of a name as ``_read_name`` writes it: each escape
    is two characters for one octet, and ``\\\\`` pairs are exactly the escaped backslashes."""
    return len(text) - text.count("\\") + text.count("\\\\")
