"""Service names: what a caller may write, and the absolute DNS names it stands for.

A pod's resolver would expand a short name through the search list (``ndots:5``), sending up to
four queries per lookup. We expand it ourselves, once, and always query the absolute name.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from headless_resolver._errors import InvalidArgument, InvalidServiceName

DEFAULT_NAMESPACE = "default"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
PROTOCOLS = ("tcp", "udp", "sctp")

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_CHARS = re.compile(r"[-a-z0-9]*")
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?")

PortRef = str | int | None
"""A named port (SRV lookup), a port number (set on every address), or None (addresses only)."""


@dataclass(frozen=True, slots=True)
class ServiceName:
    """One reading of a name: a service, or one pod of it (``pod`` is the per-pod label)."""

    service: str
    namespace: str
    cluster_domain: str
    pod: str | None = None

    @property
    def fqdn(self) -> str:
        """The absolute name to query for addresses, with the trailing dot."""
        base = f"{self.service}.{self.namespace}.svc.{self.cluster_domain}."
        return base if self.pod is None else f"{self.pod}.{base}"

    def srv_fqdn(self, port: str, proto: str) -> str:
        return f"_{port}._{proto}.{self.fqdn}"


@dataclass(frozen=True, slots=True)
class NameLookup:
    """What one ``resolve(name, port=, proto=)`` asks for.

    ``candidates`` holds more than one reading only for a two-label ``a.b``: pod ``a`` of
    service ``b`` in our namespace, then service ``a`` in namespace ``b``, the order in which
    the Kubernetes search list would try them.
    """

    candidates: tuple[ServiceName, ...]
    port: PortRef
    proto: str


def _check_label(label: str, name: str) -> None:
    if not label:
        raise InvalidServiceName(f"{name!r}: empty label")
    if len(label) > 63:
        raise InvalidServiceName(
            f"{name!r}: label {label[:20]!r}... is {len(label)} characters, the limit is 63"
        )
    if not _LABEL.fullmatch(label):
        if not _LABEL_CHARS.fullmatch(label):
            raise InvalidServiceName(
                f"{name!r}: label {label!r} has characters other than a-z, 0-9 and '-'"
            )
        raise InvalidServiceName(f"{name!r}: label {label!r} starts or ends with '-'")


def _is_dashed_ipv6(label: str) -> bool:
    """An IPv6 pod's label as CoreDNS writes it (``::1`` is ``--1``), which may start with '-'."""
    if label.endswith("-"):  # CoreDNS appends a 0 to a trailing '-': "fd00::" is "fd00--0"
        return False
    try:
        ipaddress.IPv6Address(label.replace("-", ":"))
    except ValueError:
        return False
    return True


def split_name(name: object) -> tuple[list[str], bool]:
    """Lower-case labels of ``name`` and whether it was absolute; raises InvalidServiceName."""
    if not isinstance(name, str):
        raise InvalidServiceName(f"{name!r}: a service name must be a str")
    if not name:
        raise InvalidServiceName("empty service name")
    if not name.isascii():
        # Kubernetes names are ASCII (RFC 1123 labels): no IDNA, so no query for a look-alike.
        odd = "".join(sorted({c for c in name if not c.isascii()}))
        raise InvalidServiceName(f"{name!r}: has characters other than a-z, 0-9 and '-' ({odd!r})")
    lowered = name.lower()
    absolute = lowered.endswith(".")
    bare = lowered[:-1] if absolute else lowered
    if len(bare) > 253:
        raise InvalidServiceName(f"{name!r}: {len(bare)} characters, the limit is 253")
    return bare.split("."), absolute


