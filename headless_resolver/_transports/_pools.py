"""Per-pod connection pools: one per (pod IP, port, TLS name), sharded, closed once unused.

Free of I/O: every method that ends a pool's life returns the pod transports for the caller
to close, by awaiting or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Generic, TypeVar

import httpx

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._transports._routes import PoolKey, Route, Routes

T = TypeVar("T")

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)
"""A ``socket.setsockopt`` argument tuple, as httpx's ``socket_options`` take them."""
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own defaults; with one pool per pod they apply to each pod."""
SHARD_CONNECTIONS = 8
"""Connections kept alive per httpcore pool. Its bookkeeping walks every pooled connection
(polling each idle one's socket) when a request starts and when it ends, so the cost of a
request grows with the pool; a pod's connections are therefore split across several pools."""
UNLIMITED_SHARDS = 8
"""Shards per pod when neither connections nor keep-alive are limited."""


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


class PodPools(Generic[T]):
    """One pool per (pod IP, port, TLS name); pools of pods that left are closed once idle.

    A pod's pool is sharded (``shards``: each shard's limits, in opening order): a request
    goes to the shard with the fewest requests in flight, and a new shard opens only when
    every open one is busy, so one client at a time reuses a single connection. Since earlier
    shards never allow fewer connections than later ones, a request waits for a connection
    only when every shard is at its limit. When traffic falls, the last shards go unused and
    httpcore, which expires idle connections only when their own pool is used, would keep
    them open; so a shard idle for ``keepalive_expiry`` (every connection it holds has
    expired) is closed the next time the pod's pool is used, last shard first, as httpcore
    closes expired connections. A pool whose pod left the set is closed once its in-flight
    requests have finished. ``new_shard`` makes a pod transport for a key with the given
    limits (the per-pod engine); ``lock`` guards the bookkeeping (the async transport passes
    a no-op one) and must be the one ``routes`` uses.
    """

    def __init__(
        self,
        routes: Routes,
        new_shard: Callable[[PoolKey, httpx.Limits], T],
        shards: Sequence[httpx.Limits],
        lock: AbstractContextManager[object],
    ) -> None:
        self._routes = routes
        self._new_shard = new_shard
        self._shard_limits = shards
        self._shard_expiry = shards[0].keepalive_expiry if len(shards) > 1 else None
        self._lock = lock
        self._pools: dict[PoolKey, PodPool[T]] = {}

    def update(self, route: Route, endpoints: EndpointSet) -> list[T]:
        """Record a new set for the route; returns transports to close now (gone and idle).

        Who left is the sets' own diff (``EndpointSet.diff``); a pod stays while its address
        is still in this set (under another hostname) or in another route to the same host.
        """
        with self._lock:
            if endpoints.version == route.version:
                return []
            added, removed = route.endpoints.diff(endpoints)
            route.endpoints, route.version = endpoints, endpoints.version
            for endpoint in added:
                pool = self._pools.get(route.pool_key(endpoint))
                if pool is not None:
                    pool.retired = False
            if not removed:
                return []
            gone = {route.pool_key(endpoint) for endpoint in removed}
            gone.difference_update(map(route.pool_key, endpoints))
            for other in self._routes.sharing_host(route):
                gone.difference_update(map(other.pool_key, other.endpoints))
            to_close: list[T] = []
            for key in gone:
                pool = self._pools.get(key)
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
                shard = PoolShard(pool, self._new_shard(key, self._shard_limits[len(shards)]))
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

    def keys(self) -> list[PoolKey]:
        """Keys of the open pools (for inspection and tests)."""
        with self._lock:
            return list(self._pools)

    def close_all(self) -> list[T]:
        """Forget every pool and every route; returns their transports for the caller to close."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        self._routes.clear()
        for pool in pools:
            pool.closed = True
        return [transport for pool in pools for transport in pool.transports()]
