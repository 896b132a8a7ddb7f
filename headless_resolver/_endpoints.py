"""Endpoints and immutable, versioned endpoint sets."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

from headless_resolver._errors import InvalidArgument


def member_diff(
    before: frozenset[Endpoint], after: frozenset[Endpoint]
) -> tuple[frozenset[Endpoint], frozenset[Endpoint]]:
    """``(added, removed)`` going from ``before`` to ``after``, by endpoint identity.

    The one way pods' arrivals and departures are worked out: by pools, strategies, health.
    """
    return after - before, before - after


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One pod address of a service.

    Identity (equality, hashing) is ``(ip, port, hostname)``: SRV ``priority`` and ``weight``
    change whenever the service scales (CoreDNS gives each of k pods weight 100 // k), and
    strategies must not lose a pod's state because of that. The same holds for what only the
    Kubernetes API tells (``source="kubernetes"``): ``zone`` and ``node_name`` of the pod, and
    ``terminating`` (the pod is draining: used only while no endpoint is ready, as kube-proxy
    does). A pod that starts terminating is the same pod, whose set has changed.
    """

    ip: str
    port: int | None = None
    hostname: str | None = None
    priority: int = field(default=0, compare=False)
    weight: int = field(default=0, compare=False)
    zone: str | None = field(default=None, compare=False)
    node_name: str | None = field(default=None, compare=False)
    terminating: bool = field(default=False, compare=False)
    _hash: int = field(default=0, init=False, repr=False, compare=False)
    """Of the identity, computed once: a 10,000-endpoint set is hashed on every change."""

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Endpoint], tuple[object, ...]]:
        # Rebuilt through __init__, so another process (another hash seed) hashes it anew.
        return (
            Endpoint,
            (
                self.ip,
                self.port,
                self.hostname,
                self.priority,
                self.weight,
                self.zone,
                self.node_name,
                self.terminating,
            ),
        )

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.ip

    def netloc(self, default_port: int | None = None) -> str:
        """``ip:port`` as it goes into a URL (IPv6 in brackets)."""
        host = f"[{self.ip}]" if self.is_ipv6 else self.ip
        port = self.port if self.port is not None else default_port
        return host if port is None else f"{host}:{port}"

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.ip)
        except ValueError:
            raise InvalidArgument(f"Endpoint.ip: {self.ip!r} is not an IP address") from None
        if self.port is not None and not 0 < self.port < 65536:
            raise InvalidArgument(f"Endpoint.port: {self.port!r} is not in 1..65535")
        object.__setattr__(self, "_hash", hash((self.ip, self.port, self.hostname)))


class EndpointSet(Sequence[Endpoint]):
    """The endpoints of one service name at one moment: immutable, versioned, comparable.

    ``version`` grows by one each time the content (ignoring order) changes, so a consumer can
    keep derived state (a hash ring, a rotation) until the version moves. ``expires_at`` is on
    the resolver's clock; ``stale`` is true while DNS is failing and the last good set is served.
    """

    __slots__ = ("_endpoints", "_members", "expires_at", "name", "stale", "version")

    def __init__(
        self,
        name: str,
        endpoints: Iterable[Endpoint] = (),
        *,
        version: int = 0,
        expires_at: float = 0.0,
        stale: bool = False,
    ) -> None:
        self._endpoints: tuple[Endpoint, ...] = tuple(endpoints)
        self._members: frozenset[Endpoint] = frozenset(self._endpoints)
        self.name = name
        self.version = version
        self.expires_at = expires_at
        self.stale = stale

    @overload
    def __getitem__(self, index: int) -> Endpoint: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Endpoint, ...]: ...
    def __getitem__(self, index: int | slice) -> Endpoint | tuple[Endpoint, ...]:
        return self._endpoints[index]

    def __len__(self) -> int:
        return len(self._endpoints)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self._endpoints)

    def __contains__(self, item: object) -> bool:
        return item in self._members

    def __bool__(self) -> bool:
        return bool(self._endpoints)

    def __repr__(self) -> str:
        flags = " stale" if self.stale else ""
        return f"<EndpointSet {self.name} v{self.version}{flags} {list(self._endpoints)!r}>"

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    @property
    def members(self) -> frozenset[Endpoint]:
        """The endpoints as a set, for order-independent comparison."""
        return self._members

    def same_members(self, other: EndpointSet | Iterable[Endpoint]) -> bool:
        """True when both hold the same endpoints, whatever the order.

        The attributes outside identity are compared too: a change of SRV weight, or a pod
        that starts terminating, is a change of the set.
        """
        if isinstance(other, EndpointSet):
            theirs, members = other._endpoints, other._members
        else:
            theirs = tuple(other)
            members = frozenset(theirs)
        if len(theirs) != len(self._endpoints):
            return False
        if self._members != members:
            return False
        return {e: _details(e) for e in self._endpoints} == {e: _details(e) for e in theirs}

    def diff(self, newer: EndpointSet) -> tuple[frozenset[Endpoint], frozenset[Endpoint]]:
        """``(added, removed)`` going from this set to ``newer``."""
        return member_diff(self._members, newer._members)

    def replace(
        self,
        *,
        expires_at: float | None = None,
        stale: bool | None = None,
        version: int | None = None,
    ) -> EndpointSet:
        """A copy sharing the endpoint tuple, with new metadata (cheap: no re-hashing)."""
        clone = EndpointSet.__new__(EndpointSet)
        clone._endpoints = self._endpoints
        clone._members = self._members
        clone.name = self.name
        clone.version = self.version if version is None else version
        clone.expires_at = self.expires_at if expires_at is None else expires_at
        clone.stale = self.stale if stale is None else stale
        return clone


def _details(endpoint: Endpoint) -> tuple[int, int, str | None, str | None, bool]:
    """What ``Endpoint`` equality leaves out."""
    return (
        endpoint.priority,
        endpoint.weight,
        endpoint.zone,
        endpoint.node_name,
        endpoint.terminating,
    )
