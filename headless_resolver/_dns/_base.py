"""One DNS protocol for the resolver, whatever library talks to the network."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args, runtime_checkable

from headless_resolver._errors import InvalidArgument, InvalidServiceName

RecordType = Literal["A", "AAAA", "SRV"]
RECORD_TYPES: tuple[RecordType, ...] = get_args(RecordType)

EDNS_PAYLOAD = 1232
"""The DNS Flag Day 2020 size: fits any path MTU, holds ~73 A records."""

NOERROR = "NOERROR"
NXDOMAIN = "NXDOMAIN"


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str
    """Absolute, lower-case target name with the trailing dot."""


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """What one query for one (name, type) returned, reduced to what the cache needs.

    A negative answer (NXDOMAIN, or NOERROR with no records: NODATA) is a normal answer, not an
    error: it carries ``negative_ttl`` from the SOA in the authority section (RFC 2308).
    Failures (timeout, SERVFAIL, REFUSED, malformed) raise ``ResolutionError`` instead.
    """

    name: str
    """The absolute, lower-case name asked for, with the trailing dot."""
    rdtype: RecordType
    rcode: Literal["NOERROR", "NXDOMAIN"]
    addresses: tuple[str, ...] = ()
    """A or AAAA answers for ``name`` (only records owned by the question name)."""
    srv: tuple[SrvRecord, ...] = ()
    glue: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Additional-section addresses of SRV targets, by absolute lower-case target name."""
    ttl: float | None = None
    """Smallest TTL of the answer records; None for a negative answer."""
    negative_ttl: float | None = None
    """min(SOA TTL, SOA MINIMUM) for a negative answer, None when no SOA came with it."""
    truncated: bool = False
    """True when even the TCP answer was truncated: the records are what arrived."""

    @property
    def negative(self) -> bool:
        return self.rcode == NXDOMAIN or not (self.addresses or self.srv)


def rfc2181_ttl(value: int) -> int:
    """A TTL as received: 32 bits on the wire, but one with the top bit set means 0 (RFC 2181
    section 8), so a hostile 2^31 or more can neither pin a record nor look like a long TTL."""
    return 0 if value & 0x80000000 else value


def check_nameservers(nameservers: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Validate ``(host, port)`` pairs up front, so a typo fails at construction."""
    checked = tuple(nameservers)
    if not checked:
        raise InvalidArgument("at least one nameserver is required")
    for entry in checked:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise InvalidArgument(f"nameserver {entry!r} is not a (host, port) pair")
        host, port = entry
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except (OSError, TypeError):
            raise InvalidArgument(f"nameserver host {host!r} is not an IP address") from None
        if not isinstance(port, int) or not 0 < port < 65536:
            raise InvalidArgument(f"nameserver port {port!r} is not in 1..65535")
    return checked


def check_timeout(timeout: float) -> float:
    if not timeout > 0:
        raise InvalidArgument(f"timeout must be positive, not {timeout!r}")
    return timeout


def check_query(name: str, rdtype: str) -> str:
    """Both backends take absolute names and A/AAAA/SRV only; anything else is a caller bug."""
    if rdtype not in RECORD_TYPES:
        raise InvalidArgument(f"record type {rdtype!r} is not one of {sorted(RECORD_TYPES)}")
    if not isinstance(name, str) or not name.endswith(".") or name == ".":
        raise InvalidServiceName(f"{name!r} is not an absolute DNS name (with trailing dot)")
    if not name.isascii():
        raise InvalidServiceName(f"{name!r} cannot be sent as a DNS name: not ASCII")
    labels = name[:-1].split(".")
    if len(name) > 254 or not all(0 < len(label) < 64 for label in labels):
        raise InvalidServiceName(f"{name!r} has an empty or over-long label, or is too long")
    return name.lower()


def server_text(host: str, port: int) -> str:
    """``host:port`` as written in messages and c-ares server lists: ``[::1]:53`` for IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@runtime_checkable
class DnsBackend(Protocol):
    """Sends one query for an absolute name and type; never searches, never caches."""

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer: ...

    async def aclose(self) -> None: ...
