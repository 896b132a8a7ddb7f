"""What a source of endpoint sets is: the resolver asks it for a target, and may be told."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from headless_resolver._endpoints import Endpoint
from headless_resolver._errors import ResolutionError
from headless_resolver._names import PortRef, ServiceName


class Target(NamedTuple):
    """One thing the resolver caches: a service (or one pod of it) and how its port is read.

    ``name`` is the absolute name the set is published under (``EndpointSet.name``): the
    service's FQDN, or the SRV name for a named port.
    """

    name: str
    service: ServiceName
    port: PortRef
    proto: str

    @classmethod
    def of(cls, service: ServiceName, port: PortRef, proto: str) -> Target:
        name = service.srv_fqdn(port, proto) if isinstance(port, str) else service.fqdn
        return cls(name, service, port, proto)


class Found(NamedTuple):
    """Endpoints, valid for ``ttl`` seconds (None: the policy's minimum)."""

    endpoints: list[Endpoint]
    ttl: float | None


class Missing(NamedTuple):
    """The target does not exist, or has no endpoint; a negative answer, cached as one."""

    message: str
    negative_ttl: float | None


Outcome = Found | Missing
Update = Outcome | ResolutionError
"""What a push source tells the resolver: a new outcome, or that it cannot currently see."""
Listener = Callable[[Target, Update], None]


class Source(Protocol):
    """Produces the endpoints of a target. ``fetch`` raises ResolutionError when it cannot
    answer; the resolver then serves the last good set (stale) as its policy says.

    ``kind`` names the source in logs and in ``resolve --json`` (``"dns"``, ``"kubernetes"``).
    """

    @property
    def kind(self) -> str: ...

    async def fetch(self, target: Target) -> Outcome: ...

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Have ``listener`` told of every change to a target fetched before (a push source);
        returns what unsubscribes. A pull source never calls it."""
        ...

    async def aclose(self) -> None: ...


def smallest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
