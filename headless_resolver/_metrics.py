"""Observability: figures counted in plain records, snapshotted as dataclasses, exported
through OpenTelemetry.

The hot path only increments attributes of plain per-name and per-pod records. ``stats()``
copies them into frozen dataclasses; OpenTelemetry reads the same records through observable
instruments when a reader collects. So the snapshot and the metrics agree, a request costs
OpenTelemetry a single histogram record (the HTTP semantic conventions'
``http.client.request.duration``, per service), and per-pod series end with the pod: a
callback reports only the records that exist, a pod's record is dropped when the pod leaves
its set (its counts fold into the service's), and the next collection no longer carries it.
Synchronous instruments cannot do that: the SDK keeps every attribute set it has seen.

OpenTelemetry allows one instrument per name and meter provider, so instruments are created
once per provider and shared: their callbacks read every live resolver and transport that
was given that provider (held weakly, so a forgotten client is not kept alive by its meter).
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple

from opentelemetry import metrics as otel
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._verdict import Verdict

PREFIX = "headless_resolver"

# Attribute keys: OpenTelemetry's semantic conventions where one fits, else under PREFIX.
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
PEER_ADDRESS = "network.peer.address"
PEER_PORT = "network.peer.port"
METHOD = "http.request.method"
STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"
NAME = f"{PREFIX}.name"
POD = f"{PREFIX}.pod"
STRATEGY = f"{PREFIX}.strategy"
OUTCOME = f"{PREFIX}.outcome"
REASON = f"{PREFIX}.reason"
CHANGE = f"{PREFIX}.change"

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
"""The semantic conventions' advice for ``http.client.request.duration``."""

CLIENT = "client"

RECENT_CHANGES = 10
"""Set changes remembered per name, for ``stats()`` and ``headless-resolver top``."""


OUTCOMES: dict[Verdict, str] = {
    Verdict.OK: "ok",
    Verdict.FAILING_STATUS: "failing_status",
    Verdict.TIMEOUT: "timeout",
    Verdict.CONNECT_FAILURE: "connect_failure",
    Verdict.BODY_CUT_SHORT: "body_cut_short",
    Verdict.NOT_THE_PODS: CLIENT,
}
"""The ``outcome`` attribute of each verdict: the judge's words, snake_cased; ``client`` for
what was the client's own doing (never held against the pod)."""


class Instrument(NamedTuple):
    """One metric as the README lists it."""

    name: str
    kind: str
    unit: str
    attributes: tuple[str, ...]
    meaning: str


_SERVICE_ATTRS = (SERVER_ADDRESS, SERVER_PORT, STRATEGY)
_POD_ATTRS = (PEER_ADDRESS, PEER_PORT, POD)

INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(
        "http.client.request.duration",
        "Histogram",
        "s",
        (SERVER_ADDRESS, SERVER_PORT, METHOD, STATUS, ERROR_TYPE),
        "each attempt on a pod, to the response headers (semantic conventions; per service)",
    ),
    Instrument(
        f"{PREFIX}.endpoint.requests",
        "ObservableCounter",
        "{request}",
        _SERVICE_ATTRS + _POD_ATTRS,
        "attempts started on a pod",
    ),
    Instrument(
        f"{PREFIX}.endpoint.in_flight",
        "ObservableUpDownCounter",
        "{request}",
        _SERVICE_ATTRS + _POD_ATTRS,
        "attempts on a pod under way: until the error, or until the response body is received "
        "whole or closed",
    ),
    Instrument(
        f"{PREFIX}.endpoint.outcomes",
        "ObservableCounter",
        "{request}",
        (*_SERVICE_ATTRS, *_POD_ATTRS, OUTCOME),
        "attempts ended, by verdict: " + ", ".join(OUTCOMES.values()),
    ),
    Instrument(
        f"{PREFIX}.endpoint.request_time",
        "ObservableCounter",
        "s",
        _SERVICE_ATTRS + _POD_ATTRS,
        "seconds spent waiting for response headers; / outcomes = a pod's mean latency",
    ),
    Instrument(
        f"{PREFIX}.endpoint.latency_estimate",
        "ObservableGauge",
        "s",
        _SERVICE_ATTRS + _POD_ATTRS,
        "the strategy's latency estimate of a pod (LeastLatency's peak EWMA); per pod only",
    ),
    Instrument(
        f"{PREFIX}.endpoint.ejected",
        "ObservableUpDownCounter",
        "{endpoint}",
        _SERVICE_ATTRS + _POD_ATTRS,
        "pods ejected by passive health right now (1 or 0 per pod)",
    ),
    Instrument(
        f"{PREFIX}.endpoint.slow_start",
        "ObservableUpDownCounter",
        "{endpoint}",
        _SERVICE_ATTRS + _POD_ATTRS,
        "pods in slow start right now (1 or 0 per pod), with a strategy's slow_start on",
    ),
    Instrument(
        f"{PREFIX}.endpoint.ejections",
        "ObservableCounter",
        "{ejection}",
        (*_SERVICE_ATTRS, *_POD_ATTRS, REASON),
        "ejections by reason: connect_failures (refused, reset, body cut short),"
        " status_failures (failing statuses, timeouts), latency_outlier",
    ),
    Instrument(
        f"{PREFIX}.endpoint.readmissions",
        "ObservableCounter",
        "{readmission}",
        (*_SERVICE_ATTRS, *_POD_ATTRS, REASON),
        "ejected pods taken back, by reason: ejection_expired",
    ),
    Instrument(
        f"{PREFIX}.retries",
        "ObservableCounter",
        "{retry}",
        _SERVICE_ATTRS,
        "attempts moved to another pod after a failed one",
    ),
    Instrument(
        f"{PREFIX}.dns.queries",
        "ObservableCounter",
        "{query}",
        (NAME,),
        "DNS queries sent (each record type, each attempt)",
    ),
    Instrument(
        f"{PREFIX}.dns.failures",
        "ObservableCounter",
        "{lookup}",
        (NAME, ERROR_TYPE),
        "lookups of the name that failed after every attempt, by the last one's reason:"
        " TIMEOUT, SERVFAIL, REFUSED, NETWORK, ...",
    ),
    Instrument(
        f"{PREFIX}.dns.negative_answers",
        "ObservableCounter",
        "{answer}",
        (NAME,),
        "lookups DNS answered with NXDOMAIN or no records",
    ),
    Instrument(
        f"{PREFIX}.dns.refresh.duration",
        "Histogram",
        "s",
        (NAME, ERROR_TYPE),
        "one lookup of a name, all its queries and retries",
    ),
    Instrument(
        f"{PREFIX}.dns.since_last_answer",
        "ObservableGauge",
        "s",
        (NAME,),
        "seconds since DNS last answered for the name (records or a negative answer)",
    ),
    Instrument(
        f"{PREFIX}.stale_served",
        "ObservableCounter",
        "{lookup}",
        (NAME,),
        "lookups answered with the last good set while DNS was failing",
    ),
    Instrument(
        f"{PREFIX}.endpoints",
        "ObservableUpDownCounter",
        "{endpoint}",
        (NAME,),
        "endpoints in the name's current set",
    ),
    Instrument(
        f"{PREFIX}.endpoint_changes",
        "ObservableCounter",
        "{endpoint}",
        (NAME, CHANGE),
        "endpoints added to or removed from the set",
    ),
)


# -- snapshots ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetChange:
    """One change of a name's set: when (seconds ago at snapshot time), who came and went."""

    ago: float
    added: tuple[Endpoint, ...]
    removed: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class NameStats:
    """What the resolver knows about one name, at one moment.

    ``joined`` maps each current endpoint to the seconds since it entered the set (since the
    resolver first saw it). ``since_last_answer`` is None before any answer.
    """

    name: str
    endpoints: tuple[Endpoint, ...]
    joined: Mapping[Endpoint, float]
    version: int
    ttl_left: float
    stale: bool
    queries: int
    failures: Mapping[str, int]
    """Lookups that failed after every attempt, by the last attempt's reason (``TIMEOUT``...)."""
    negative_answers: int
    stale_served: int
    refreshes: int
    last_refresh_s: float | None
    added: int
    removed: int
    recent_changes: tuple[SetChange, ...]
    since_last_answer: float | None


