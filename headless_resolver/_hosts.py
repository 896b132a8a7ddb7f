"""Which hosts a client sends to pods: shared by the httpx transports and the aiohttp resolver."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from headless_resolver._errors import InvalidArgument

HostMatch = Collection[str] | Callable[[str], bool]
"""Extra hosts to route: a collection of host names, or a predicate on the host."""

_SVC = ".svc"


class ClusterNames(Protocol):
    def is_cluster_name(self, host: str) -> bool: ...


def port_rules(ports: Mapping[str, str] | None) -> dict[str, str]:
    """SRV port names by host, keyed in lower case as the hosts they are looked up with.

    A rule applies to the host exactly as written in it (``web``), not to other spellings of
    the same service (``web.default.svc``): give each spelling the client uses.
    """
    return {host.lower(): name for host, name in (ports or {}).items()}


def host_matcher(
    names: ClusterNames, match: HostMatch | None, ports: Mapping[str, str]
) -> Callable[[str], bool]:
    """Hosts to route: names under the cluster domain or ending in ``.svc``
    (``web.default.svc``, a form only Kubernetes gives), hosts the user names, hosts with a
    port rule. ``ports`` as ``port_rules()`` gives them.
    """
    if match is None:
        extra: frozenset[str] = frozenset()
        predicate: Callable[[str], bool] | None = None
    elif callable(match):
        extra, predicate = frozenset(), match
    elif isinstance(match, str):
        raise InvalidArgument("match: give a collection of host names or a callable, not a str")
    else:
        extra, predicate = frozenset(h.lower() for h in match), None
    extra |= frozenset(ports)

    def matches(host: str) -> bool:
        return (
            host in extra
            or host.endswith(_SVC)
            or names.is_cluster_name(host)
            or (predicate is not None and predicate(host))
        )

    return matches
