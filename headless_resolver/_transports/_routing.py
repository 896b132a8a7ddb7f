"""What the async and sync transports share: which hosts to route, the pod request, the pools.

Kept free of I/O so both transports (and their locking rules) build on the same decisions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Generic, Protocol, TypeVar

import httpx

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._metrics import PodRecord

HostMatch = Collection[str] | Callable[[str], bool]
"""Extra hosts to route: a collection of host names, or a predicate on the host."""

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own defaults; with one pool per pod they apply to each pod."""
SHARD_CONNECTIONS = 8
"""Connections kept alive per httpcore pool. Its bookkeeping walks every pooled connection
(polling each idle one's socket) when a request starts and when it ends, so the cost of a
request grows with the pool; a pod's connections are therefore split across several pools."""
UNLIMITED_SHARDS = 8
"""Shards per pod when neither connections nor keep-alive are limited."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
DEFAULT_PORTS = {"http": 80, "https": 443}
_ROUTE_CACHE_SIZE = 1024


class ClusterNames(Protocol):
    def is_cluster_name(self, host: str) -> bool: ...


@dataclass(slots=True, eq=False)
class Route:
    """How requests for one ``(scheme, host, port)`` reach pods; also remembers the last set."""

    host: str
    """The host as written in the URL: what is resolved, sent as TLS server name and in Host."""
    port_name: str | None
    """SRV port name to resolve (``_<port_name>._tcp``), or None for A/AAAA."""
    default_port: int
    """Port used for endpoints without one (A/AAAA answers): the URL's port or the scheme's."""
    version: int = -1
    members: frozenset[tuple[str, int]] = frozenset()

    def pool_key(self, endpoint: Endpoint) -> PoolKey:
        port = endpoint.port if endpoint.port is not None else self.default_port
        return (endpoint.ip, port, self.host)


PoolKey = tuple[str, int, str]
"""(pod IP, port, TLS server name)."""


def port_rules(ports: Mapping[str, str] | None) -> dict[str, str]:
    """SRV port names by host, keyed in lower case as the hosts they are looked up with."""
    return {host.lower(): name for host, name in (ports or {}).items()}


def host_matcher(
    names: ClusterNames, match: HostMatch | None, ports: Mapping[str, str]
) -> Callable[[str], bool]:
    """Hosts to route: the cluster domain, plus hosts the user names or whose port is a rule.

    ``ports`` as ``port_rules()`` gives them.
    """
    if match is None:
        extra: frozenset[str] = frozenset()
        predicate: Callable[[str], bool] | None = None
    elif callable(match):
        extra, predicate = frozenset(), match
    elif isinstance(match, str):
        raise TypeError("match: give a collection of host names or a callable, not a str")
    else:
        extra, predicate = frozenset(h.lower() for h in match), None
    extra |= frozenset(ports)

    def matches(host: str) -> bool:
        return (
            host in extra
            or names.is_cluster_name(host)
            or (predicate is not None and predicate(host))
        )

    return matches


def pod_request(request: httpx.Request, route: Route, endpoint: Endpoint) -> httpx.Request:
    """A new request to the pod's address; Host and TLS server name stay the service's.

    The caller's request is left untouched, so redirects and cookies keep following the
    service name.
    """
    port = endpoint.port if endpoint.port is not None else route.default_port
    pod = httpx.Request(
        request.method,
        pod_url(request.url, endpoint.ip, port),
        headers=request.headers,
        stream=request.stream,
        extensions=request.extensions,
    )
    pod.extensions["sni_hostname"] = route.host  # a copy: the caller's extensions stay as they are
    return pod


def pod_url(url: httpx.URL, ip: str, port: int) -> httpx.URL:
    """``url.copy_with(host=ip, port=port)`` without re-validating every other component.

    ``copy_with`` parses the whole URL again (~25 us, most of this module's per-request cost);
    the IP and port come from an ``Endpoint``, which has validated them already.
    """
    copy = httpx.URL.__new__(httpx.URL)
    default = DEFAULT_PORTS.get(url.scheme)
    copy._uri_reference = url._uri_reference._replace(
        host=ip, port=None if port == default else port
    )
    return copy


def never_sent(exc: Exception) -> bool:
    """The request cannot have reached the pod: safe to try another pod whatever the method."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def replayable(request: httpx.Request) -> bool:
    """Idempotent and with a body held in memory, so sending it again is both safe and possible."""
    return request.method in IDEMPOTENT_METHODS and isinstance(request.stream, httpx.ByteStream)


def retryable(request: httpx.Request, exc: BaseException) -> bool:
    if not isinstance(exc, httpx.TransportError):
        return False
    if never_sent(exc):
        return True
    # Sent, or possibly sent: the pod may have acted on it. Timeouts are not retried: a slow
    # pod answering late would double the caller's wait.
    return isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError) and replayable(request)