@dataclass(frozen=True, slots=True)
class PodStats:
    """One pod as the transport saw it: attempts, outcomes, time, health."""

    endpoint: Endpoint
    requests: int
    in_flight: int
    outcomes: Mapping[str, int]
    request_time_s: float
    ejected: bool
    ejections: Mapping[str, int]
    readmissions: int
    latency_estimate_s: float | None
    probes: int = 0
    """Active probe requests sent to it (``LeastLatency(probe=...)``): not in ``requests``."""

    @property
    def mean_latency_s(self) -> float | None:
        ended = sum(n for o, n in self.outcomes.items() if o != CLIENT)
        return self.request_time_s / ended if ended else None


@dataclass(frozen=True, slots=True)
class ServiceStats:
    """One service behind the transport; totals include pods that have since left."""

    name: str
    address: str
    requests: int
    in_flight: int
    outcomes: Mapping[str, int]
    retries: int
    ejections: Mapping[str, int]
    pods: tuple[PodStats, ...]


@dataclass(frozen=True, slots=True)
class TransportStats:
    """Every service the transport has sent requests to, by the host written in the URL."""

    services: Mapping[str, ServiceStats] = field(default_factory=dict)

    def __getitem__(self, host: str) -> ServiceStats:
        return self.services[host]


# -- the shared instruments -----------------------------------------------------------------


def _library_version() -> str:
    try:
        return version("headless-resolver")
    except PackageNotFoundError:
        return "0"


