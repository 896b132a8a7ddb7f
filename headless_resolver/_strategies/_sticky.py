"""Sticky: consistent hashing of a request key onto the endpoints.

A ring, not a Maglev table: Maglev balances perfectly, but its turn-based fill cascades when an
endpoint leaves (measured: removing 1 of 100 moves 2.7 / N of the keys, 1 of 1,000 moves
6 / N), while a ring moves exactly the departed endpoint's keys. Multi-probe lookups give the
ring Maglev-like balance without thousands of points per endpoint.

No stateless hash balances 100 keys per endpoint better than chance (~1.3 x the mean at the
busiest of 1,000). ``balance_factor`` adds consistent hashing with bounded loads (Mirrokni,
Thorup and Zadimoghaddam, 2016; Envoy's ``hash_balance_factor``): an endpoint already at its
share of the requests in flight passes new ones to the key's next choice.
"""

from __future__ import annotations

import hashlib
import math
import random
from array import array
from collections.abc import Callable, Collection, Sequence
from fractions import Fraction
from typing import Any

from headless_resolver._endpoints import Endpoint, member_diff
from headless_resolver._errors import InvalidArgument
from headless_resolver._health import PassiveHealth
from headless_resolver._strategies._base import (
    Accept,
    BaseStrategy,
    RequestLike,
    SetTable,
    identity_order,
)
from headless_resolver._strategies._round_robin import RoundRobin
from headless_resolver._verdict import Verdict

RING_POINTS_PER_ENDPOINT = 16
PROBES = 21
"""Multi-probe consistent hashing (Appleton and O'Reilly, 2015): 21 probes keep the busiest
endpoint within a few percent of the mean with only a few points per endpoint."""
WALK_LIMIT = 32
"""Ring points a probe may pass over (ejected or tried endpoints) before the pick falls back."""

_SPAN = 1 << 63
"""Ring positions are 63-bit, so a sentinel one turn later still fits an unsigned 64-bit array."""
_MASK = _SPAN - 1


class _Load:
    """Requests in flight to one endpoint, and the in-flight totals of the sets holding it.

    Counters are lists of ``None``: ``append`` and ``pop`` are atomic in CPython, so counting
    takes no lock. ``totals`` is replaced as a whole when set membership changes.
    """

    __slots__ = ("in_flight", "totals")

    def __init__(self) -> None:
        self.in_flight: list[None] = []
        self.totals: tuple[list[None], ...] = ()


