"""Passive health: eject endpoints that keep failing, readmit them after a growing timeout.

Outlier detection as Envoy does it, fed by the outcomes strategies observe instead of probes.
Optionally, a pod much slower than the rest of its set is ejected the same way.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from headless_resolver._endpoints import Endpoint, member_diff
from headless_resolver._errors import InvalidArgument
from headless_resolver._logs import health_log as logger
from headless_resolver._verdict import DEFAULT_FAILURE_STATUSES, Verdict

CONNECT_FAILURES = "connect_failures"
"""Ejected for ``consecutive_connect_failures``: refused, reset, body cut short."""
STATUS_FAILURES = "status_failures"
"""Ejected for ``consecutive_status_failures``: failing statuses and timeouts."""
LATENCY_OUTLIER = "latency_outlier"
"""Ejected by ``latency_ejection``: slower than its set's median allows."""
EJECTION_EXPIRED = "ejection_expired"


class HealthListener(Protocol):
    """Told of every ejection and readmission, with its reason (metrics, logs, a UI).

    Called with health's lock held: keep it short and never call back into health.
    """

    def ejected(self, endpoint: Endpoint, set_name: str, reason: str) -> None: ...

    def readmitted(self, endpoint: Endpoint, set_name: str, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class LatencyEjection:
    """When a pod counts as a latency outlier of its set (opt-in, off by default).

    Every ``interval`` seconds, each pod of a set with at least ``min_samples`` successful
    answers since it was last judged is judged by their mean latency: above
    ``max(factor x median, median + margin)``, the median taken over the set's judged pods
    (at least 3 of them), it is ejected like a failing pod, within the same
    ``max_ejection_percent`` budget. ``margin`` keeps fast sets from ejecting on jitter: 3 x of
    1 ms is no outlier.

    Parameters:
        factor: how many times the set's median latency makes an outlier (> 1).
        margin: seconds above the median an outlier is at least (>= 0).
        min_samples: answers a pod needs before it is judged (>= 1).
        interval: seconds between judgements of a set (> 0).
    """

    factor: float = 3.0
    margin: float = 0.010
    min_samples: int = 20
    interval: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and self.factor > 1):
            raise InvalidArgument(f"LatencyEjection(factor=...) must be > 1, got {self.factor!r}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise InvalidArgument(f"LatencyEjection(margin=...) must be >= 0, got {self.margin!r}")
        if self.min_samples < 1:
            raise InvalidArgument(
                f"LatencyEjection(min_samples=...) must be at least 1, got {self.min_samples!r}"
            )
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise InvalidArgument(
                f"LatencyEjection(interval=...) must be > 0, got {self.interval!r}"
            )

    def limit(self, median: float) -> float:
        """The mean latency above which a pod of a set with this median is an outlier."""
        return max(self.factor * median, median + self.margin)


@dataclass(slots=True)
class _Record:
    """What health remembers about one endpoint that has failed at least once."""

    connect_failures: int = 0
    status_failures: int = 0
    times_ejected: int = 0
    readmitted_at: float = 0.0


class PassiveHealth:
    """Ejects an endpoint after consecutive failures, for ``base_ejection`` x times ejected.

    Health counts ``Verdict``s, judged once by the transport (``Judge``): a refused or reset
    connection, or a body cut short, counts towards ``consecutive_connect_failures``; a
    failing status or a timeout towards ``consecutive_status_failures``; a success resets
    both; what was not the pod's doing counts for nothing. ``failure_statuses`` are the
    statuses transports judge failing when not given their own. The ejection time grows with
    each ejection, capped at ``max_ejection``, and shrinks by one step per ``base_ejection``
    spent healthy. At most ``max_ejection_percent`` of a set is ejected at once (at least one
    ejection is always allowed, and at least one endpoint is always kept). When every endpoint
    of a set is ejected anyway (the set changed under us), strategies pick among them (``panic``
    mode, as Envoy does) unless ``panic=False``, then they raise ``NoEndpointsAvailable``.

    With ``latency_ejection`` (a ``LatencyEjection``), strategies also report each successful
    answer's latency (:meth:`record_latency`) and a pod far slower than the rest of its set is
    ejected as well, with the same budget, durations and panic mode.

    Health only keeps state for endpoints of sets registered with :meth:`track`, and forgets an
    endpoint once it leaves every tracked set, so memory follows the live endpoints.

    Thread safety: :meth:`is_ejected` on a healthy endpoint is one dict lookup and takes no
    lock; every state transition (count, eject, readmit, forget) happens under one lock.

    Parameters:
        consecutive_connect_failures: refused or reset connections in a row that eject (1).
        consecutive_status_failures: answers in ``failure_statuses`` in a row that eject (5).
        failure_statuses: the statuses that count as failures (502, 503, 504).
        base_ejection: seconds of the first ejection, times the number of ejections (30).
        max_ejection: the longest ejection, in seconds (300).
        max_ejection_percent: the share of a set that may be ejected at once (50).
        panic: pick among ejected endpoints when no other is left (True).
        clock: monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        *,
        consecutive_connect_failures: int = 1,
        consecutive_status_failures: int = 5,
        failure_statuses: Collection[int] = DEFAULT_FAILURE_STATUSES,
        base_ejection: float = 30.0,
        max_ejection: float = 300.0,
        max_ejection_percent: float = 50.0,
        panic: bool = True,
        latency_ejection: LatencyEjection | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if consecutive_connect_failures < 1 or consecutive_status_failures < 1:
            raise InvalidArgument("consecutive failure thresholds must be at least 1")
        if not 0 < base_ejection <= max_ejection:
            raise InvalidArgument("need 0 < base_ejection <= max_ejection")
        if not 0 <= max_ejection_percent <= 100:
            raise InvalidArgument("max_ejection_percent must be within 0..100")
        self.consecutive_connect_failures = consecutive_connect_failures
        self.consecutive_status_failures = consecutive_status_failures
        self.failure_statuses = frozenset(failure_statuses)
        self.base_ejection = base_ejection
        self.max_ejection = max_ejection
        self.max_ejection_percent = max_ejection_percent
        self.panic = panic
        self.latency_ejection = latency_ejection
        self._clock = clock
        self._lock = threading.Lock()
        self._ejected_until: dict[Endpoint, float] = {}
        self._records: dict[Endpoint, _Record] = {}
        self._groups: dict[str, frozenset[Endpoint]] = {}
        self._group_of: dict[Endpoint, str] = {}
        self._latencies: dict[Endpoint, list[float]] = {}
        """Sum and count of the latencies since an endpoint was last judged."""
        self._judged_at: dict[str, float] = {}
        self._listeners: tuple[HealthListener, ...] = ()

    def add_listener(self, listener: HealthListener) -> None:
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: HealthListener) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    def __repr__(self) -> str:
        return f"<PassiveHealth ejected={len(self._ejected_until)} tracked={len(self._group_of)}>"

    @property
    def any_ejected(self) -> bool:
        """False in the common case, letting strategies skip every per-endpoint check."""
        return bool(self._ejected_until)

    def ejected(self) -> frozenset[Endpoint]:
        """The endpoints ejected right now."""
        now = self._clock()
        ejected = list(self._ejected_until.items())
        for endpoint, until in ejected:
            if until <= now:
                self.is_ejected(endpoint)  # readmits it, and says so
        return frozenset(ep for ep, until in ejected if until > now)

    def times_ejected(self, endpoint: Endpoint) -> int:
        record = self._records.get(endpoint)
        return 0 if record is None else record.times_ejected

    def is_ejected(self, endpoint: Endpoint) -> bool:
        until = self._ejected_until.get(endpoint)
        if until is None:
            return False
        if self._clock() < until:
            return True
        with self._lock:
            if self._ejected_until.get(endpoint) == until:
                del self._ejected_until[endpoint]
                record = self._records.get(endpoint)
                if record is not None:
                    record.readmitted_at = until
                set_name = self._group_of.get(endpoint, "")
                logger.info("%s: readmitted %s after its ejection", set_name, _label(endpoint))
                for listener in self._listeners:
                    listener.readmitted(endpoint, set_name, EJECTION_EXPIRED)
        return False

    def track(self, name: str, members: frozenset[Endpoint]) -> None:
        """Registers the current members of set ``name``; forgets endpoints that left all sets."""
        with self._lock:
            previous = self._groups.get(name, frozenset())
            self._groups[name] = members
            for endpoint in members:
                self._group_of[endpoint] = name
            _, gone = member_diff(previous, members)
            for endpoint in gone:
                home = next((n for n, g in self._groups.items() if endpoint in g), None)
                if home is not None:
                    self._group_of[endpoint] = home
                    continue
                self._group_of.pop(endpoint, None)
                self._records.pop(endpoint, None)
                self._ejected_until.pop(endpoint, None)

    def record(self, endpoint: Endpoint, verdict: Verdict) -> None:
        """Counts one attempt's verdict."""
        if verdict.broke_connection:
            self._count_failure(endpoint, connect=True)
        elif verdict is not Verdict.OK:
            if verdict.about_the_pod:
                self._count_failure(endpoint, connect=False)
        elif endpoint in self._records:
            with self._lock:
                record = self._records.get(endpoint)
                if record is not None:
                    record.connect_failures = record.status_failures = 0

    def record_latency(self, endpoint: Endpoint, latency_s: float) -> None:
        """Counts one successful answer's latency, for ``latency_ejection``; judges the
        endpoint's set when its ``interval`` is up."""
        rule = self.latency_ejection
        if rule is None:
            return
        now = self._clock()
        with self._lock:
            group_name = self._group_of.get(endpoint)
            if group_name is None:
                return
            totals = self._latencies.get(endpoint)
            if totals is None:
                totals = self._latencies[endpoint] = [0.0, 0.0]
            totals[0] += latency_s
            totals[1] += 1
            due = self._judged_at.get(group_name)
            if due is None:
                self._judged_at[group_name] = now + rule.interval
            elif now >= due:
                self._judged_at[group_name] = now + rule.interval
                self._judge_latencies(group_name, rule)

    def _judge_latencies(self, group_name: str, rule: LatencyEjection) -> None:
        """Ejects the set's latency outliers; called with the lock held."""
        group = self._groups[group_name]
        for endpoint in [ep for ep in self._latencies if ep not in self._group_of]:
            del self._latencies[endpoint]  # it left every set
        means = {}
        for endpoint in group:
            totals = self._latencies.get(endpoint)
            if totals is not None and totals[1] >= rule.min_samples:
                means[endpoint] = totals[0] / totals[1]
                del self._latencies[endpoint]  # judged: its next samples start afresh
        if len(means) < 3:
            return
        limit = rule.limit(statistics.median(means.values()))
        for endpoint in sorted(means, key=means.__getitem__, reverse=True):
            if means[endpoint] <= limit:
                break
            if endpoint in self._ejected_until:
                continue
            record = self._records.get(endpoint)
            if record is None:
                record = self._records[endpoint] = _Record()
            self._eject(endpoint, record, group_name, LATENCY_OUTLIER)

    def _count_failure(self, endpoint: Endpoint, *, connect: bool) -> None:
        with self._lock:
            group_name = self._group_of.get(endpoint)
            if group_name is None:
                return
            record = self._records.get(endpoint)
            if record is None:
                record = self._records[endpoint] = _Record()
            if connect:
                record.connect_failures += 1
                tripped = record.connect_failures >= self.consecutive_connect_failures
            else:
                record.status_failures += 1
                tripped = record.status_failures >= self.consecutive_status_failures
            if tripped and endpoint not in self._ejected_until:
                reason = CONNECT_FAILURES if connect else STATUS_FAILURES
                self._eject(endpoint, record, group_name, reason)

    def _eject(self, endpoint: Endpoint, record: _Record, group_name: str, reason: str) -> None:
        """Ejects within the set's budget; called with the lock held."""
        group = self._groups[group_name]
        size = len(group)
        budget = min(size - 1, max(1, int(size * self.max_ejection_percent / 100)))
        now = self._clock()
        ejected = sum(1 for ep, until in self._ejected_until.items() if until > now and ep in group)
        if ejected >= budget:
            return
        if record.times_ejected:
            healed = int((now - record.readmitted_at) / self.base_ejection)
            record.times_ejected = max(0, record.times_ejected - healed)
        record.times_ejected += 1
        duration = min(self.base_ejection * record.times_ejected, self.max_ejection)
        self._ejected_until[endpoint] = now + duration
        record.connect_failures = record.status_failures = 0
        logger.warning(
            "%s: ejected %s for %.0f s (%s; ejection %d)",
            group_name,
            _label(endpoint),
            duration,
            reason.replace("_", " "),
            record.times_ejected,
        )
        for listener in self._listeners:
            listener.ejected(endpoint, group_name, reason)


def _label(endpoint: Endpoint) -> str:
    pod = f" ({endpoint.hostname})" if endpoint.hostname else ""
    return f"{endpoint.netloc()}{pod}"