class _Instruments:
    """The instruments of one meter provider, reading every recorder registered with it."""

    def __init__(self, provider: MeterProvider) -> None:
        self.resolvers: weakref.WeakSet[ResolverRecorder] = weakref.WeakSet()
        self.transports: weakref.WeakSet[TransportRecorder] = weakref.WeakSet()
        meter = provider.get_meter(PREFIX, _library_version())
        specs = {i.name: i for i in INSTRUMENTS}

        def make(name: str, read: Callable[[Any], Iterable[Observation]], many: str) -> None:
            spec = specs[name]
            sources: weakref.WeakSet[Any] = getattr(self, many)

            def callback(options: CallbackOptions) -> Iterator[Observation]:
                for source in list(sources):
                    yield from read(source)

            create = {
                "ObservableCounter": meter.create_observable_counter,
                "ObservableUpDownCounter": meter.create_observable_up_down_counter,
                "ObservableGauge": meter.create_observable_gauge,
            }[spec.kind]
            create(name, callbacks=[callback], unit=spec.unit, description=spec.meaning)

        self.request_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description=specs["http.client.request.duration"].meaning,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.refresh_duration = meter.create_histogram(
            f"{PREFIX}.dns.refresh.duration",
            unit="s",
            description=specs[f"{PREFIX}.dns.refresh.duration"].meaning,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        t, r = "transports", "resolvers"
        make(f"{PREFIX}.endpoint.requests", TransportRecorder.observe_requests, t)
        make(f"{PREFIX}.endpoint.in_flight", TransportRecorder.observe_in_flight, t)
        make(f"{PREFIX}.endpoint.outcomes", TransportRecorder.observe_outcomes, t)
        make(f"{PREFIX}.endpoint.request_time", TransportRecorder.observe_request_time, t)
        make(f"{PREFIX}.endpoint.latency_estimate", TransportRecorder.observe_estimates, t)
        make(f"{PREFIX}.endpoint.ejected", TransportRecorder.observe_ejected, t)
        make(f"{PREFIX}.endpoint.slow_start", TransportRecorder.observe_warming, t)
        make(f"{PREFIX}.endpoint.ejections", TransportRecorder.observe_ejections, t)
        make(f"{PREFIX}.endpoint.readmissions", TransportRecorder.observe_readmissions, t)
        make(f"{PREFIX}.retries", TransportRecorder.observe_retries, t)
        make(f"{PREFIX}.dns.queries", ResolverRecorder.observe_queries, r)
        make(f"{PREFIX}.dns.failures", ResolverRecorder.observe_failures, r)
        make(f"{PREFIX}.dns.negative_answers", ResolverRecorder.observe_negative, r)
        make(f"{PREFIX}.dns.since_last_answer", ResolverRecorder.observe_answer_age, r)
        make(f"{PREFIX}.stale_served", ResolverRecorder.observe_stale, r)
        make(f"{PREFIX}.endpoints", ResolverRecorder.observe_sizes, r)
        make(f"{PREFIX}.endpoint_changes", ResolverRecorder.observe_changes, r)


_by_provider: weakref.WeakKeyDictionary[MeterProvider, _Instruments] = weakref.WeakKeyDictionary()
_global: list[_Instruments] = []
_by_provider_lock = threading.Lock()


def _instruments(provider: MeterProvider | None) -> _Instruments:
    """The shared instruments of ``provider``; None: the global one, as set now or later.

    The global provider's instruments are made once, on whatever it is then: before the
    application sets one, that is the API's proxy, which forwards to the provider set later.
    Making them again on the provider set later would register every name twice with it,
    and the SDK keeps only the first registration's callbacks.
    """
    with _by_provider_lock:
        if provider is None or provider is otel.get_meter_provider():
            if not _global:
                _global.append(_Instruments(otel.get_meter_provider()))
            return _global[0]
        instruments = _by_provider.get(provider)
        if instruments is None:
            instruments = _by_provider[provider] = _Instruments(provider)
        return instruments


# -- resolver -------------------------------------------------------------------------------


class _NameRecord:
    __slots__ = (
        "added",
        "answered_at",
        "attrs",
        "changes",
        "failures",
        "joined",
        "last_refresh_s",
        "name",
        "negative_answers",
        "queries",
        "refreshes",
        "removed",
        "size",
        "stale_served",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.attrs = {NAME: name.rstrip(".")}
        self.queries = 0
        self.failures: dict[str, int] = {}
        self.negative_answers = 0
        self.stale_served = 0
        self.refreshes = 0
        self.last_refresh_s: float | None = None
        self.size = 0
        self.added = 0
        self.removed = 0
        self.joined: dict[Endpoint, float] = {}
        self.changes: deque[tuple[float, tuple[Endpoint, ...], tuple[Endpoint, ...]]] = deque(
            maxlen=RECENT_CHANGES
        )
        self.answered_at: float | None = None


_refreshing: contextvars.ContextVar[_NameRecord | None] = contextvars.ContextVar(
    "headless_resolver_refreshing", default=None
)


class ResolverRecorder:
    """The resolver's figures per name: DNS queries, failures, answers, set changes.

    The resolver calls these hooks where the events happen; a name's record lives as long as
    the name's cache entry (``forget`` on eviction), so series are bounded by ``max_entries``.
    Queries are attributed to the name whose refresh sent them (a context variable), so SRV
    target lookups count for the SRV name.
    """

    def __init__(
        self, meter_provider: MeterProvider | None = None, *, clock: Callable[[], float]
    ) -> None:
        self._clock = clock
        self._names: dict[str, _NameRecord] = {}
        self._instruments = _instruments(meter_provider)
        self._refresh_duration = self._instruments.refresh_duration
        self._instruments.resolvers.add(self)

    def close(self) -> None:
        """Stop reporting: the next collection has none of this resolver's series."""
        self._instruments.resolvers.discard(self)

    # hooks

    def record(self, name: str) -> _NameRecord:
        record = self._names.get(name)
        if record is None:
            record = self._names[name] = _NameRecord(name)
        return record

    def forget(self, name: str) -> None:
        self._names.pop(name, None)

    def refreshing(self, name: str) -> _NameRecord:
        """A refresh of ``name`` starts in this task: its queries count for ``name``."""
        record = self.record(name)
        record.refreshes += 1
        _refreshing.set(record)
        return record

    @staticmethod
    def query() -> None:
        record = _refreshing.get()
        if record is not None:
            record.queries += 1

    def answered(
        self, name: str, before: EndpointSet, after: EndpointSet, *, negative: bool
    ) -> None:
        """The source answered for ``name`` (records, or a negative answer when ``negative``);
        its set went from ``before`` to ``after``. Pulled or pushed alike."""
        record = self.record(name)
        now = self._clock()
        record.answered_at = now
        if negative:
            record.negative_answers += 1
        self._moved(record, before, after, now)

    def failed(self, name: str, reason: str | None, current: EndpointSet) -> None:
        """A lookup of ``name`` failed after every attempt, for ``reason`` (the last one's)."""
        record = self.record(name)
        key = reason or "OTHER"
        record.failures[key] = record.failures.get(key, 0) + 1
        self._moved(record, current, current, self._clock())

    def refresh_took(self, record: _NameRecord, seconds: float, reason: str | None) -> None:
        """One refresh (all its queries and retries) took ``seconds``; ``reason`` if it failed."""
        record.last_refresh_s = seconds
        attrs = record.attrs if reason is None else {**record.attrs, ERROR_TYPE: reason}
        self._refresh_duration.record(seconds, attrs)

    def stale_served(self, name: str) -> None:
        self.record(name).stale_served += 1

    def _moved(
        self, record: _NameRecord, before: EndpointSet, after: EndpointSet, now: float
    ) -> None:
        record.size = len(after.members)
        if not record.joined and after.members:  # the first set: nothing "changed"
            record.joined = dict.fromkeys(after.members, now)
            return
        added = after.members - record.joined.keys()
        removed = record.joined.keys() - after.members
        if not (added or removed):
            return
        for endpoint in removed:
            del record.joined[endpoint]
        for endpoint in added:
            record.joined[endpoint] = now
        record.added += len(added)
        record.removed += len(removed)
        record.changes.append((now, tuple(added), tuple(removed)))

    # snapshot

    def stats(self, name: str, current: EndpointSet) -> NameStats:
        now = self._clock()
        record = self.record(name)
        return NameStats(
            name=name,
            endpoints=current.endpoints,
            joined={e: now - record.joined.get(e, now) for e in current.endpoints},
            version=current.version,
            ttl_left=max(0.0, current.expires_at - now),
            stale=current.stale,
            queries=record.queries,
            failures=dict(record.failures),
            negative_answers=record.negative_answers,
            stale_served=record.stale_served,
            refreshes=record.refreshes,
            last_refresh_s=record.last_refresh_s,
            added=record.added,
            removed=record.removed,
            recent_changes=tuple(
                SetChange(now - at, added, removed) for at, added, removed in record.changes
            ),
            since_last_answer=None if record.answered_at is None else now - record.answered_at,
        )

    # OpenTelemetry callbacks

    def _records(self) -> list[_NameRecord]:
        return list(self._names.values())

    def observe_queries(self) -> Iterator[Observation]:
        for r in self._records():
            yield Observation(r.queries, r.attrs)

    def observe_failures(self) -> Iterator[Observation]:
        for r in self._records():
            for reason, count in list(r.failures.items()):
                yield Observation(count, {**r.attrs, ERROR_TYPE: reason})

    def observe_negative(self) -> Iterator[Observation]:
        for r in self._records():
            yield Observation(r.negative_answers, r.attrs)

    def observe_stale(self) -> Iterator[Observation]:
        for r in self._records():
            yield Observation(r.stale_served, r.attrs)

    def observe_answer_age(self) -> Iterator[Observation]:
        now = self._clock()
        for r in self._records():
            if r.answered_at is not None:
                yield Observation(now - r.answered_at, r.attrs)

    def observe_sizes(self) -> Iterator[Observation]:
        for r in self._records():
            yield Observation(r.size, r.attrs)

    def observe_changes(self) -> Iterator[Observation]:
        for r in self._records():
            yield Observation(r.added, {**r.attrs, CHANGE: "added"})
            yield Observation(r.removed, {**r.attrs, CHANGE: "removed"})


# -- transport ------------------------------------------------------------------------------


class _Tally:
    """Counts of one pod, or of the pods that have left a service."""

    __slots__ = (
        "ejections",
        "in_flight",
        "outcomes",
        "probes",
        "readmissions",
        "request_time",
        "requests",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.probes = 0
        self.in_flight = 0
        self.outcomes: dict[str, int] = {}
        self.request_time = 0.0
        self.ejections: dict[str, int] = {}
        self.readmissions: dict[str, int] = {}

    def add(self, other: _Tally) -> None:
        self.requests += other.requests
        self.probes += other.probes
        self.in_flight += other.in_flight
        self.request_time += other.request_time
        for mine, theirs in (
            (self.outcomes, other.outcomes),
            (self.ejections, other.ejections),
            (self.readmissions, other.readmissions),
        ):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count


class PodRecord(_Tally):
    """One pod of one service: what ``started`` returns and ``finished`` takes back."""

    __slots__ = ("attrs", "departing", "endpoint", "service")

    def __init__(self, service: _ServiceRecord, endpoint: Endpoint) -> None:
        super().__init__()
        self.service = service
        self.endpoint = endpoint
        self.departing = False
        """Left the set while attempts were in flight: folded away when the last one ends."""
        port = endpoint.port if endpoint.port is not None else service.port
        attrs: dict[str, str | int] = {
            **service.attrs,
            PEER_ADDRESS: endpoint.ip,
            PEER_PORT: port,
        }
        if endpoint.hostname is not None:
            attrs[POD] = endpoint.hostname
        self.attrs = attrs


class _ServiceRecord:
    __slots__ = ("address", "attrs", "departed", "durations", "name", "pods", "port", "retries")

    def __init__(self, name: str, address: str, port: int, strategy: str) -> None:
        self.name = name
        self.address = address
        self.port = port
        self.attrs: dict[str, str | int] = {
            SERVER_ADDRESS: address,
            SERVER_PORT: port,
            STRATEGY: strategy,
        }
        self.pods: dict[Endpoint, PodRecord] = {}
        self.departed = _Tally()
        self.retries = 0
        self.durations: dict[tuple[str, int | None, str | None], dict[str, str | int]] = {}

    def duration_attrs(
        self, method: str, status: int | None, error: str | None
    ) -> dict[str, str | int]:
        key = (method, status, error)
        attrs = self.durations.get(key)
        if attrs is None:
            attrs = {SERVER_ADDRESS: self.address, SERVER_PORT: self.port, METHOD: method}
            if status is not None:
                attrs[STATUS] = status
            if error is not None:
                attrs[ERROR_TYPE] = error
            if len(self.durations) < 256:  # methods x statuses x errors: bounded anyway
                self.durations[key] = attrs
        return attrs

    def depart(self, pod: PodRecord) -> None:
        """``pod`` left the set: its counts join the service's, its series end."""
        if self.pods.get(pod.endpoint) is pod:
            del self.pods[pod.endpoint]
            self.departed.add(pod)

    def total(self) -> _Tally:
        tally = _Tally()
        tally.add(self.departed)
        for pod in list(self.pods.values()):
            tally.add(pod)
        return tally


class TransportRecorder:
    """The transport's figures per service and per pod.

    Pods are kept per set: when a request sees a new version of its service's set, pods that
    left are dropped (their counts fold into the service's totals), so neither memory nor
    per-pod series outlive the pod. ``per_pod=False`` reports every instrument per service
    only, for services with thousands of pods; ``stats()`` still lists the pods.
    ``strategy`` names the strategy in the attributes; ``estimate`` reads its per-pod latency
    estimate where it has one; ``ejected`` lists the pods health has ejected now, ``warming``
    those in slow start.
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        per_pod: bool = True,
        strategy: str,
        ejected: Callable[[], frozenset[Endpoint]],
        estimate: Callable[[Endpoint], float | None] | None = None,
        warming: Callable[[], Mapping[Endpoint, float]] | None = None,
    ) -> None:
        self.per_pod = per_pod
        self._strategy = strategy
        self._ejected = ejected
        self._warming = warming
        self._estimate = estimate
        self._services: dict[str, _ServiceRecord] = {}
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()
        """Taken only to add or drop records (the sync transport's threads race for them)."""
        self._instruments = _instruments(meter_provider)
        self._request_duration = self._instruments.request_duration
        self._instruments.transports.add(self)

    def close(self) -> None:
        """Stop reporting: the next collection has none of this transport's series."""
        self._instruments.transports.discard(self)

    # hooks

    def started(
        self, endpoints: EndpointSet, endpoint: Endpoint, host: str, port: int
    ) -> PodRecord:
        """An attempt on ``endpoint``, picked from ``endpoints`` for ``host``, begins."""
        service = self._services.get(endpoints.name)
        if service is None or self._versions.get(endpoints.name) != endpoints.version:
            service = self._follow(endpoints, host, port)
        pod = service.pods.get(endpoint)
        if pod is None:
            with self._lock:
                pod = service.pods.get(endpoint)
                if pod is None:
                    pod = service.pods[endpoint] = PodRecord(service, endpoint)
        pod.requests += 1
        pod.in_flight += 1
        return pod

    def probed(self, endpoints: EndpointSet, endpoint: Endpoint, host: str, port: int) -> None:
        """An active probe of ``endpoint`` begins: not a request (its outcome is health's)."""
        service = self._services.get(endpoints.name)
        if service is None or self._versions.get(endpoints.name) != endpoints.version:
            service = self._follow(endpoints, host, port)
        with self._lock:
            pod = service.pods.get(endpoint)
            if pod is None:
                pod = service.pods[endpoint] = PodRecord(service, endpoint)
            pod.probes += 1

    def finished(
        self,
        pod: PodRecord,
        verdict: Verdict,
        seconds: float,
        method: str,
        *,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        """The attempt's ``verdict`` is in: ``status`` when the pod answered, ``error`` (an
        exception's type, or a failing status) otherwise. ``seconds``: to the response headers
        or to the failure; not counted when the verdict is not about the pod."""
        pod.in_flight -= 1
        outcome = OUTCOMES[verdict]
        pod.outcomes[outcome] = pod.outcomes.get(outcome, 0) + 1
        service = pod.service
        if pod.departing and not pod.in_flight:
            with self._lock:
                service.depart(pod)
        if verdict.about_the_pod:
            pod.request_time += seconds
            self._request_duration.record(seconds, service.duration_attrs(method, status, error))

    def retried(self, pod: PodRecord) -> None:
        """The attempt on ``pod`` failed and the request moves to another pod."""
        pod.service.retries += 1

    def ejected(self, endpoint: Endpoint, set_name: str, reason: str) -> None:
        pod = self._pod(endpoint, set_name)
        if pod is not None:
            pod.ejections[reason] = pod.ejections.get(reason, 0) + 1

    def readmitted(self, endpoint: Endpoint, set_name: str, reason: str) -> None:
        pod = self._pod(endpoint, set_name)
        if pod is not None:
            pod.readmissions[reason] = pod.readmissions.get(reason, 0) + 1

    def _pod(self, endpoint: Endpoint, set_name: str) -> PodRecord | None:
        service = self._services.get(set_name)
        return None if service is None else service.pods.get(endpoint)

    def _follow(self, endpoints: EndpointSet, host: str, port: int) -> _ServiceRecord:
        """Start or update the service's record for a new version of its set."""
        with self._lock:
            service = self._services.get(endpoints.name)
            if service is None:
                service = _ServiceRecord(endpoints.name, host, port, self._strategy)
                self._services[endpoints.name] = service
            members = endpoints.members
            for endpoint, pod in list(service.pods.items()):
                if endpoint in members:
                    pod.departing = False
                elif pod.in_flight:
                    pod.departing = True
                else:
                    service.depart(pod)
            self._versions[endpoints.name] = endpoints.version
            return service

    # snapshot

    def stats(self) -> TransportStats:
        ejected = self._ejected()
        services: dict[str, ServiceStats] = {}
        for service in list(self._services.values()):
            total = service.total()
            pods = tuple(
                PodStats(
                    endpoint=pod.endpoint,
                    requests=pod.requests,
                    in_flight=pod.in_flight,
                    outcomes=dict(pod.outcomes),
                    request_time_s=pod.request_time,
                    ejected=pod.endpoint in ejected,
                    ejections=dict(pod.ejections),
                    readmissions=sum(pod.readmissions.values()),
                    latency_estimate_s=self._estimate_of(pod.endpoint),
                    probes=pod.probes,
                )
                for pod in list(service.pods.values())
            )
            services[service.address] = ServiceStats(
                name=service.name,
                address=service.address,
                requests=total.requests,
                in_flight=total.in_flight,
                outcomes=total.outcomes,
                retries=service.retries,
                ejections=total.ejections,
                pods=pods,
            )
        return TransportStats(services)

    def _estimate_of(self, endpoint: Endpoint) -> float | None:
        return None if self._estimate is None else self._estimate(endpoint)

    # OpenTelemetry callbacks: per pod, or per service when per_pod is off

    def _tallies(self) -> Iterator[tuple[_Tally, dict[str, str | int]]]:
        for service in list(self._services.values()):
            if self.per_pod:
                for pod in list(service.pods.values()):
                    yield pod, pod.attrs
            else:
                yield service.total(), service.attrs

    def observe_requests(self) -> Iterator[Observation]:
        for tally, attrs in self._tallies():
            yield Observation(tally.requests, attrs)

    def observe_in_flight(self) -> Iterator[Observation]:
        for tally, attrs in self._tallies():
            yield Observation(tally.in_flight, attrs)

    def observe_outcomes(self) -> Iterator[Observation]:
        for tally, attrs in self._tallies():
            for outcome, count in list(tally.outcomes.items()):
                yield Observation(count, {**attrs, OUTCOME: str(outcome)})

    def observe_request_time(self) -> Iterator[Observation]:
        for tally, attrs in self._tallies():
            yield Observation(tally.request_time, attrs)

    def observe_estimates(self) -> Iterator[Observation]:
        if not self.per_pod or self._estimate is None:
            return
        for service in list(self._services.values()):
            for pod in list(service.pods.values()):
                estimate = self._estimate(pod.endpoint)
                if estimate is not None:
                    yield Observation(estimate, pod.attrs)

    def observe_ejected(self) -> Iterator[Observation]:
        return self._members(self._ejected())

    def observe_warming(self) -> Iterator[Observation]:
        return self._members({} if self._warming is None else self._warming())

    def _members(self, chosen: Collection[Endpoint]) -> Iterator[Observation]:
        """1 or 0 per pod for whether it is ``chosen``, or their count per service."""
        for service in list(self._services.values()):
            if self.per_pod:
                for pod in list(service.pods.values()):
                    yield Observation(int(pod.endpoint in chosen), pod.attrs)
            else:
                count = sum(1 for e in list(service.pods) if e in chosen)
                yield Observation(count, service.attrs)

    def observe_ejections(self) -> Iterator[Observation]:
        for tally, attrs in self._tallies():
            for reason, count in list(tally.ejections.items()):
                yield Observation(count, {**attrs, REASON: reason})

    def observe_readmissions(self) -> Iterator[Observation]:
        for tally, attrs in self._tallies():
            for reason, count in list(tally.readmissions.items()):
                yield Observation(count, {**attrs, REASON: reason})

    def observe_retries(self) -> Iterator[Observation]:
        for service in list(self._services.values()):
            yield Observation(service.retries, service.attrs)