class _Ring(SetTable):
    """Endpoint points on a 63-bit ring, with a bucket index for O(1) successor lookup.

    With bounded loads, ``loads`` holds each point's owner's load and ``total`` the set's
    requests in flight, so the bound is checked in O(1).
    """

    __slots__ = ("buckets", "loads", "owners", "points", "shift", "total")

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        super().__init__(endpoints)
        self.loads: tuple[_Load, ...] = ()
        self.total: list[None] = []
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

    With ``balance_factor`` c (> 1), a key goes to its choice unless that endpoint already has
    ``ceil(c * (T + 1) / N)`` requests in flight, T being the set's requests in flight (keyless
    ones too) and N its endpoints not ejected; then to its next choice, exactly as if the busy
    endpoints were removed, and back as soon as its endpoint drops below the bound. No endpoint
    then holds more than c x the mean, rounded up; while nothing is at the bound, every key
    stays on its choice. ``None`` (the default) is pure consistent hashing.

    The ring is built once per set version with a bucket index, so a pick is O(1) in the set
    size; the load bound adds O(1) (a running total, no sums), and a key passed on walks a
    bounded stretch of the ring, keeping its own choice if every endpoint there is busy.
    Thread safety: rings are immutable once built and load counters use atomic list
    operations, so picks take no lock; racing picks may each see room that only one of them
    gets, overshooting the bound by at most the number of concurrent pickers.

    Parameters:
        key: a header name, or a callable returning a request's key (or None).
        balance_factor: the bound c above, > 1; None (default) for pure consistent hashing.
        fallback: the strategy of requests without a key (default ``RoundRobin``).
        health, rng: as for every strategy (see ``RoundRobin``).
    """

    def __init__(
        self,
        key: str | Callable[[RequestLike], str | None],
        *,
        balance_factor: float | None = None,
        fallback: BaseStrategy[Any] | None = None,
        health: PassiveHealth | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(key, str):
            if not key:
                raise InvalidArgument("Sticky(key=...): the header name is empty")
        elif not callable(key):
            raise InvalidArgument(f"Sticky(key=...) takes a header name or a callable, not {key!r}")
        if fallback is not None and health is not None and health is not fallback.health:
            raise InvalidArgument("Sticky and its fallback strategy must share one PassiveHealth")
        self.fallback: BaseStrategy[Any] = (
            fallback if fallback is not None else RoundRobin(health=health, rng=rng)
        )
        if balance_factor is not None and (
            isinstance(balance_factor, bool)
            or not isinstance(balance_factor, int | float)
            or not (math.isfinite(balance_factor) and balance_factor > 1)
        ):
            raise InvalidArgument(f"balance_factor must be a number > 1, got {balance_factor!r}")
        super().__init__(health=self.fallback.health, rng=rng)
        self.key = key
        self.balance_factor = balance_factor
        # The factor as written (1.1 is exactly 11/10), so the bound is integer arithmetic.
        ratio = None if balance_factor is None else Fraction(str(balance_factor))
        self._bound = None if ratio is None else (ratio.numerator, ratio.denominator)
        self._loads: dict[Endpoint, _Load] = {}

    def __repr__(self) -> str:
        return (
            f"Sticky(key={self.key!r}, balance_factor={self.balance_factor!r}, "
            f"fallback={self.fallback!r})"
        )

    def key_for(self, request: RequestLike) -> str | None:
        if isinstance(self.key, str):
            return request.headers.get(self.key)
        value = self.key(request)
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"Sticky key callable returned {type(value).__name__}, not str")
        return value

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: str | None = None,
        *,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint:
        if key is None:
            endpoint = self.fallback.pick(endpoints, exclude=exclude)
        else:
            endpoint = super().pick(endpoints, key, exclude=exclude)
        if self._bound is not None:
            load = self._loads.get(endpoint)
            if load is not None:
                load.in_flight.append(None)
                for total in load.totals:
                    total.append(None)
        return endpoint

    def observe(
        self, endpoint: Endpoint, latency_s: float, ok: bool | Verdict, *, status: int | None = None
    ) -> None:
        self.fallback.observe(endpoint, latency_s, ok, status=status)
        self._unload(endpoint)

    def release(self, endpoint: Endpoint) -> None:
        self.fallback.release(endpoint)
        self._unload(endpoint)

    def in_flight(self, endpoint: Endpoint) -> int:
        """Requests in flight to ``endpoint`` as the load bound counts them (0 without one)."""
        load = self._loads.get(endpoint)
        return 0 if load is None else len(load.in_flight)

    def _unload(self, endpoint: Endpoint) -> None:
        load = self._loads.get(endpoint)
        if load is None:
            return
        try:
            load.in_flight.pop()
        except IndexError:  # counted before this endpoint's first ring was built
            return
        for total in load.totals:
            del total[-1:]

    def _acquire(self, endpoint: Endpoint) -> None:
        self.fallback._acquire(endpoint)

    def _build(self, endpoints: tuple[Endpoint, ...], previous: _Ring | None) -> _Ring:
        ring = _Ring(endpoints)
        if self._bound is not None:
            self._attach_loads(ring, previous)
        return ring

    def _attach_loads(self, ring: _Ring, previous: _Ring | None) -> None:
        """Carries the set's in-flight total over to the new ring, recounted from its members."""
        loads = self._loads
        if previous is not None:
            ring.total = total = previous.total
            joined, left = member_diff(previous.members, ring.members)
            for endpoint in left:
                load = loads.get(endpoint)
                if load is not None:
                    load.totals = tuple(other for other in load.totals if other is not total)
        else:
            total, joined = ring.total, ring.members
        for endpoint in joined:
            load = loads.get(endpoint)
            if load is None:
                load = loads[endpoint] = _Load()
            load.totals = (*load.totals, total)
        total[:] = [None] * sum(len(loads[endpoint].in_flight) for endpoint in ring.endpoints)
        ring.loads = tuple(loads[owner] for owner in ring.owners)

    def _forget(self, gone: frozenset[Endpoint]) -> None:
        for endpoint in gone:
            self._loads.pop(endpoint, None)

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
        bound = self._bound
        if bound is None:
            if accept is None or accept(owner):
                return owner
            return self._next_choice(table, key, accept)
        # in flight < ceil(c x (total + 1) / N)  <=>  in flight x N x den < num x (total + 1)
        limit = bound[0] * (len(table.total) + 1)
        scale = bound[1] * (len(table.endpoints) if accept is None else self._available(table))
        in_flight = len(table.loads[best_index].in_flight)
        if (accept is None or accept(owner)) and in_flight * scale < limit:
            return owner
        loads = self._loads

        def under_bound(endpoint: Endpoint) -> bool:
            load = loads.get(endpoint)
            return (accept is None or accept(endpoint)) and (
                load is None or len(load.in_flight) * scale < limit
            )

        chosen = self._next_choice(table, key, under_bound)
        if chosen is not None:
            return chosen
        # Every endpoint within the bounded walk is busy: the key keeps its own choice.
        return owner if accept is None else self._next_choice(table, key, accept)

    def _available(self, table: _Ring) -> int:
        """Endpoints of the set that are not ejected: the mean load is shared among these."""
        if not self.health.any_ejected:
            return len(table.endpoints)
        return max(1, len(table.endpoints) - len(table.members & self.health.ejected()))

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
