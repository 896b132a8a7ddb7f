"""EndpointSlices (``discovery.k8s.io/v1``) read as the API defines them.

Conditions: ``ready`` nil means true, ``serving`` nil means true, ``terminating`` nil means
false. A service's usable endpoints are its ready ones; when none is ready, the serving ones
that are terminating (a rollout's draining pods), as kube-proxy does; never one whose
``serving`` is false. With a client zone, when every usable endpoint carries
``hints.forZones``, those hinted for the zone are preferred (all of them when none is).

Each slice is read once per change and per view (port, pod, zone) of it, so one slice's
change costs the work of that slice plus the concatenation of the others' lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

from headless_resolver._endpoints import Endpoint
from headless_resolver._names import PortRef

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class View:
    """What one resolver target reads from a service's slices."""

    port: PortRef
    proto: str = "tcp"
    pod: str | None = None
    """A per-pod name's label: the endpoint's hostname, pod name or dashed address."""
    zone: str | None = None


class _Row:
    """One endpoint of a slice, conditions resolved."""

    __slots__ = (
        "address",
        "for_zones",
        "hostname",
        "node",
        "ready",
        "serving",
        "terminating",
        "zone",
    )

    def __init__(self, item: Mapping[str, Any]) -> None:
        conditions = item.get("conditions") or {}
        ready = conditions.get("ready")
        serving = conditions.get("serving")
        terminating = conditions.get("terminating")
        self.ready = ready is not False
        self.serving = serving is not False
        self.terminating = terminating is True
        self.address = str((item.get("addresses") or [""])[0])
        target = item.get("targetRef") or {}
        pod_name = target.get("name") if target.get("kind", "Pod") == "Pod" else None
        self.hostname: str | None = item.get("hostname") or pod_name or None
        self.node: str | None = item.get("nodeName")
        self.zone: str | None = item.get("zone")
        hints = (item.get("hints") or {}).get("forZones")
        self.for_zones: frozenset[str] | None = (
            frozenset(h.get("name", "") for h in hints) if hints is not None else None
        )

    def is_pod(self, label: str) -> bool:
        return label in (self.hostname, _dashed(self.address))


@dataclass(slots=True)
class Group:
    """The endpoints of one condition class (ready, or serving-and-terminating) in one slice."""

    endpoints: list[Endpoint]
    in_zone: list[Endpoint]
    all_hinted: bool
    addresses: frozenset[str] = frozenset()
    """Of ``endpoints``: slices that share none need no per-endpoint deduplication."""

    def __post_init__(self) -> None:
        self.addresses = frozenset(e.ip for e in self.endpoints)


@dataclass(slots=True)
class SliceView:
    """A slice seen through one view: None ports means the slice lacks the named port."""

    ready: Group
    draining: Group
    has_port: bool


class ParsedSlice:
    """One EndpointSlice object: its name, resourceVersion and endpoints, views computed once."""

    __slots__ = ("_views", "address_type", "name", "ports", "resource_version", "rows")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        self.name: str = metadata.get("name", "")
        self.resource_version: str = metadata.get("resourceVersion", "")
        self.address_type: str = obj.get("addressType", "IPv4")
        self.ports: list[tuple[str, str, int | None]] = [
            (p.get("name") or "", (p.get("protocol") or "TCP").upper(), p.get("port"))
            for p in obj.get("ports") or ()
        ]
        rows = [_Row(item) for item in obj.get("endpoints") or ()]
        if self.address_type == "FQDN":
            rows = []  # not addresses: a headless client has nothing to dial without DNS
        self.rows = rows
        self._views: dict[View, SliceView] = {}

    def view(self, view: View) -> SliceView:
        seen = self._views.get(view)
        if seen is None:
            seen = self._views[view] = self._build(view)
        return seen

    def _build(self, view: View) -> SliceView:
        if isinstance(view.port, str):
            protocol = view.proto.upper()
            numbers = [
                n for name, proto, n in self.ports if name == view.port and proto == protocol
            ]
            if not numbers or numbers[0] is None:
                empty = Group([], [], True)
                return SliceView(empty, Group([], [], True), False)
            port: int | None = numbers[0]
        else:
            port = view.port
        ready: list[_Row] = []
        draining: list[_Row] = []
        for row in self.rows:
            if not row.serving or (view.pod is not None and not row.is_pod(view.pod)):
                continue
            if row.ready:
                ready.append(row)
            elif row.terminating:
                draining.append(row)
        return SliceView(_group(ready, port, view.zone), _group(draining, port, view.zone), True)


def _group(rows: list[_Row], port: int | None, zone: str | None) -> Group:
    endpoints: list[Endpoint] = []
    kept: list[_Row] = []
    for row in rows:
        try:
            endpoint = Endpoint(
                row.address,
                port,
                row.hostname,
                zone=row.zone,
                node_name=row.node,
                terminating=row.terminating,
            )
        except ValueError:  # not an address (or a port out of range): nothing to dial
            continue
        endpoints.append(endpoint)
        kept.append(row)
    if zone is None:
        return Group(endpoints, [], False)
    all_hinted = all(row.for_zones is not None for row in kept)
    in_zone = [e for e, row in zip(endpoints, kept, strict=True) if zone in (row.for_zones or ())]
    return Group(endpoints, in_zone, all_hinted)


def merge(slices: Iterable[ParsedSlice], view: View) -> tuple[list[Endpoint], bool]:
    """The usable endpoints of a service's slices for ``view``, each address:port once;
    and whether any slice has the view's port (False: the named port does not exist)."""
    views = [s.view(view) for s in slices]
    has_port = any(v.has_port for v in views)
    groups = [v.ready for v in views if v.ready.endpoints]
    if not groups:
        groups = [v.draining for v in views if v.draining.endpoints]
    chosen: list[list[Endpoint]] = [g.endpoints for g in groups]
    if view.zone is not None and groups and all(g.all_hinted for g in groups):
        in_zone = [g.in_zone for g in groups if g.in_zone]
        if in_zone:
            chosen = in_zone
    if sum(len(g.addresses) for g in groups) == len(
        frozenset().union(*(g.addresses for g in groups))
    ):
        return list(chain.from_iterable(chosen)), has_port  # no address in two slices
    merged: list[Endpoint] = []
    seen: set[tuple[str, int | None]] = set()
    for endpoints in chosen:
        for endpoint in endpoints:
            key = (endpoint.ip, endpoint.port)
            if key not in seen:
                seen.add(key)
                merged.append(endpoint)
    return merged, has_port


def _dashed(address: str) -> str:
    """The per-pod DNS label CoreDNS gives a pod without a hostname: its dashed address
    (an IPv6 one ending in ``-`` gets a ``0``, as a label cannot end with a dash)."""
    dashed = address.replace(".", "-").replace(":", "-")
    return dashed + "0" if dashed.endswith("-") else dashed
