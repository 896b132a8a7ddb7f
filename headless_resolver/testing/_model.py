"""A small Kubernetes service model and the DNS records the Kubernetes DNS spec derives from it.

Shared by the in-process ClusterDNS and by test fixtures that load the same model into Knot DNS
or BIND, so every server is fed from one definition of "what the cluster looks like".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from headless_resolver._errors import InvalidArgument

DNS_SCHEMA_VERSION = "1.1.0"

_LABEL_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")
_SUBDOMAIN_1123 = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
PROTOCOLS = ("tcp", "udp", "sctp")


def _check_label(field_name: str, value: str, pattern: re.Pattern[str]) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidArgument(f"{field_name}: {value!r} is not a valid DNS label")


@dataclass(frozen=True, slots=True)
class PortSpec:
    """A named service port: SRV records live at ``_<name>._<protocol>.<svc>...``."""

    name: str
    protocol: str
    number: int

    def __post_init__(self) -> None:
        _check_label("port.name", self.name, _PORT_NAME)
        if "--" in self.name or not re.search("[a-z]", self.name):
            raise InvalidArgument(f"port.name: {self.name!r} is not an IANA service name")
        if self.protocol.lower() not in PROTOCOLS:
            raise InvalidArgument(f"port.protocol: {self.protocol!r} is not one of {PROTOCOLS}")
        object.__setattr__(self, "protocol", self.protocol.lower())
        if not isinstance(self.number, int) or not 0 < self.number < 65536:
            raise InvalidArgument(f"port.number: {self.number!r} is not in 1..65535")


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One address backing a service; ``hostname`` is the pod's (StatefulSet) hostname.

    ``pod_name`` is the backing pod (the EndpointSlice ``targetRef``); CoreDNS names the
    endpoint after it only with its ``endpoint_pod_names`` option. ``ports``, when given,
    replace the service's for this endpoint: an EndpointSlice carries its own port numbers
    (a named ``targetPort`` may be a different container port in each pod), and SRV records
    publish those.
    """

    ip: str
    hostname: str | None = None
    ready: bool = True
    pod_name: str | None = None
    ports: tuple[PortSpec, ...] = ()

    def __post_init__(self) -> None:
        try:
            address = ipaddress.ip_address(self.ip)
        except ValueError:
            raise InvalidArgument(f"endpoint.ip: {self.ip!r} is not an IP address") from None
        object.__setattr__(self, "ip", address.compressed)
        object.__setattr__(self, "ports", tuple(port(p) for p in self.ports))
        if self.hostname is not None:
            _check_label("endpoint.hostname", self.hostname, _LABEL_1123)
        if self.pod_name is not None:
            _check_label("endpoint.pod_name", self.pod_name, _SUBDOMAIN_1123)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.ip

    @property
    def dns_label(self) -> str:
        """The per-pod label: the hostname, else the dashed IP (``10-244-1-5``, ``fd00--1``)."""
        return self.label()

    def label(self, *, endpoint_pod_names: bool = False) -> str:
        """The per-pod label as CoreDNS picks it: hostname; else, with ``endpoint_pod_names``,
        a pod name that fits one label; else the dashed IP (a trailing ``-`` gets a ``0``)."""
        if self.hostname:
            return self.hostname
        if endpoint_pod_names and self.pod_name and _LABEL_1123.match(self.pod_name):
            return self.pod_name
        if self.is_ipv6:
            dashed = self.ip.replace(":", "-")
            return dashed + "0" if dashed.endswith("-") else dashed
        return self.ip.replace(".", "-")


EndpointLike = EndpointSpec | tuple[object, ...] | str
"""An endpoint as the testing API takes it: an ``EndpointSpec``, ``ip``, ``(ip, hostname)``
or ``(ip, hostname, ready)``."""
PortLike = PortSpec | tuple[object, ...]
"""A port as the testing API takes it: ``PortSpec`` or ``(name, protocol, number)``."""


