"""ClusterDNS: an in-process cluster DNS server answering as CoreDNS's ``kubernetes`` plugin.

Tests point a resolver at it instead of a cluster. Services change at runtime (from the event
loop or another thread), every query is counted per (name, type), and the failures a resolver
must survive are plain switches: ``servfail``, ``drop`` (silence), ``delay`` and ``stop()``.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import random
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.renderer
import dns.reversename
import dns.rrset

from headless_resolver._errors import InvalidArgument
from headless_resolver.testing._model import (
    DNS_SCHEMA_VERSION,
    EndpointLike,
    PortLike,
    PortSpec,
    ServiceSpec,
    endpoint,
    srv_weight,
)

__all__ = ["ClusterDNS"]

_log = logging.getLogger(__name__)

# dnspython's rdata constructors carry no annotations; these names give them one.
_RdataOf = Callable[..., dns.rdata.Rdata]
A: _RdataOf = dns.rdtypes.IN.A.A
AAAA: _RdataOf = dns.rdtypes.IN.AAAA.AAAA
NS: _RdataOf = dns.rdtypes.ANY.NS.NS
PTR: _RdataOf = dns.rdtypes.ANY.PTR.PTR
SOA: _RdataOf = dns.rdtypes.ANY.SOA.SOA
SRV: _RdataOf = dns.rdtypes.IN.SRV.SRV
TXT: _RdataOf = dns.rdtypes.ANY.TXT.TXT

_IN = dns.rdataclass.IN
_T = dns.rdatatype.RdataType
_HEADER = struct.Struct("!HHHHHH")
_HEADER_SIZE = _HEADER.size
_OPT_SIZE = 11
"""An OPT record without options: root name, type, class, TTL, rdlength."""
_MIN_UDP_SIZE = 512
_MAX_TCP_SIZE = 65535
_SOA_TTL_CAP = 300
_DNS_VERSION_TTL = 28800
_DEFAULT_NS = ("ns", "dns")

_Entry = tuple[str, int | None, tuple[str, ...]]
"""What CoreDNS calls a msg.Service: (address, port or None, target labels under the zone)."""
_Sections = tuple[list[dns.rrset.RRset], list[dns.rrset.RRset], list[dns.rrset.RRset]]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The cluster as one query sees it; replaced whole on every change, never mutated."""

    services: Mapping[tuple[str, str], ServiceSpec]
    namespaces: frozenset[str]
    ptr: Mapping[str, tuple[dns.name.Name, ...]]
    serial: int

    @classmethod
    def of(
        cls,
        services: Mapping[tuple[str, str], ServiceSpec],
        domain: str,
        pod_names: bool,
        serial: int,
    ) -> _Snapshot:
        return cls(
            services=services,
            namespaces=frozenset(namespace for namespace, _ in services),
            ptr=_reverse_index(services.values(), domain, pod_names),
            serial=serial,
        )


def _reverse_index(
    services: Iterable[ServiceSpec], domain: str, pod_names: bool
) -> dict[str, tuple[dns.name.Name, ...]]:
    """PTR targets by address: a cluster IP names its service; otherwise every endpoint with
    that address names itself (CoreDNS ``serviceRecordForIP``)."""
    by_cluster_ip: dict[str, tuple[dns.name.Name, ...]] = {}
    by_endpoint: dict[str, list[dns.name.Name]] = {}
    for svc in services:
        owner = f"{svc.name}.{svc.namespace}.svc.{domain}"
        for ip in svc.cluster_ips:
            by_cluster_ip.setdefault(ip, (dns.name.from_text(owner),))
        for ep in svc.published:
            target = dns.name.from_text(f"{ep.label(endpoint_pod_names=pod_names)}.{owner}")
            by_endpoint.setdefault(ep.ip, []).append(target)
    index = {ip: tuple(targets) for ip, targets in by_endpoint.items()}
    index.update(by_cluster_ip)
    return index


@dataclass(frozen=True, slots=True)
class _Zone:
    origin: dns.name.Name
    reverse: bool


