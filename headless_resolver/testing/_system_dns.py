"""Make the process's system name resolution reach a test cluster DNS, as glibc would in a pod.

Plain httpx (anyio) and aiohttp's default resolver both end in ``socket.getaddrinfo``. Inside a
pod that is glibc asking the cluster DNS for A and AAAA, keeping the server's record order and
caching nothing (no nscd). Outside a cluster no such DNS is configured, so for names under the
cluster domain ``system_resolution_via`` answers ``getaddrinfo`` from one real DNS query per
family to the given nameserver; every other name goes to the real ``getaddrinfo``. It is how the
demo and the benchmarks compare plain clients with this library on a ``LocalCluster``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from headless_resolver._names import parse_nameserver

HOW = (
    "system resolution emulated: socket.getaddrinfo answers names under the cluster domain "
    "from a real UDP query (TCP if truncated) per family to the cluster DNS, in the server's "
    "record order, with no cache (glibc without nscd)"
)

_FAMILIES = ((socket.AF_INET, dns.rdatatype.A), (socket.AF_INET6, dns.rdatatype.AAAA))


def _lookup(host: str, server: tuple[str, int], timeout: float) -> list[tuple[int, str]]:
    qname = host if host.endswith(".") else host + "."
    found: list[tuple[int, str]] = []
    for family, rdtype in _FAMILIES:
        query = dns.message.make_query(qname, rdtype)
        try:
            response = dns.query.udp(query, server[0], port=server[1], timeout=timeout)
            if response.flags & dns.flags.TC:
                response = dns.query.tcp(query, server[0], port=server[1], timeout=timeout)
        except (dns.exception.DNSException, OSError) as exc:
            # glibc reports an unreachable or silent nameserver as a temporary failure.
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution") from exc
        if response.rcode() == dns.rcode.NXDOMAIN:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        for rrset in response.answer:
            if rrset.rdtype == rdtype:
                found.extend((family, rdata.address) for rdata in rrset)
    if not found:
        raise socket.gaierror(socket.EAI_NODATA, "No address associated with hostname")
    return found


@contextlib.contextmanager
def system_resolution_via(
    nameserver: str, domain: str = "cluster.local", timeout: float = 2.0
) -> Iterator[None]:
    """Route ``socket.getaddrinfo`` for ``*.<domain>`` names to ``nameserver`` ("host:port")
    while the context is open. Process-wide: meant for tests, demos and benchmarks."""
    server = parse_nameserver(nameserver)
    suffix = "." + domain.strip(".").lower()
    real = socket.getaddrinfo

    def getaddrinfo(
        name: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        if isinstance(name, bytes):  # anyio passes the IDNA-encoded name
            name = name.decode("ascii")
        if not isinstance(name, str) or not name.lower().rstrip(".").endswith(suffix):
            return real(name, port, family, type, proto, flags)
        result = []
        for fam, address in _lookup(name, server, timeout):
            if family not in (0, socket.AF_UNSPEC, fam):
                continue
            result.extend(real(address, port, fam, type, proto, flags | socket.AI_NUMERICHOST))
        if not result:
            raise socket.gaierror(socket.EAI_FAMILY, "no address of the requested family")
        return result

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]  # same call, same results
    try:
        yield
    finally:
        socket.getaddrinfo = real