def endpoint(value: EndpointLike) -> EndpointSpec:
    """Accept ``EndpointSpec``, ``ip``, ``(ip, hostname)`` or ``(ip, hostname, ready)``."""
    if isinstance(value, EndpointSpec):
        return value
    if isinstance(value, str):
        return EndpointSpec(value)
    if isinstance(value, tuple) and 1 <= len(value) <= 3:
        ip = value[0]
        hostname = value[1] if len(value) > 1 else None
        ready = value[2] if len(value) > 2 else True
        if not isinstance(ip, str):
            raise InvalidArgument(f"endpoint.ip: {ip!r} is not an IP address")
        if hostname is not None and not isinstance(hostname, str):
            raise InvalidArgument(f"endpoint.hostname: {hostname!r} is not a string")
        if not isinstance(ready, bool):
            raise InvalidArgument(f"endpoint.ready: {ready!r} is not a bool")
        return EndpointSpec(ip, hostname, ready)
    raise InvalidArgument(f"endpoint: {value!r} is not (ip, hostname) or (ip, hostname, ready)")


def port(value: PortLike) -> PortSpec:
    """Accept ``PortSpec`` or ``(name, protocol, number)``."""
    if isinstance(value, PortSpec):
        return value
    if isinstance(value, tuple) and len(value) == 3:
        name, protocol, number = value
        if not isinstance(name, str) or not isinstance(protocol, str):
            raise InvalidArgument(f"port: {value!r} is not (name, protocol, number)")
        if not isinstance(number, int) or isinstance(number, bool):
            raise InvalidArgument(f"port.number: {number!r} is not an integer")
        return PortSpec(name, protocol, number)
    raise InvalidArgument(f"port: {value!r} is not (name, protocol, number)")


@dataclass(frozen=True, slots=True, init=False)
class ServiceSpec:
    """A Service: headless when ``cluster_ip`` is None.

    ``cluster_ips`` mirrors Kubernetes ``spec.clusterIPs``: a dual-stack service has one
    address per family, the first equal to ``cluster_ip``; either field may be given.
    Endpoints and ports may be given in their short forms (``EndpointLike``, ``PortLike``);
    the fields hold them as ``EndpointSpec`` and ``PortSpec``.
    """

    name: str
    namespace: str
    endpoints: tuple[EndpointSpec, ...]
    ports: tuple[PortSpec, ...]
    cluster_ip: str | None
    publish_not_ready: bool
    cluster_ips: tuple[str, ...]

    def __init__(
        self,
        name: str,
        namespace: str = "default",
        endpoints: Iterable[EndpointLike] = (),
        ports: Iterable[PortLike] = (),
        cluster_ip: str | None = None,
        publish_not_ready: bool = False,
        cluster_ips: Iterable[str] = (),
    ) -> None:
        _check_label("service.name", name, _LABEL_1035)
        _check_label("service.namespace", namespace, _LABEL_1123)
        ips = tuple(cluster_ips) or (() if cluster_ip is None else (cluster_ip,))
        compressed = tuple(_cluster_ip(ip) for ip in ips)
        if cluster_ip is not None and compressed[0] != _cluster_ip(cluster_ip):
            raise InvalidArgument(
                f"service.cluster_ips: {ips!r} must start with cluster_ip {cluster_ip!r}"
            )
        if len(compressed) > 2 or len({":" in ip for ip in compressed}) != len(compressed):
            raise InvalidArgument(f"service.cluster_ips: {ips!r} is not one address per IP family")
        specs = tuple(port(p) for p in ports)
        if compressed and not specs:
            raise InvalidArgument("service.ports: a ClusterIP service needs at least one port")
        fields = {
            "name": name,
            "namespace": namespace,
            "endpoints": tuple(endpoint(e) for e in endpoints),
            "ports": specs,
            "cluster_ip": compressed[0] if compressed else None,
            "publish_not_ready": publish_not_ready,
            "cluster_ips": compressed,
        }
        for field_name, value in fields.items():
            object.__setattr__(self, field_name, value)

    @property
    def headless(self) -> bool:
        return self.cluster_ip is None

    def ports_of(self, endpoint: EndpointSpec) -> tuple[PortSpec, ...]:
        """The ports DNS publishes for ``endpoint``: its own, else the service's."""
        return endpoint.ports or self.ports

    @property
    def published(self) -> tuple[EndpointSpec, ...]:
        """Endpoints DNS answers with: ready ones, or all with ``publishNotReadyAddresses``."""
        if self.publish_not_ready:
            return self.endpoints
        return tuple(e for e in self.endpoints if e.ready)

    def fqdn(self, domain: str) -> str:
        return f"{self.name}.{self.namespace}.svc.{domain.strip('.')}."


