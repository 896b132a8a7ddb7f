"""One DNS protocol for the resolver, whatever library talks to the network."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

RecordType = Literal["A", "AAAA", "SRV"]

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


class DnsBackend(Protocol):
    """Sends one query for an absolute name and type; never searches, never caches."""

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer: ...

    async def aclose(self) -> None: ...
