"""The Strategy protocol and the machinery every strategy shares.

Strategies derive per-set state (a rotation, a ring) once per set version and cache it, one per
set name; a pick is then O(1) (or O(log N)) work on that state. Endpoints that health has
ejected, or that this request already tried (``exclude``), are skipped by trying a few more of
the strategy's own choices, and only then by filtering the whole set.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

from headless_resolver._endpoints import Endpoint, EndpointSet, member_diff
from headless_resolver._errors import InvalidArgument, NoEndpointsAvailable
from headless_resolver._health import PassiveHealth
from headless_resolver._strategies._slow_start import SlowStart
from headless_resolver._verdict import Verdict

ATTEMPTS = 8
"""Choices a strategy tries before it filters the whole set for usable endpoints."""

Accept = Callable[[Endpoint], bool]


class RequestLike(Protocol):
    """What ``key_for`` needs from a request (an ``httpx.Request`` fits)."""

    @property
    def headers(self) -> Mapping[str, str]: ...


@runtime_checkable
class Strategy(Protocol):
    """How a client chooses the pod for each request, and learns from the outcome."""

    health: PassiveHealth

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: str | None = None,
        *,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint:
        """An endpoint for one request; raises ``NoEndpointsAvailable`` when there is none.

        ``exclude`` holds the endpoints this request already tried. Every pick must be followed
        by exactly one ``observe`` or ``release`` of the returned endpoint.
        """
        ...

    def observe(
        self, endpoint: Endpoint, latency_s: float, ok: bool | Verdict, *, status: int | None = None
    ) -> None:
        """The outcome of a picked request, for the pod's latency and health.

        The transports pass the attempt's ``Verdict`` as ``ok`` (truthy only when the attempt
        succeeded, so a strategy may treat it as a bool); ``latency_s`` is the time to the
        answer's headers, or to the failure. Callers may pass a bool instead: ``ok=False``
        is a connection failure, or a failing status when ``status`` is given
        (``Verdict.of``). Outcomes that were not the pod's doing go to ``release``.
        """
        ...

    def release(self, endpoint: Endpoint) -> None:
        """A picked request ended without an outcome (cancelled)."""
        ...

    def key_for(self, request: RequestLike) -> str | None:
        """The request's affinity key, for strategies that have one."""
        ...


def identity_order(endpoint: Endpoint) -> tuple[str, int, str]:
    """A canonical order, so DNS record shuffling never changes derived state."""
    return (endpoint.ip, endpoint.port or 0, endpoint.hostname or "")


class SetTable:
    """State derived from one endpoint set, rebuilt when the set's version moves."""

    __slots__ = ("endpoints", "members", "name", "source", "version")

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self.endpoints = endpoints
        self.members: frozenset[Endpoint] = frozenset(endpoints)
        self.name = ""
        self.source: object = None
        self.version = -1


TableT = TypeVar("TableT", bound=SetTable)