def _cluster_ip(value: object) -> str:
    try:
        return ipaddress.ip_address(value).compressed  # type: ignore[arg-type]
    except ValueError:
        raise InvalidArgument(f"service.cluster_ip: {value!r} is not an IP address") from None


def srv_weight(entries: int) -> int:
    """CoreDNS's SRV weight when ``entries`` (address, port) pairs share priority 0:
    ``floor(100 / entries)``, at least 1."""
    return max(1, 100 // entries)


def zone_records(
    services: Iterable[ServiceSpec], domain: str = "cluster.local", ttl: int = 5
) -> list[tuple[str, int, str, str]]:
    """The zone a Kubernetes DNS server serves for ``services``: ``(owner, ttl, type, rdata)``.

    Layout per the Kubernetes DNS specification 1.1.0 and CoreDNS: SOA (MINIMUM = ttl) and NS at
    the apex, ``dns-version`` TXT, service A/AAAA (headless: one per published endpoint),
    per-pod names, SRV per named port (priority 0, weight ``srv_weight`` of the pairs behind
    the name, target the per-pod name) and at the bare service name. Dual-stack ClusterIP
    services get both addresses.
    """
    zone = domain.strip(".").lower() + "."
    records: list[tuple[str, int, str, str]] = [
        (zone, ttl, "SOA", f"ns.dns.{zone} hostmaster.{zone} 1 7200 1800 86400 {ttl}"),
        (zone, ttl, "NS", f"ns.dns.{zone}"),
        (f"ns.dns.{zone}", ttl, "A", "127.0.0.1"),
        (f"dns-version.{zone}", ttl, "TXT", f'"{DNS_SCHEMA_VERSION}"'),
    ]
    for svc in services:
        owner = svc.fqdn(zone)
        if not svc.headless:
            for ip in svc.cluster_ips:
                records.append((owner, ttl, "AAAA" if ":" in ip else "A", ip))
            _add_srv(records, owner, ttl, [(owner, p) for p in svc.ports for _ in svc.cluster_ips])
            continue
        pods = [(f"{ep.dns_label}.{owner}", ep) for ep in svc.published]
        for pod, ep in pods:
            family = "AAAA" if ep.is_ipv6 else "A"
            records.append((owner, ttl, family, ep.ip))
            records.append((pod, ttl, family, ep.ip))
        _add_srv(records, owner, ttl, [(pod, p) for pod, ep in pods for p in svc.ports_of(ep)])
    return list(dict.fromkeys(records))


def _add_srv(
    records: list[tuple[str, int, str, str]],
    owner: str,
    ttl: int,
    targets: list[tuple[str, PortSpec]],
) -> None:
    """SRV per port name and at the bare name, weighted by how many (target, port) pairs
    each name has, as CoreDNS counts them before it drops duplicates."""
    for name, protocol in {(q.name, q.protocol): None for _, q in targets}:
        named = [(target, q) for target, q in targets if (q.name, q.protocol) == (name, protocol)]
        weight = srv_weight(len(named))
        for target, p in named:
            srv = f"_{name}._{protocol}.{owner}"
            records.append((srv, ttl, "SRV", f"0 {weight} {p.number} {target}"))
    bare = srv_weight(len(targets)) if targets else 0
    for target, p in targets:
        records.append((owner, ttl, "SRV", f"0 {bare} {p.number} {target}"))
