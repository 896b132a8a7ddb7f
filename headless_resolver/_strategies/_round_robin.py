"""Round-robin, smooth-weighted when SRV weights differ."""

from __future__ import annotations

import bisect
import heapq
import itertools
import math

from headless_resolver._endpoints import Endpoint
from headless_resolver._strategies._base import (
    ATTEMPTS,
    Accept,
    BaseStrategy,
    SetTable,
    identity_order,
)

SCHEDULE_SLOTS_PER_ENDPOINT = 16
"""Bounds a weighted schedule's length; finer weight ratios are rounded to fit."""


class _Rotation(SetTable):
    __slots__ = ("counter", "schedule")

    def __init__(
        self,
        endpoints: tuple[Endpoint, ...],
        schedule: tuple[Endpoint, ...],
        counter: itertools.count[int],
    ) -> None:
        super().__init__(endpoints)
        self.schedule = schedule
        self.counter = counter


class RoundRobin(BaseStrategy[_Rotation]):
    """Each endpoint in turn; endpoints with a larger SRV weight take proportionally more turns.

    The turns of a weighted set are interleaved (``a b a c a``, not ``a a a b c``), precomputed
    once per set version, so a pick is O(1). Endpoints take turns in a canonical order (DNS
    shuffles records), and a new version of the set resumes the rotation at the endpoint that
    was due next (or its successor, if it left): a new pod takes its turn within one round, and
    however often the set changes, no pod is favoured or starved. Skipped turns (ejected or
    already tried endpoints) go to a random other turn, not to the next endpoint, which would
    otherwise get double traffic.

    With ``slow_start``, a pod that joins the set takes a growing fraction of its turns over
    the window (its other turns go to random other turns, like an ejected pod's).

    Thread safety: ``next()`` on an ``itertools.count`` is atomic in CPython and tables are
    immutable, so picks take no lock.

    Parameters (keyword-only, every strategy):
        health: the ``PassiveHealth`` it skips ejected endpoints by; share one to share
            ejections (default: a new one).
        rng: where skipped turns and the first turn come from; seed it in tests.
        slow_start: ``SlowStart(window=...)`` to ramp up pods that join; default off.
        clock: monotonic seconds, for slow start.
    """

    def __repr__(self) -> str:
        return f"RoundRobin(health={self.health!r})"

    def _build(self, endpoints: tuple[Endpoint, ...], previous: _Rotation | None) -> _Rotation:
        self._note_arrivals(endpoints, previous)
        schedule = weighted_schedule(endpoints)
        if previous is None or not previous.schedule or not schedule:
            start = self._rng.randrange(max(1, len(schedule)))
        else:
            upcoming = previous.schedule[next(previous.counter) % len(previous.schedule)]
            start = resume_position(schedule, endpoints, upcoming)
        return _Rotation(endpoints, schedule, itertools.count(start))

    def _select(self, table: _Rotation, key: str | None, accept: Accept | None) -> Endpoint | None:
        schedule = table.schedule
        endpoint = schedule[next(table.counter) % len(schedule)]
        if accept is None or accept(endpoint):
            return endpoint
        randrange = self._rng.randrange
        for _ in range(ATTEMPTS):
            endpoint = schedule[randrange(len(schedule))]
            if accept(endpoint):
                return endpoint
        return None


def resume_position(
    schedule: tuple[Endpoint, ...], endpoints: tuple[Endpoint, ...], upcoming: Endpoint
) -> int:
    """Where a new schedule continues: the first turn of ``upcoming`` or of its successor."""
    order = [identity_order(endpoint) for endpoint in endpoints]
    successor = endpoints[bisect.bisect_left(order, identity_order(upcoming)) % len(endpoints)]
    return schedule.index(successor)


def weighted_schedule(endpoints: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
    """One cycle of turns: the endpoints themselves, or an interleaving by weight.

    All-equal weights (including CoreDNS's ``100 // k == 0`` for k > 100) mean unweighted. A
    weight of 0 among positive weights gets the smallest share, one turn per cycle (RFC 2782:
    "a very small chance"). Turns are ordered by earliest deadline (``(k + 1/2) / weight``),
    which spreads each endpoint's turns evenly over the cycle, as smooth weighted round-robin.
    """
    weights = [endpoint.weight for endpoint in endpoints]
    if len(set(weights)) <= 1:
        return endpoints
    weights = [weight or 1 for weight in weights]
    divisor = math.gcd(*weights)
    weights = [weight // divisor for weight in weights]
    total = sum(weights)
    limit = SCHEDULE_SLOTS_PER_ENDPOINT * len(endpoints)
    if total > limit:
        weights = [max(1, round(weight * limit / total)) for weight in weights]
    deadlines = [(0.5 / weight, index, 0) for index, weight in enumerate(weights)]
    heapq.heapify(deadlines)
    turns = []
    for _ in range(sum(weights)):
        _, index, taken = deadlines[0]
        turns.append(endpoints[index])
        heapq.heapreplace(deadlines, ((taken + 1.5) / weights[index], index, taken + 1))
    return tuple(turns)