class BaseStrategy(Generic[TableT]):
    """Shared plumbing: per-set tables, health, exclusion, panic mode.

    Subclasses implement ``_build`` (derive a table from a canonically ordered tuple) and
    ``_select`` (the strategy's choice, trying a few alternatives when ``accept`` rejects it).
    Strategies that offer ``slow_start`` call ``_note_arrivals`` from ``_build``; a warming pod
    is then accepted by a pick with the probability of its ramp, like an ejected one never is.
    """

    def __init__(
        self,
        *,
        health: PassiveHealth | None = None,
        rng: random.Random | None = None,
        slow_start: SlowStart | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.health = health if health is not None else PassiveHealth()
        self.slow_start = slow_start
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._tables: dict[str, TableT] = {}
        self._rebuild_lock = threading.Lock()
        self._warming: dict[Endpoint, float] = {}
        """When each pod still in its slow-start window joined; empty unless one is."""

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: str | None = None,
        *,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint:
        table = self._table(endpoints)
        if not table.endpoints:
            raise NoEndpointsAvailable(
                f"{table.name or 'the set'} has no endpoints", name=table.name
            )
        if exclude or self.health.any_ejected or self._warming:
            endpoint = self._pick_usable(table, key, exclude)
        else:
            chosen = self._select(table, key, None)
            assert chosen is not None, "_select accepts its first choice when accept is None"
            endpoint = chosen
        self._acquire(endpoint)
        return endpoint

    def observe(
        self, endpoint: Endpoint, latency_s: float, ok: bool | Verdict, *, status: int | None = None
    ) -> None:
        if not (latency_s >= 0 and math.isfinite(latency_s)):
            raise InvalidArgument(f"latency_s must be a finite number >= 0, got {latency_s!r}")
        verdict = ok if type(ok) is Verdict else Verdict.of(ok, status)
        success = verdict is Verdict.OK
        self._finish(endpoint, latency_s, success)
        health = self.health
        health.record(endpoint, verdict)
        if success and health.latency_ejection is not None:
            health.record_latency(endpoint, latency_s)

    def release(self, endpoint: Endpoint) -> None:
        self._release(endpoint)

    def key_for(self, request: RequestLike) -> str | None:
        return None

    # Hooks for subclasses.

    def _build(self, endpoints: tuple[Endpoint, ...], previous: TableT | None) -> TableT:
        raise NotImplementedError

    def _select(self, table: TableT, key: str | None, accept: Accept | None) -> Endpoint | None:
        raise NotImplementedError

    def _select_among(self, candidates: Sequence[Endpoint], key: str | None) -> Endpoint:
        """The choice among an explicit list; only used when most endpoints are unusable."""
        return candidates[self._rng.randrange(len(candidates))]

    def _acquire(self, endpoint: Endpoint) -> None:
        """A request to ``endpoint`` starts."""

    def _release(self, endpoint: Endpoint) -> None:
        """A request to ``endpoint`` ended."""

    def _finish(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        """A request to ``endpoint`` ended with an outcome."""
        self._release(endpoint)

    def _forget(self, gone: frozenset[Endpoint]) -> None:
        """Drop per-endpoint state of endpoints that left every set."""

    # Slow start.

    def warming(self) -> dict[Endpoint, float]:
        """The pods in slow start now, each with the fraction of its share it takes."""
        slow_start = self.slow_start
        if slow_start is None or not self._warming:
            return {}
        now = self._clock()
        return {
            endpoint: slow_start.factor(now - joined)
            for endpoint, joined in list(self._warming.items())
            if now - joined < slow_start.window
        }

    def _note_arrivals(self, endpoints: tuple[Endpoint, ...], previous: TableT | None) -> None:
        """Starts the slow-start ramp of the pods that joined since ``previous``."""
        if self.slow_start is None:
            return
        now = self._clock()
        window = self.slow_start.window
        warming = self._warming
        for endpoint, joined in list(warming.items()):
            if now - joined >= window:
                warming.pop(endpoint, None)
        if previous is None:
            return
        for endpoint in endpoints:
            if endpoint not in previous.members and endpoint not in warming:
                warming[endpoint] = now

    def _admits(self, endpoint: Endpoint) -> bool:
        """Whether a warming pod takes this request: true with its ramp's probability."""
        joined = self._warming.get(endpoint)
        if joined is None or self.slow_start is None:
            return True
        age = self._clock() - joined
        if age >= self.slow_start.window:
            self._warming.pop(endpoint, None)
            return True
        return self._rng.random() < self.slow_start.factor(age)

    # Internals.

    def _pick_usable(
        self, table: TableT, key: str | None, exclude: Collection[Endpoint]
    ) -> Endpoint:
        is_ejected = self.health.is_ejected
        warming = self._warming
        admits = self._admits

        def usable(endpoint: Endpoint) -> bool:
            return (
                endpoint not in exclude
                and not is_ejected(endpoint)
                and (endpoint not in warming or admits(endpoint))
            )

        chosen = self._select(table, key, usable)
        if chosen is not None:
            return chosen
        untried = [ep for ep in table.endpoints if ep not in exclude]
        if not untried:
            raise NoEndpointsAvailable(
                f"all {len(table.endpoints)} endpoints of {table.name or 'the set'} were tried",
                name=table.name,
            )
        healthy = [ep for ep in untried if not is_ejected(ep)]
        if healthy:
            return self._select_among(healthy, key)
        if self.health.panic:
            return self._select_among(untried, key)
        raise NoEndpointsAvailable(
            f"every endpoint of {table.name or 'the set'} is ejected", name=table.name
        )

    def _table(self, endpoints: Sequence[Endpoint]) -> TableT:
        if isinstance(endpoints, EndpointSet):
            table = self._tables.get(endpoints.name)
            if table is not None and (table.source is endpoints or _serves(table, endpoints)):
                return table
            return self._refresh(endpoints.name, endpoints, endpoints.version, endpoints)
        snapshot = tuple(endpoints)
        table = self._tables.get("")
        if table is not None and table.source == snapshot:
            return table
        return self._refresh("", snapshot, -1, snapshot)

    def _refresh(
        self, name: str, endpoints: Sequence[Endpoint], version: int, source: object
    ) -> TableT:
        ordered = tuple(sorted(frozenset(endpoints), key=identity_order))
        with self._rebuild_lock:
            previous = self._tables.get(name)
            if previous is not None and (
                _serves(previous, source)
                if isinstance(source, EndpointSet)
                else previous.source == source
            ):
                # Another thread built it while this one waited: a second build would start
                # a second rotation beside the one that thread is already picking from.
                return previous
            table = self._build(ordered, previous)
            table.name, table.version, table.source = name, version, source
            if isinstance(endpoints, EndpointSet) and endpoints.members == table.members:
                table.members = endpoints.members
            self._tables[name] = table
            self.health.track(name, table.members)
            if previous is not None:
                _, gone = member_diff(previous.members, table.members)
                for other in self._tables.values():
                    if gone and other is not table:
                        gone -= other.members
                if gone:
                    self._forget(gone)
        return table


def _serves(table: SetTable, endpoints: EndpointSet) -> bool:
    """Whether ``table`` was built for ``endpoints``' content (the same version and members);
    if so, ``endpoints`` becomes its source, so the next pick knows it by identity."""
    if table.version == endpoints.version and (
        table.members is endpoints.members or table.members == endpoints.members
    ):
        table.source = endpoints
        return True
    return False
