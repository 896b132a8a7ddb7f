"""Sticky: consistent hashing of a request key onto the endpoints.

A ring, not a Maglev table: Maglev balances perfectly, but its turn-based fill cascades when an
endpoint leaves (measured: removing 1 of 100 moves 2.7 / N of the keys, 1 of 1,000 moves
6 / N), while a ring moves exactly the departed endpoint's keys. Multi-probe lookups give the
ring Maglev-like balance without thousands of points per endpoint.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from collections.abc import Callable, Collection, Sequence
from typing import Any

from headless_resolver._endpoints import Endpoint
from headless_resolver._health import PassiveHealth
from headless_resolver._strategies._base import (
    Accept,
    BaseStrategy,
    RequestLike,
    SetTable,
    identity_order,
)
from headless_resolver._strategies._round_robin import RoundRobin

RING_POINTS_PER_ENDPOINT = 16
PROBES = 21
"""Multi-probe consistent hashing (Appleton and O'Reilly, 2015): 21 probes keep the busiest
endpoint within a few percent of the mean with only a few points per endpoint."""
WALK_LIMIT = 32
"""Ring points a probe may pass over (ejected or tried endpoints) before the pick falls back."""

_SPAN = 1 << 63
"""Ring positions are 63-bit, so a sentinel one turn later still fits an unsigned 64-bit array."""
_MASK = _SPAN - 1


class _Ring(SetTable):
    """Endpoint points on a 63-bit ring, with a bucket index for O(1) successor lookup."""

    __slots__ = ("buckets", "owners", "points", "shift")

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        super().__init__(endpoints)
        placed = sorted(
            ((point, endpoint) for endpoint in endpoints for point in ring_points(endpoint)),
            key=lambda pair: pair[0],
        )
        points = [point for point, _ in placed]
        owners = [endpoint for _, endpoint in placed]
        if placed:  # a sentinel past the end so successor scans never wrap
            points.append(points[0] + _SPAN)
            owners.append(owners[0])
        self.points = array("Q", points)
        self.owners = owners
        bits = max(1, len(placed)).bit_length()
        self.shift = 63 - bits
        buckets = []
        index = 0
        for bucket in range(1 << bits):
            start = bucket << self.shift
            while index < len(placed) and points[index] < start:
                index += 1
            buckets.append(index)
        self.buckets = array("I", buckets)


def ring_points(endpoint: Endpoint) -> list[int]:
    """The endpoint's ring positions: a function of its identity only, stable across hosts."""
    identity = "/".join(map(str, identity_order(endpoint))).encode()
    points: list[int] = []
    for block in range(RING_POINTS_PER_ENDPOINT // 8):
        digest = hashlib.blake2b(identity, digest_size=64, salt=block.to_bytes(16, "big")).digest()
        points.extend(int.from_bytes(digest[i : i + 8], "big") >> 1 for i in range(0, 64, 8))
    return points


def key_hash(key: str) -> tuple[int, int]:
    """Two hashes of the key; its probes are ``first + i * step`` on the 63-bit ring."""
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big") | 1


class Sticky(BaseStrategy[_Ring]):
    """The same key goes to the same endpoint while the set allows it.

    ``key`` is a header name or a callable returning the key of a request (``key_for``).
    Requests without a key go to ``fallback`` (default ``RoundRobin``), which shares this
    strategy's health. Multi-probe consistent hashing: each endpoint has a few points on a
    ring, each key probes the ring 21 times and takes the endpoint closest after any probe.
    Removing an endpoint moves only its own keys, adding one moves keys only to it. An
    ejected (or already tried) endpoint is stepped over exactly as if it had been removed,
    so its keys spread over their next choices and come back when it is readmitted.

    The ring is built once per set version with a bucket index, so a pick is O(1) in the set
    size. Thread safety: rings are immutable once built; picks take no lock.
    """

    def __init__(
        self,
        key: str | Callable[[RequestLike], str | None],
        *,
        fallback: BaseStrategy[Any] | None = None,
        health: PassiveHealth | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(key, str):
            if not key:
                raise ValueError("Sticky(key=...): the header name is empty")
        elif not callable(key):
            raise TypeError(f"Sticky(key=...) takes a header name or a callable, not {key!r}")
        if fallback is not None and health is not None and health is not fallback.health:
            raise ValueError("Sticky and its fallback strategy must share one PassiveHealth")
        self.fallback: BaseStrategy[Any] = (
            fallback if fallback is not None else RoundRobin(health=health, rng=rng)
        )
        super().__init__(health=self.fallback.health, rng=rng)
        self.key = key

    def __repr__(self) -> str:
        return f"Sticky(key={self.key!r}, fallback={self.fallback!r})"

    def key_for(self, request: RequestLike) -> str | None:
        if isinstance(self.key, str):
            return request.headers.get(self.key)
        value = self.key(request)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"Sticky key callable returned {type(value).__name__}, not str")
        return value

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: str | None = None,
        *,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint:
        if key is None:
            return self.fallback.pick(endpoints, exclude=exclude)
        return super().pick(endpoints, key, exclude=exclude)

    def observe(
        self, endpoint: Endpoint, latency_s: float, ok: bool, *, status: int | None = None
    ) -> None:
        self.fallback.observe(endpoint, latency_s, ok, status=status)

    def release(self, endpoint: Endpoint) -> None:
        self.fallback.release(endpoint)

    def _acquire(self, endpoint: Endpoint) -> None:
        self.fallback._acquire(endpoint)

    def _build(self, endpoints: tuple[Endpoint, ...], previous: _Ring | None) -> _Ring:
        return _Ring(endpoints)

    def _select(self, table: _Ring, key: str | None, accept: Accept | None) -> Endpoint | None:
        assert key is not None, "keyless picks go to the fallback"
        first, step = key_hash(key)
        points, buckets, shift = table.points, table.buckets, table.shift
        best_distance = _SPAN
        best_index = 0
        for _ in range(PROBES):
            probe = first & _MASK
            first += step
            index = buckets[probe >> shift]
            while points[index] < probe:
                index += 1
            if points[index] - probe < best_distance:
                best_distance = points[index] - probe
                best_index = index
        owner = table.owners[best_index]
        if accept is None or accept(owner):
            return owner
        return self._next_choice(table, key, accept)

    def _next_choice(self, table: _Ring, key: str, accept: Accept) -> Endpoint | None:
        """The choice the key would have if every unusable endpoint were removed."""
        first, step = key_hash(key)
        points, owners, buckets, shift = table.points, table.owners, table.buckets, table.shift
        size = len(points) - 1
        verdicts: dict[Endpoint, bool] = {}
        best: tuple[int, Endpoint] | None = None
        for _ in range(PROBES):
            probe = first & _MASK
            first += step
            index = buckets[probe >> shift]
            while points[index] < probe:
                index += 1
            for step_over in range(index, index + WALK_LIMIT):
                owner = owners[step_over % size]
                usable = verdicts.get(owner)
                if usable is None:
                    usable = verdicts[owner] = accept(owner)
                if usable:
                    distance = points[step_over % size] + _SPAN * (step_over // size) - probe
                    if best is None or distance < best[0]:
                        best = (distance, owner)
                    break
        return None if best is None else best[1]

    def _select_among(self, candidates: Sequence[Endpoint], key: str | None) -> Endpoint:
        ordered = sorted(candidates, key=identity_order)
        return ordered[key_hash(key or "")[0] % len(ordered)]