class _Query:
    """A decoded query with exactly one question: what a reply is built from."""

    __slots__ = ("edns", "ednsflags", "flags", "id", "payload", "qname", "rdclass", "rdtype")

    def __init__(self, message: dns.message.Message) -> None:
        question = message.question[0]
        self.id = message.id
        self.flags = message.flags
        self.qname: dns.name.Name = question.name
        self.rdtype: _T = question.rdtype
        self.rdclass = question.rdclass
        self.edns = message.edns
        self.ednsflags = message.ednsflags
        self.payload = message.payload


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: ClusterDNS) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.transport is not None:
            self._server._on_datagram(self.transport, data, addr)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors from clients that went away: keep serving the others."""


class ClusterDNS:
    """A Kubernetes cluster DNS server on loopback (UDP and TCP on one port).

    Answers per the Kubernetes DNS specification 1.1.0 as CoreDNS's ``kubernetes`` plugin
    does, including its NXDOMAIN/NODATA choices, SRV weights, PTR records, the query's case in
    owner names, ``loadbalance`` shuffling (``shuffle``) and truncation to the client's buffer.
    A namespace exists while it holds a service. Pod records (``pods disabled``) are not served.

    Parameters (keyword-only):
        domain: the cluster domain it is authoritative for (``cluster.local``).
        ttl: of every record, and the SOA minimum (negative TTL), in seconds (5).
        host, port: where it listens; a loopback address, port 0 picks a free one.
        shuffle: reorder records in each answer, as CoreDNS's ``loadbalance`` does (True).
        reverse_zones: zones it answers PTR queries for.
        endpoint_pod_names: name pods without a hostname by pod name, as CoreDNS's option of
            that name does (False: by dashed IP).
    """

    tcp_read_timeout: float = 2.0
    """Seconds a TCP client may take to send the rest of a message it started."""
    tcp_idle_timeout: float = 8.0
    """Seconds an idle TCP connection is kept open."""

    def __init__(
        self,
        *,
        domain: str = "cluster.local",
        ttl: int = 5,
        host: str = "127.0.0.1",
        port: int = 0,
        shuffle: bool = True,
        reverse_zones: Sequence[str] = ("in-addr.arpa", "ip6.arpa"),
        endpoint_pod_names: bool = False,
    ) -> None:
        try:
            origin = dns.name.from_text(domain)
        except dns.exception.DNSException as error:
            raise InvalidArgument(f"domain: {domain!r} is not a domain name ({error})") from None
        if len(origin) < 2:
            raise InvalidArgument(f"domain: {domain!r} is the root, not a cluster domain")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 3600:
            raise InvalidArgument(f"ttl: {ttl!r} is not in 0..3600 seconds")
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InvalidArgument(f"host: {host!r} is not a loopback address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise InvalidArgument(f"port: {port!r} is not in 0..65535")
        self._domain = origin.to_text().lower()
        self._ttl = ttl
        self._host = ipaddress.ip_address(host).compressed
        self._port = port
        self._shuffle = shuffle
        self._pod_names = endpoint_pod_names
        self._zones = (
            _Zone(origin.canonicalize(), reverse=False),
            *(_Zone(_reverse_zone(zone), reverse=True) for zone in reverse_zones),
        )
        self._lock = threading.Lock()
        self._snapshot = _Snapshot.of({}, self._domain, endpoint_pod_names, int(time.time()))
        self._counts: Counter[tuple[dns.name.Name, int]] = Counter()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._delayed: set[asyncio.TimerHandle] = set()
        self.servfail = False
        """Answer every query SERVFAIL."""
        self.drop = False
        """Answer nothing at all: clients time out."""
        self.delay = 0.0
        """Seconds to wait before each answer."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on UDP and TCP; after a ``stop()``, on the same port again."""
        if self._udp is not None:
            return
        loop = asyncio.get_running_loop()
        for _ in range(20):
            udp, _protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self._host, self._port)
            )
            port = int(udp.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self._host, port)
            except OSError:
                udp.close()
                if self._port:
                    raise
                continue
            self._udp, self._port = udp, port
            return
        raise OSError(f"no port free for both UDP and TCP on {self._host}")

    async def stop(self) -> None:
        """Close every socket (an outage); pending and delayed answers are never sent."""
        for handle in self._delayed:
            handle.cancel()
        self._delayed.clear()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The listening port (0 until the first ``start()`` picks one)."""
        return self._port

    @property
    def nameserver(self) -> str:
        """``"host:port"`` (``"[::1]:port"`` for IPv6), as resolvers take it."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    @property
    def domain(self) -> str:
        """The cluster domain, absolute and lower-case (``"cluster.local."``)."""
        return self._domain

    @property
    def ttl(self) -> int:
        return self._ttl

    # -- the cluster model ---------------------------------------------------------------------

    @property
    def services(self) -> tuple[ServiceSpec, ...]:
        return tuple(self._snapshot.services.values())

    def add_service(
        self,
        name: str,
        namespace: str = "default",
        *,
        endpoints: Iterable[EndpointLike] = (),
        ports: Iterable[PortLike] = (),
        cluster_ip: str | Sequence[str] | None = None,
        publish_not_ready: bool = False,
    ) -> ServiceSpec:
        """Add (or replace) a service; headless unless ``cluster_ip`` (or one per family)."""
        cluster_ips = (cluster_ip,) if isinstance(cluster_ip, str) else tuple(cluster_ip or ())
        spec = ServiceSpec(
            name,
            namespace,
            endpoints=endpoints,
            ports=ports,
            publish_not_ready=publish_not_ready,
            cluster_ips=cluster_ips,
        )
        with self._lock:
            services = dict(self._snapshot.services)
            services[(spec.namespace, spec.name)] = spec
            self._publish(services)
        return spec

    def set_services(self, services: Iterable[ServiceSpec]) -> None:
        """Replace the whole cluster with ``services``."""
        specs = list(services)
        for spec in specs:
            if not isinstance(spec, ServiceSpec):
                raise InvalidArgument(f"services: expected ServiceSpec, got {spec!r}")
        with self._lock:
            self._publish({(spec.namespace, spec.name): spec for spec in specs})

    def set_endpoints(
        self, name: str, namespace: str = "default", *, endpoints: Iterable[EndpointLike]
    ) -> ServiceSpec:
        """Replace a service's endpoints, as the EndpointSlice controller does on a rollout."""
        with self._lock:
            services = dict(self._snapshot.services)
            spec = replace(
                self._existing(name, namespace), endpoints=tuple(map(endpoint, endpoints))
            )
            services[(namespace, name)] = spec
            self._publish(services)
        return spec

    def remove_service(self, name: str, namespace: str = "default") -> None:
        with self._lock:
            self._existing(name, namespace)
            services = dict(self._snapshot.services)
            del services[(namespace, name)]
            self._publish(services)

    def _existing(self, name: str, namespace: str) -> ServiceSpec:
        try:
            return self._snapshot.services[(namespace, name)]
        except KeyError:
            raise KeyError(f"service {namespace}/{name} does not exist") from None

    def _publish(self, services: Mapping[tuple[str, str], ServiceSpec]) -> None:
        """Swap in a new snapshot; the next query sees it. Caller holds the lock."""
        serial = max(self._snapshot.serial + 1, int(time.time()))
        self._snapshot = _Snapshot.of(services, self._domain, self._pod_names, serial)

    # -- counters ------------------------------------------------------------------------------

    def query_count(self, name: str, rdtype: str | int) -> int:
        """Queries received for ``name`` (any case, trailing dot optional) and ``rdtype``."""
        return self._counts[(_counter_name(name), dns.rdatatype.RdataType.make(rdtype))]

    @property
    def queries(self) -> int:
        """All well-formed queries received."""
        return sum(self._counts.values())

    def reset_counts(self) -> None:
        self._counts.clear()

    # -- wire ----------------------------------------------------------------------------------

    def _on_datagram(
        self, transport: asyncio.DatagramTransport, data: bytes, addr: tuple[str | int, ...]
    ) -> None:
        received = self._receive(data)
        if received is None:
            return
        if isinstance(received, bytes):
            transport.sendto(received, addr)
            return
        if self.drop:
            return
        limit = max(_MIN_UDP_SIZE, received.payload) if received.edns >= 0 else _MIN_UDP_SIZE
        if self.delay > 0:
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle

            def send_later() -> None:
                self._delayed.discard(handle)
                transport.sendto(self._reply(received, limit), addr)

            handle = loop.call_later(self.delay, send_later)
            self._delayed.add(handle)
            return
        transport.sendto(self._reply(received, limit), addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Length-prefixed messages, several per connection; a stalled or short message
        closes the connection instead of holding it open."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    prefix = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
                    (length,) = struct.unpack("!H", prefix)
                    data = await asyncio.wait_for(reader.readexactly(length), self.tcp_read_timeout)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                received = self._receive(data)
                if received is None:
                    return
                if isinstance(received, bytes):
                    reply = received
                else:
                    if self.drop:
                        continue
                    if self.delay > 0:
                        await asyncio.sleep(self.delay)
                    reply = self._reply(received, _MAX_TCP_SIZE)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._connections.discard(task)
            writer.close()

    def _receive(self, data: bytes) -> _Query | bytes | None:
        """Decode and count a query: the query to answer, an error reply to send at once, or
        None when there is nothing to answer (no readable header, or not a query at all)."""
        if len(data) < _HEADER_SIZE:
            return None
        query_id, flags = struct.unpack_from("!HH", data)
        if flags & dns.flags.QR:
            return None
        opcode = dns.opcode.from_flags(flags)
        if opcode != dns.opcode.QUERY:
            return _header_only(query_id, flags, dns.rcode.NOTIMP)
        try:
            message = dns.message.from_wire(data, ignore_trailing=True)
        except Exception:
            return _header_only(query_id, flags, dns.rcode.FORMERR)
        if len(message.question) != 1:
            return _header_only(query_id, flags, dns.rcode.FORMERR)
        query = _Query(message)
        self._counts[(query.qname.canonicalize(), query.rdtype)] += 1
        return query

    def _reply(self, query: _Query, limit: int) -> bytes:
        try:
            return self._answer(query, limit)
        except Exception:
            _log.exception("ClusterDNS failed to answer %s %s", query.qname, query.rdtype)
            return _render(query, dns.rcode.SERVFAIL, ([], [], []), limit, authoritative=False)

    def _answer(self, query: _Query, limit: int) -> bytes:
        if query.edns > 0:
            return _render(query, dns.rcode.BADVERS, ([], [], []), limit, authoritative=False)
        if self.servfail:
            return _render(query, dns.rcode.SERVFAIL, ([], [], []), limit, authoritative=False)
        zone = self._zone_of(query.qname) if query.rdclass == _IN else None
        if zone is None or query.rdtype in (_T.AXFR, _T.IXFR):
            return _render(query, dns.rcode.REFUSED, ([], [], []), limit, authoritative=False)
        rcode, sections = self._resolve(query.qname, query.rdtype, zone)
        if self._shuffle:
            sections = (_loadbalance(sections[0]), sections[1], _loadbalance(sections[2]))
        return _render(query, rcode, sections, limit, authoritative=True)

    def _zone_of(self, qname: dns.name.Name) -> _Zone | None:
        best: _Zone | None = None
        for zone in self._zones:
            if qname.is_subdomain(zone.origin) and (
                best is None or len(zone.origin) > len(best.origin)
            ):
                best = zone
        return best

    # -- answers, as CoreDNS's kubernetes plugin builds them -----------------------------------

    def _resolve(
        self, qname: dns.name.Name, rdtype: _T, zone: _Zone
    ) -> tuple[dns.rcode.Rcode, _Sections]:
        snapshot = self._snapshot
        depth = len(zone.origin)
        labels = tuple(label.lower().decode("latin-1") for label in qname.labels[:-depth])
        apex = dns.name.Name(qname.labels[-depth:])
        answer: list[dns.rrset.RRset] = []
        additional: list[dns.rrset.RRset] = []
        found = True
        if rdtype == _T.SOA:
            if not labels:
                answer.append(self._soa(apex, snapshot))
        elif rdtype == _T.NS and not labels:
            server = dns.name.Name((b"ns", b"dns", *apex.labels))
            answer.append(_rr(qname, self._ttl, NS(_IN, _T.NS, server)))
            additional.append(_rr(server, self._ttl, _address(self._host)))
        elif rdtype == _T.TXT:
            if labels == ("dns-version",):
                txt = TXT(_IN, _T.TXT, [DNS_SCHEMA_VERSION.encode()])
                answer.append(_rr(qname, _DNS_VERSION_TTL, txt))
            else:
                found = bool(self._lookup(snapshot, labels, zone.reverse))
        elif rdtype == _T.PTR:
            ip = _reverse_address(qname)
            if ip is None:
                found = self._lookup(snapshot, labels, zone.reverse) is not None
            else:
                targets = snapshot.ptr.get(ip, ())
                answer.extend(_rr(qname, self._ttl, PTR(_IN, _T.PTR, t)) for t in targets)
                found = bool(targets)
        else:
            entries = self._services(snapshot, labels, zone.reverse, rdtype)
            found = entries is not None
            if entries and rdtype in (_T.A, _T.AAAA):
                answer = self._addresses(qname, rdtype, entries)
            elif entries and rdtype == _T.SRV:
                answer, additional = self._srv(qname, apex, entries)
        authority: list[dns.rrset.RRset] = []
        if not answer:
            authority.append(self._soa(apex, snapshot))
        rcode = dns.rcode.NOERROR if found else dns.rcode.NXDOMAIN
        return rcode, (answer, authority, additional)

    def _services(
        self, snapshot: _Snapshot, labels: tuple[str, ...], reverse: bool, rdtype: int
    ) -> list[_Entry] | None:
        """CoreDNS ``Services``: the DNS server's own name first, then the cluster model."""
        if labels == _DEFAULT_NS:
            family = _T.AAAA if ":" in self._host else _T.A
            return [(self._host, None, labels)] if rdtype == family else []
        return self._lookup(snapshot, labels, reverse)

    def _lookup(
        self, snapshot: _Snapshot, labels: tuple[str, ...], reverse: bool
    ) -> list[_Entry] | None:
        """CoreDNS ``Records``: the (address, port, name) entries behind a name, or None when
        the name does not exist (NXDOMAIN); an empty list is an existing name (NODATA)."""
        if not labels:
            return []
        if labels[-1] not in ("svc", "pod"):
            return None
        if len(labels) == 1:
            return []
        if reverse or labels[-2] not in snapshot.namespaces or labels[-1] == "pod":
            return None
        if len(labels) == 2:
            return []
        if len(labels) > 5:
            return None
        svc = snapshot.services.get((labels[-2], labels[-3]))
        if svc is None:
            return None
        endpoint = labels[0] if len(labels) == 4 else None
        port_name = protocol = None
        if len(labels) == 5:
            port_name, protocol = labels[0].removeprefix("_"), labels[1].removeprefix("_")

        def wanted(p: PortSpec | None) -> bool:
            return port_name is None or (
                p is not None and p.name == port_name and p.protocol == protocol
            )

        service_labels = (svc.name, svc.namespace, "svc")
        entries: list[_Entry] = []
        if svc.headless or endpoint is not None:
            for ep in svc.published:
                label = ep.label(endpoint_pod_names=self._pod_names)
                if endpoint is not None and label != endpoint:
                    continue
                ports: tuple[PortSpec | None, ...] = svc.ports_of(ep) or (None,)
                for p in ports:
                    if wanted(p):
                        number = p.number if p else None
                        entries.append((ep.ip, number, (label, *service_labels)))
        else:
            for p in svc.ports:
                if wanted(p):
                    entries.extend((ip, p.number, service_labels) for ip in svc.cluster_ips)
        return entries or None

    def _addresses(
        self, qname: dns.name.Name, rdtype: _T, entries: list[_Entry]
    ) -> list[dns.rrset.RRset]:
        ipv6 = rdtype == _T.AAAA
        rrset = dns.rrset.RRset(qname, _IN, rdtype)
        rrset.update_ttl(self._ttl)
        for ip, _, _ in entries:
            if (":" in ip) == ipv6:
                rrset.add(_address(ip))
        return [rrset] if rrset else []

    def _srv(
        self, qname: dns.name.Name, apex: dns.name.Name, entries: list[_Entry]
    ) -> tuple[list[dns.rrset.RRset], list[dns.rrset.RRset]]:
        """One SRV per (target, port) and one glue address per (target, address); the weight
        counts every entry before duplicates go, as CoreDNS does."""
        weight = srv_weight(len(entries))
        records: list[dns.rrset.RRset] = []
        glue: list[dns.rrset.RRset] = []
        seen: set[tuple[tuple[str, ...], object]] = set()
        for ip, port, target_labels in entries:
            if port is None:
                continue
            target = dns.name.Name((*(label.encode() for label in target_labels), *apex.labels))
            if (target_labels, port) not in seen:
                seen.add((target_labels, port))
                srv = SRV(_IN, _T.SRV, 0, weight, port, target)
                records.append(_rr(qname, self._ttl, srv))
            if (target_labels, ip) not in seen:
                seen.add((target_labels, ip))
                glue.append(_rr(target, self._ttl, _address(ip)))
        return records, glue

    def _soa(self, apex: dns.name.Name, snapshot: _Snapshot) -> dns.rrset.RRset:
        soa = SOA(
            _IN,
            _T.SOA,
            dns.name.Name((b"ns", b"dns", *apex.labels)),
            dns.name.Name((b"hostmaster", *apex.labels)),
            snapshot.serial,
            7200,
            1800,
            86400,
            self._ttl,
        )
        return _rr(apex, min(self._ttl, _SOA_TTL_CAP), soa)


def _reverse_zone(zone: str) -> dns.name.Name:
    try:
        origin = dns.name.from_text(zone).canonicalize()
    except dns.exception.DNSException as error:
        raise InvalidArgument(f"reverse_zones: {zone!r} is not a domain name ({error})") from None
    arpa = (dns.reversename.ipv4_reverse_domain, dns.reversename.ipv6_reverse_domain)
    if not any(origin.is_subdomain(parent) for parent in arpa):
        raise InvalidArgument(f"reverse_zones: {zone!r} is not under in-addr.arpa or ip6.arpa")
    return origin


def _reverse_address(qname: dns.name.Name) -> str | None:
    """The address a full reverse name stands for, else None (CoreDNS
    ``ExtractAddressFromReverse``)."""
    try:
        return ipaddress.ip_address(dns.reversename.to_address(qname)).compressed
    except (dns.exception.DNSException, ValueError):
        return None


def _counter_name(name: str) -> dns.name.Name:
    try:
        return dns.name.from_text(name).canonicalize()
    except dns.exception.DNSException as error:
        raise InvalidArgument(f"name: {name!r} is not a domain name ({error})") from None


@functools.lru_cache(maxsize=4096)
def _address(ip: str) -> dns.rdata.Rdata:
    if ":" in ip:
        return AAAA(_IN, _T.AAAA, ip)
    return A(_IN, _T.A, ip)


def _rr(name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, _IN, rdata.rdtype)
    rrset.update_ttl(ttl)
    rrset.add(rdata)
    return rrset


def _loadbalance(records: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    """CoreDNS ``loadbalance``: address records shuffled, after all others."""
    addresses = [rrset for rrset in records if rrset.rdtype in (_T.A, _T.AAAA)]
    if not addresses:
        return records
    random.shuffle(addresses)
    others = [rrset for rrset in records if rrset.rdtype not in (_T.A, _T.AAAA)]
    return others + [_shuffled(rrset) for rrset in addresses]


def _shuffled(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
    if len(rrset) < 2:
        return rrset
    rdatas = list(rrset)
    random.shuffle(rdatas)
    shuffled = dns.rrset.RRset(rrset.name, _IN, rrset.rdtype)
    shuffled.update_ttl(rrset.ttl)
    for rdata in rdatas:
        shuffled.add(rdata)
    return shuffled


def _header_only(query_id: int, flags: int, rcode: dns.rcode.Rcode) -> bytes:
    """A reply for a query too broken to echo: ID, opcode and RD kept, no sections."""
    reply_flags = dns.flags.QR | (flags & (0x7800 | dns.flags.RD)) | rcode
    return _HEADER.pack(query_id, reply_flags, 0, 0, 0, 0)


def _render(
    query: _Query, rcode: dns.rcode.Rcode, sections: _Sections, limit: int, *, authoritative: bool
) -> bytes:
    """The reply on the wire, cut to ``limit`` bytes as miekg/dns ``Msg.Truncate`` does: as
    many answer, then authority, then additional records as fit, TC set if any was left out."""
    flags = dns.flags.QR | (query.flags & (dns.flags.RD | dns.flags.CD))
    if authoritative:
        flags |= dns.flags.AA
    rcode_flags, rcode_ednsflags = dns.rcode.to_flags(rcode)
    renderer: Any = dns.renderer.Renderer(query.id, flags | rcode_flags, limit)  # type: ignore[no-untyped-call]
    renderer.add_question(query.qname, query.rdtype, query.rdclass)
    if query.edns >= 0:
        renderer.reserve(_OPT_SIZE)
    try:
        for section, records in zip(
            (dns.renderer.ANSWER, dns.renderer.AUTHORITY, dns.renderer.ADDITIONAL),
            sections,
            strict=True,
        ):
            for rrset in records:
                _add_records(renderer, section, rrset)
    except dns.exception.TooBig:
        renderer.flags |= dns.flags.TC
    if query.edns >= 0:
        renderer.release_reserved()
        ednsflags = rcode_ednsflags | (query.ednsflags & dns.flags.DO)
        renderer.add_edns(0, ednsflags, query.payload)
    renderer.write_header()
    wire: bytes = renderer.get_wire()
    return wire


def _add_records(renderer: Any, section: int, rrset: dns.rrset.RRset) -> None:
    """The whole RRset if it fits, else its records one by one until one does not."""
    try:
        renderer.add_rrset(section, rrset, want_shuffle=False)
    except dns.exception.TooBig:
        if len(rrset) == 1:
            raise
        for rdata in rrset:
            renderer.add_rrset(section, _rr(rrset.name, rrset.ttl, rdata))