@dataclass(slots=True)
class Attempts:
    """The pods one request has tried, and the last error one of them gave."""

    route: Route
    method: str = "GET"
    tried: list[Endpoint] = field(default_factory=list)
    last_error: httpx.TransportError | None = None
    pod: PodRecord | None = None
    """The metrics record of the attempt under way."""

    def noted(self, exc: httpx.TransportError) -> httpx.TransportError:
        port = self.route.default_port
        exc.add_note("tried pods: " + ", ".join(e.netloc(port) for e in self.tried))
        return exc

    def exhausted(self) -> httpx.TransportError:
        """No pod left to try: the last pod's error says more than "none left"."""
        assert self.last_error is not None
        return self.noted(self.last_error)


def resolution_failed(request: httpx.Request, exc: Exception) -> httpx.ConnectError:
    """Resolver errors as httpx's own, so ``except httpx.TransportError`` keeps working."""
    error = httpx.ConnectError(f"{request.url.host}: {exc}", request=request)
    error.__cause__ = exc
    return error


T = TypeVar("T")


def shard_limits(limits: httpx.Limits, *, http2: bool = False) -> list[httpx.Limits]:
    """A pod's ``limits`` split across its shards; the shards' limits add up to the pod's.

    Sized so that each shard keeps at most ``SHARD_CONNECTIONS`` connections alive. Earlier
    shards get the remainder, so no shard allows fewer connections than a later one. With
    HTTP/2 the pool stays whole: requests share one multiplexed connection per pod.
    """
    if http2:
        return [limits]
    sized_by = [n for n in (limits.max_connections, limits.max_keepalive_connections) if n]
    count = -(-min(sized_by) // SHARD_CONNECTIONS) if sized_by else UNLIMITED_SHARDS

    def share(total: int | None, index: int) -> int | None:
        return None if total is None else total // count + (index < total % count)

    return [
        httpx.Limits(
            max_connections=share(limits.max_connections, index),
            max_keepalive_connections=share(limits.max_keepalive_connections, index),
            keepalive_expiry=limits.keepalive_expiry,
        )
        for index in range(count)
    ]


@dataclass(slots=True, eq=False)
class PoolShard(Generic[T]):
    """One httpcore pool of a pod's connections, and the requests it is serving right now."""

    pod: PodPool[T]
    transport: T
    in_flight: int = 0
    idle_since: float = 0.0
    """When its last request in flight ended (kept only while the pod has other shards)."""


@dataclass(slots=True, eq=False)
class PodPool(Generic[T]):
    """One pod's connections, in shards opened as concurrency grows, and its requests in flight."""

    key: PoolKey
    shards: list[PoolShard[T]] = field(default_factory=list)
    in_flight: int = 0
    retired: bool = False
    closed: bool = False

    def transports(self) -> list[T]:
        return [shard.transport for shard in self.shards]


_in_flight = attrgetter("in_flight")
_NOTHING_TO_CLOSE: tuple[()] = ()


class Router(Generic[T]):
    """Routes by host, keeps one pool per (pod IP, port, TLS name), retires pools of gone pods.

    A pod's pool is sharded (``shards``: each shard's limits, in opening order): a request
    goes to the shard with the fewest requests in flight, and a new shard opens only when
    every open one is busy, so one client at a time reuses a single connection. Since earlier
    shards never allow fewer connections than later ones, a request waits for a connection
    only when every shard is at its limit. When traffic falls, the last shards go unused and
    httpcore, which expires idle connections only when their own pool is used, would keep
    them open; so a shard idle for ``keepalive_expiry`` (every connection it holds has
    expired) is closed the next time the pod's pool is used, last shard first, as httpcore
    closes expired connections. A pool whose pod left the set is closed once its in-flight
    requests have finished. The ``lock`` guards the bookkeeping; the async transport passes a
    no-op one. ``ports`` as ``port_rules()`` gives them.
    """

    def __init__(
        self,
        matches: Callable[[str], bool],
        ports: Mapping[str, str],
        srv_from_scheme: bool,
        new_shard: Callable[[httpx.Limits], T],
        shards: Sequence[httpx.Limits],
        lock: AbstractContextManager[object],
    ) -> None:
        self._matches = matches
        self._ports = ports
        self._srv_from_scheme = srv_from_scheme
        self._new_shard = new_shard
        self._shard_limits = shards
        self._shard_expiry = shards[0].keepalive_expiry if len(shards) > 1 else None
        self._lock = lock
        self._routes: dict[tuple[str, str, int | None], Route | None] = {}
        self._pools: dict[PoolKey, PodPool[T]] = {}

    def route(self, url: httpx.URL) -> Route | None:
        """The route for a URL, or None to pass it through; cached per (scheme, host, port)."""
        key = (url.scheme, url.host, url.port)
        try:
            return self._routes[key]
        except KeyError:
            pass
        route = self._new_route(*key)
        with self._lock:
            if len(self._routes) >= _ROUTE_CACHE_SIZE:  # many pass-through hosts
                self._routes = {k: r for k, r in self._routes.items() if r is not None}
            return self._routes.setdefault(key, route)

    def _new_route(self, scheme: str, host: str, port: int | None) -> Route | None:
        if not host or not self._matches(host):
            return None
        port_name = None
        if port is None:
            port_name = self._ports.get(host)
            if port_name is None and self._srv_from_scheme:
                port_name = scheme
        default_port = port if port is not None else DEFAULT_PORTS.get(scheme, 80)
        return Route(host, port_name, default_port)

    def update(self, route: Route, endpoints: EndpointSet) -> list[T]:
        """Record a new set for the route; returns transports to close now (gone and idle)."""
        members = frozenset((key[0], key[1]) for key in map(route.pool_key, endpoints))
        with self._lock:
            if endpoints.version == route.version:
                return []
            gone = route.members - members
            route.version, route.members = endpoints.version, members
            for ip, port in members:
                pool = self._pools.get((ip, port, route.host))
                if pool is not None:
                    pool.retired = False
            if not gone:
                return []
            still_used = {
                member
                for other in self._routes.values()
                if other is not None and other is not route and other.host == route.host
                for member in other.members
            }
            to_close: list[T] = []
            for ip, port in gone - still_used:
                pool = self._pools.get((ip, port, route.host))
                if pool is None:
                    continue
                pool.retired = True
                if pool.in_flight == 0:
                    to_close += self._forget(pool)
            return to_close

    def checkout(self, route: Route, endpoint: Endpoint) -> PoolShard[T]:
        """A shard of the pod's pool, opened on demand, with this request counted in flight."""
        key = route.pool_key(endpoint)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = PodPool(key)
            shards = pool.shards
            shard = min(shards, key=_in_flight) if shards else None
            if shard is None or (shard.in_flight and len(shards) < len(self._shard_limits)):
                shard = PoolShard(pool, self._new_shard(self._shard_limits[len(shards)]))
                shards.append(shard)
            shard.in_flight += 1
            pool.in_flight += 1
            return shard

    def checkin(self, shard: PoolShard[T]) -> Sequence[T]:
        """The request has finished; returns the transports the caller must now close."""
        pool = shard.pod
        with self._lock:
            shard.in_flight -= 1
            pool.in_flight -= 1
            if pool.retired and pool.in_flight == 0 and not pool.closed:
                return self._forget(pool)
            if len(pool.shards) > 1 and self._shard_expiry is not None:
                return self._prune(pool.shards, shard, self._shard_expiry)
            return _NOTHING_TO_CLOSE

    @staticmethod
    def _prune(shards: list[PoolShard[T]], done: PoolShard[T], expiry: float) -> Sequence[T]:
        """Drop the pod's last shards while idle for ``expiry``; returns them to close."""
        now = time.monotonic()
        if done.in_flight == 0:
            done.idle_since = now
        expired: list[T] = []
        while len(shards) > 1:
            last = shards[-1]
            if last.in_flight or now - last.idle_since < expiry:
                break
            shards.pop()
            expired.append(last.transport)
        return expired or _NOTHING_TO_CLOSE

    def _forget(self, pool: PodPool[T]) -> list[T]:
        pool.closed = True
        if self._pools.get(pool.key) is pool:
            del self._pools[pool.key]
        return pool.transports()

    def pool_keys(self) -> list[PoolKey]:
        """Keys of the open pools (for inspection and tests)."""
        with self._lock:
            return list(self._pools)

    def close_all(self) -> list[T]:
        """Forget every pool and return their transports for the caller to close."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
            self._routes.clear()
        for pool in pools:
            pool.closed = True
        return [transport for pool in pools for transport in pool.transports()]