def check_port(port: PortRef) -> PortRef:
    """A port name (lower-cased) or number as given; raises InvalidArgument naming the port."""
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int | str):
        raise InvalidArgument(f"port {port!r} is not a port name or number")
    if isinstance(port, int):
        if not 0 < port < 65536:
            raise InvalidArgument(f"port {port} is not in 1..65535")
        return port
    port_name = port.lower()
    if not _PORT_NAME.fullmatch(port_name) or "--" in port_name or port_name.isdigit():
        raise InvalidArgument(f"port {port!r} is not a service port name (1-15 of a-z, 0-9, '-')")
    return port_name


def _check_port(port: PortRef, proto: str, name: str) -> tuple[PortRef, str]:
    if not isinstance(proto, str) or proto.lower() not in PROTOCOLS:
        raise InvalidServiceName(f"{name!r}: proto {proto!r} is not one of {PROTOCOLS}")
    try:
        return check_port(port), proto.lower()
    except InvalidArgument as bad:
        raise InvalidServiceName(f"{name!r}: {bad}") from None


class ClusterNaming:
    """How short names expand in one namespace of one cluster; parses and validates names."""

    __slots__ = ("_zone_labels", "cluster_domain", "namespace")

    def __init__(self, namespace: str, cluster_domain: str) -> None:
        labels, _ = split_name(cluster_domain)
        for label in labels:
            _check_label(label, cluster_domain)
        ns_labels, _ = split_name(namespace)
        if len(ns_labels) != 1:
            raise InvalidServiceName(f"namespace {namespace!r} must be a single label")
        _check_label(ns_labels[0], namespace)
        self.namespace = ns_labels[0]
        self.cluster_domain = ".".join(labels)
        self._zone_labels = labels

    @classmethod
    def from_environment(
        cls,
        namespace: str | None = None,
        cluster_domain: str | None = None,
        *,
        resolv_conf: ResolvConf | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> ClusterNaming:
        """Arguments first, then ``POD_NAMESPACE``, then the resolv.conf search list, then
        ``default`` / ``cluster.local``."""
        conf_ns, conf_domain = (None, None) if resolv_conf is None else resolv_conf.cluster_search()
        ns = namespace or environ.get("POD_NAMESPACE") or conf_ns or DEFAULT_NAMESPACE
        domain = cluster_domain or conf_domain or DEFAULT_CLUSTER_DOMAIN
        return cls(ns, domain)

    def __repr__(self) -> str:
        return (
            f"ClusterNaming(namespace={self.namespace!r}, cluster_domain={self.cluster_domain!r})"
        )

    def is_cluster_name(self, host: str) -> bool:
        """True for names under the cluster domain (``*.svc.<zone>`` included); no validation."""
        bare = host.lower().rstrip(".")
        return bare.endswith("." + self.cluster_domain)

    def parse(self, name: str, port: PortRef = None, proto: str = "tcp") -> NameLookup:
        """Validate ``name`` and list the absolute names it may stand for, before any I/O."""
        labels, absolute = split_name(name)
        if labels[0].startswith("_"):
            labels, port, proto = self._srv_prefix(labels, port, proto, name)
        for index, label in enumerate(labels):
            if index == 0 and label.startswith("-") and len(labels) > 1 and _is_dashed_ipv6(label):
                continue  # a per-pod label: a pod of the service named by the labels after it
            _check_label(label, name)
        port, proto = _check_port(port, proto, name)
        candidates = self._readings(labels, absolute, name)
        if port is not None and any(c.pod is not None for c in candidates):
            candidates = tuple(c for c in candidates if c.pod is None)
            if not candidates:
                raise InvalidServiceName(f"{name!r}: a per-pod name has no SRV records")
        return NameLookup(candidates, port, proto)

    def _srv_prefix(
        self, labels: list[str], port: PortRef, proto: str, name: str
    ) -> tuple[list[str], PortRef, str]:
        if len(labels) < 3 or not labels[1].startswith("_"):
            raise InvalidServiceName(f"{name!r}: an SRV name is _<port>._<proto>.<service>")
        if port is not None:
            raise InvalidServiceName(f"{name!r}: names its port and port={port!r} is also given")
        srv_port, srv_proto = labels[0][1:], labels[1][1:]
        return labels[2:], srv_port, srv_proto

    def _readings(self, labels: list[str], absolute: bool, name: str) -> tuple[ServiceName, ...]:
        zone = self._zone_labels
        n = len(labels)
        prefix = n - len(zone) - 1
        if prefix in (2, 3) and labels[prefix:] == ["svc", *zone]:
            return (self._reading(labels[:prefix], self.cluster_domain, name),)
        for at in (2, 3):
            if n > at and labels[at] == "svc" and (n > at + 1 or not absolute):
                domain = ".".join(labels[at + 1 :]) or self.cluster_domain
                return (self._reading(labels[:at], domain, name),)
        if absolute:
            raise InvalidServiceName(
                f"{name!r}: an absolute name must be <service>.<namespace>.svc.<zone>."
                " or <pod>.<service>.<namespace>.svc.<zone>."
            )
        if n == 1:
            return (self._reading([labels[0], self.namespace], self.cluster_domain, name),)
        if n == 2:
            pod = ServiceName(labels[1], self.namespace, self.cluster_domain, pod=labels[0])
            if not labels[0][0].isalpha():
                return (pod,)
            return (pod, self._reading(labels, self.cluster_domain, name))
        if n == 3:
            return (self._reading(labels, self.cluster_domain, name),)
        raise InvalidServiceName(
            f"{name!r}: expected <service>[.<namespace>[.svc[.<zone>]]]"
            " or <pod>.<service>[.<namespace>[.svc[.<zone>]]]"
        )

    @staticmethod
    def _reading(labels: list[str], domain: str, name: str) -> ServiceName:
        """``[service, namespace]`` or ``[pod, service, namespace]``."""
        service = labels[-2]
        if not service[0].isalpha():
            raise InvalidServiceName(f"{name!r}: service name {service!r} must start with a letter")
        pod = labels[0] if len(labels) == 3 else None
        return ServiceName(service, labels[-1], domain, pod=pod)


@dataclass(frozen=True, slots=True)
class ResolvConf:
    """The parts of /etc/resolv.conf we use: nameservers and the search list."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()

    @classmethod
    def read(cls, path: str | os.PathLike[str] = "/etc/resolv.conf") -> ResolvConf:
        """Parse ``path``; a missing file reads as empty."""
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return cls()
        nameservers: list[str] = []
        search: tuple[str, ...] = ()
        for line in text.splitlines():
            words = line.split("#", 1)[0].split(";", 1)[0].split()
            if len(words) >= 2 and words[0] == "nameserver":
                nameservers.append(words[1])
            elif words and words[0] in ("search", "domain"):
                search = tuple(w.lower().rstrip(".") for w in words[1:])
        return cls(tuple(nameservers), search)

    def cluster_search(self) -> tuple[str | None, str | None]:
        """``(namespace, cluster_domain)`` from a ``<ns>.svc.<zone>`` search entry, if any."""
        for entry in self.search:
            ns, sep, rest = entry.partition(".svc.")
            if sep and ns and "." not in ns and rest:
                return ns, rest
        for entry in self.search:
            if entry.startswith("svc.") and len(entry) > 4:
                return None, entry[4:]
        return None, None


def parse_nameserver(value: str) -> tuple[str, int]:
    """``"host"``, ``"host:port"``, ``"::1"`` or ``"[::1]:53"`` as ``(host, port)``."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"nameserver {value!r}: expected 'host' or 'host:port'")
    host, port = value, 53
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InvalidArgument(f"nameserver {value!r}: expected '[address]:port'")
        if rest:
            port = _port_number(rest[1:], value)
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        port = _port_number(port_text, value)
    if not host:
        raise InvalidArgument(f"nameserver {value!r}: no host")
    return host, port


def _port_number(text: str, value: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidArgument(f"nameserver {value!r}: port {text!r} is not in 1..65535")
    return int(text)
