"""HeadlessResolver: cached, single-flight, refreshed-ahead service discovery over cluster DNS.

Name ambiguity: a two-label name ``a.b`` is either pod ``a`` of service ``b`` in our namespace
or service ``a`` in namespace ``b``. It is resolved as the Kubernetes search list would
(``a.b.<ns>.svc.<zone>`` first, then ``a.b.svc.<zone>``); the reading that answers is
remembered and from then on only that absolute name is queried and refreshed, so a steady
state costs one query per record type.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Hashable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from opentelemetry.metrics import MeterProvider
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from headless_resolver._cache import NEVER, CachePolicy, Entry, EntryStore
from headless_resolver._dns import BackendKind, DnsBackend
from headless_resolver._endpoints import EndpointSet
from headless_resolver._errors import (
    HeadlessResolverError,
    InvalidArgument,
    ResolutionError,
    ResolverClosed,
    ServiceNotFound,
)
from headless_resolver._logs import RateLimitedLog
from headless_resolver._logs import resolver_log as logger
from headless_resolver._metrics import NameStats, ResolverRecorder
from headless_resolver._names import (
    ClusterNaming,
    NameLookup,
    PortRef,
    ResolvConf,
    ServiceName,
)
from headless_resolver._sources import (
    SOURCE_KINDS,
    AutoSource,
    DnsSource,
    KubernetesSource,
    Missing,
    Outcome,
    Source,
    SourceKind,
    Target,
    Update,
)

T = TypeVar("T")

MAX_ALIASES = 8
"""Spellings of one name remembered for the hot path (``web``, ``web.ns``, the FQDN...)."""
OTHER_LOOP_POLL = 0.5
"""How often a watcher on a loop other than the one refreshing its name looks for a change."""
MAX_FAILURE_BACKOFF = 30.0
"""RFC 8767's suggested failure recheck interval: the longest wait between failed refreshes."""


@dataclass(slots=True)
class ResolverStats:
    """Counters since the resolver was created."""

    queries: int = 0
    """DNS queries sent (every attempt of every record type)."""
    cache_hits: int = 0
    negative_hits: int = 0
    """Lookups answered ServiceNotFound from a cached negative answer."""
    stale_served: int = 0
    refreshes: int = 0
    """Background refreshes started (refresh-ahead, watchers, failure retries)."""
    errors: int = 0
    """Lookups or refreshes that failed after every attempt."""


class _Name(Entry):
    """A cache entry plus what keeps it current: its query in flight, refresher and watchers."""

    __slots__ = (
        "aliases",
        "changed",
        "flight",
        "flight_waiters",
        "key",
        "loop",
        "refresher",
        "target",
        "wakeup",
        "watchers",
    )

    def __init__(self, key: Hashable, target: Target, now: float) -> None:
        super().__init__(target.name, now)
        self.key = key
        self.target = target
        self.aliases: list[Hashable] = []
        self.flight: asyncio.Task[EndpointSet] | None = None
        self.flight_waiters = 0
        self.refresher: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop that ``flight``, ``refresher``, ``wakeup`` and ``changed`` belong to."""
        self.wakeup = asyncio.Event()
        self.changed = asyncio.Event()
        self.watchers = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make the loop-bound parts belong to ``loop``; those of an ended loop are dropped
        (its tasks cannot run again, and its events would refuse a waiter on another loop)."""
        if self.loop is not loop:
            self.loop = loop
            self.flight, self.flight_waiters, self.refresher = None, 0, None
            self.wakeup = asyncio.Event()
            self.changed = asyncio.Event()

    def notify_watchers(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        if self.loop is None or self.loop is asyncio.get_running_loop():
            changed.set()
        else:  # refreshed from another thread's loop: wake the watchers on their own
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                self.loop.call_soon_threadsafe(changed.set)


class HeadlessResolver:
    """Resolves Kubernetes service names to their pods' addresses, from a cache kept fresh.

    ``resolve()`` on a cached name is a dict lookup and a clock read. Names in use are
    refreshed in the background ahead of expiry; while DNS fails the last good set is served
    flagged ``stale`` (RFC 8767). Works from any event loop: the one in use runs the background
    work, and a later loop (a second ``asyncio.run()``) takes it over. Why each default is
    what it is: README, "Options".

    Parameters:
        nameservers: ``"IP"`` or ``"IP:PORT"`` (``"[::1]:53"``); None reads ``resolv_conf``.
        backend: ``"dnspython"``, ``"aiodns"``, or an object with the ``DnsBackend`` protocol.
        namespace: of short names; default ``POD_NAMESPACE``, else resolv.conf, else default.
        cluster_domain: default from the resolv.conf search list, else ``cluster.local``.
        min_ttl, max_ttl: bounds on a record's TTL, in seconds.
        negative_ttl_cap: longest an NXDOMAIN or empty answer is cached.
        stale_ttl: how long past expiry the last good set may be served while DNS fails.
        timeout: per query, in seconds. attempts: queries per lookup (>= 1).
        clock: monotonic seconds; ``EndpointSet.expires_at`` is on this clock.
        negative_grace: how long a negative answer must persist before a non-empty set empties.
        refresh_ahead: refresh at this fraction of the TTL; None: only when found expired.
        stale_answer_timeout: how long a caller that finds its name expired waits for DNS
            before it is answered stale; None waits for the refresh.
        idle_after: names unused this long stop being refreshed.
        max_entries: names cached, least recently used evicted first.
        failure_backoff: first wait between failed refreshes (grows to the TTL, at most 30 s).
        rng: refresh jitter. resolv_conf: where unset nameservers and names come from.
        source: where endpoint sets come from: ``"dns"`` (cluster DNS), ``"kubernetes"``
            (the API's EndpointSlices, listed then watched, each change applied at once;
            configured as kubectl is, see ``KubeConfig``), ``"auto"`` (the API when it
            answers and RBAC allows, else DNS; ``source_kind`` and the logs say which), or a
            ``Source`` object (not closed by the resolver).
        zone: the client's zone, for topology-aware preference with the API source.
        meter_provider: where the per-name metrics go (OpenTelemetry); None: the global
            provider, whose instruments do nothing until an SDK is installed.

    Raises ``InvalidArgument`` for an option out of range.
    """

    def __init__(
        self,
        nameservers: Iterable[str] | None = None,
        *,
        backend: BackendKind | DnsBackend = "dnspython",
        namespace: str | None = None,
        cluster_domain: str | None = None,
        min_ttl: float = 1.0,
        max_ttl: float = 300.0,
        negative_ttl_cap: float = 30.0,
        stale_ttl: float = 300.0,
        timeout: float = 2.0,
        attempts: int = 3,
        clock: Callable[[], float] = time.monotonic,
        negative_grace: float = 10.0,
        refresh_ahead: float | None = 0.8,
        stale_answer_timeout: float | None = 1.8,
        idle_after: float = 60.0,
        max_entries: int = 1024,
        failure_backoff: float = 1.0,
        rng: random.Random | None = None,
        resolv_conf: str | os.PathLike[str] = "/etc/resolv.conf",
        source: SourceKind | Source = "dns",
        zone: str | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if not isinstance(source, str) and not hasattr(source, "fetch"):
            raise InvalidArgument(
                f"source must be one of {SOURCE_KINDS} or a Source, not {source!r}"
            )
        if isinstance(source, str) and source not in SOURCE_KINDS:
            raise InvalidArgument(f"source must be one of {SOURCE_KINDS}, not {source!r}")
        if not isinstance(attempts, int) or attempts < 1:
            raise InvalidArgument(f"attempts must be an int >= 1, not {attempts!r}")
        if not timeout > 0:
            raise InvalidArgument(f"timeout must be positive, not {timeout!r}")
        if not isinstance(max_entries, int) or max_entries < 1:
            raise InvalidArgument(f"max_entries must be an int >= 1, not {max_entries!r}")
        if not idle_after > 0 or not failure_backoff > 0:
            raise InvalidArgument("idle_after and failure_backoff must be positive")
        if stale_answer_timeout is not None and not stale_answer_timeout >= 0:
            raise InvalidArgument(
                f"stale_answer_timeout must be None or >= 0, not {stale_answer_timeout!r}"
            )
        self._policy = CachePolicy(
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            negative_ttl_cap=negative_ttl_cap,
            stale_ttl=stale_ttl,
            negative_grace=negative_grace,
            refresh_ahead=refresh_ahead,
        )
        self.stats = ResolverStats()
        self._recorder = ResolverRecorder(meter_provider, clock=clock)
        self._warnings = RateLimitedLog(logger, clock=clock)
        self._owns_source = isinstance(source, str)  # a Source given is the caller's to close
        kubernetes: KubernetesSource | None = None
        if source == "kubernetes":
            kubernetes = KubernetesSource(zone=zone, timeout=max(timeout, 5.0))
            source = kubernetes
        elif isinstance(source, KubernetesSource):
            kubernetes = source
        if namespace is None and kubernetes is not None:
            namespace = os.environ.get("POD_NAMESPACE") or kubernetes.config.namespace
        needs_dns = source in ("dns", "auto")
        conf = None
        if not (namespace and cluster_domain) or (
            needs_dns and nameservers is None and isinstance(backend, str)
        ):
            conf = ResolvConf.read(resolv_conf)  # the one read of resolv.conf
        self._naming = ClusterNaming.from_environment(namespace, cluster_domain, resolv_conf=conf)
        if isinstance(source, str):
            dns = DnsSource(
                backend,
                nameservers,
                resolv_conf=conf or ResolvConf(),
                resolv_conf_path=resolv_conf,
                timeout=timeout,
                attempts=attempts,
                on_query=self._count_query,
            )
            source = (
                dns
                if source == "dns"
                else AutoSource(lambda: KubernetesSource(zone=zone, timeout=max(timeout, 5.0)), dns)
            )
        self._source: Source = source
        self._unsubscribe = self._source.subscribe(self._pushed)
        self._clock = clock
        self._rng = rng or random.Random()
        self._idle_after = idle_after
        self._failure_backoff = failure_backoff
        self._timeout = timeout
        self._stale_answer_timeout = stale_answer_timeout
        self._store: EntryStore[_Name] = EntryStore(max_entries, self._evicted)
        self._memo: dict[Hashable, _Name] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # -- public API ---------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        return self._naming.namespace

    @property
    def source_kind(self) -> str:
        """Where sets come from: ``"dns"`` or ``"kubernetes"`` (``"auto"`` until decided)."""
        return self._source.kind

    @property
    def cluster_domain(self) -> str:
        return self._naming.cluster_domain

    def is_cluster_name(self, host: str) -> bool:
        """True for names under the cluster domain: those this resolver should answer."""
        return self._naming.is_cluster_name(host)

    def parse(self, name: str, *, port: PortRef = None, proto: str = "tcp") -> NameLookup:
        """Validate ``name`` and list the absolute names it may stand for; no I/O."""
        return self._naming.parse(name, port, proto)

    async def resolve(self, name: str, *, port: PortRef = None, proto: str = "tcp") -> EndpointSet:
        """The endpoints of ``name``: addresses (``port=None``), SRV (``port="http"``), or
        addresses with a fixed port (``port=8080``).

        Raises InvalidServiceName before any I/O, ServiceNotFound on NXDOMAIN or a missing
        port, ResolutionError when DNS fails and nothing stale can be served.
        """
        try:
            entry = self._memo.get(name if port is None and proto == "tcp" else (name, port, proto))
        except TypeError:  # unhashable: let the parser say what is wrong
            entry = None
        if entry is not None:
            now = self._clock()
            if now < entry.hot_until:
                entry.last_used = now
                self.stats.cache_hits += 1
                return entry.endpoints
        return await self._resolve_slow(name, port, proto)

    def peek(self, name: str, *, port: PortRef = None, proto: str = "tcp") -> EndpointSet | None:
        """The cached set (fresh or servable stale) or None; never does I/O, safe from any
        thread. Counts as a use, so the name keeps being refreshed."""
        if self._closed:
            raise ResolverClosed("HeadlessResolver is closed", name=name)
        entry = self._memo_get(name, port, proto)
        if entry is None:
            lookup = self._naming.parse(name, port, proto)
            for service in lookup.candidates:
                entry = self._memo.get(_canonical(service, lookup.port, lookup.proto))
                if entry is not None and entry.endpoints:
                    break
            else:
                return None
        now = self._clock()
        entry.last_used = now
        try:
            served = entry.read(now)
        except ServiceNotFound:
            return None
        if served is not None and now >= entry.refresh_at and self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._kick, entry)
        return served

    def name_stats(
        self, name: str, *, port: PortRef = None, proto: str = "tcp"
    ) -> NameStats | None:
        """What the resolver knows about ``name``: its set, when each endpoint joined, recent
        changes, queries, failures by reason, stale and negative answers; None when the name
        is not cached. No I/O, and not a use: it does not keep the name refreshed."""
        entry = self._memo_get(name, port, proto)
        if entry is None:
            lookup = self._naming.parse(name, port, proto)
            for service in lookup.candidates:
                entry = self._memo.get(_canonical(service, lookup.port, lookup.proto))
                if entry is not None:
                    break
            else:
                return None
        failing = entry.error is not None and bool(entry.endpoints)
        return self._recorder.stats(entry.name, entry.endpoints.replace(stale=failing))

    async def watch(
        self, name: str, *, port: PortRef = None, proto: str = "tcp"
    ) -> AsyncGenerator[EndpointSet, None]:
        """Yield the current set, then each set whose content changed (order ignored).

        A service that does not exist (yet) starts as an empty set. Every watcher of a name
        shares the name's one refresh loop.
        """
        try:
            current: EndpointSet | None = await self.resolve(name, port=port, proto=proto)
        except ServiceNotFound:
            current = None
        entry = self._watched_entry(name, port, proto)
        entry.watchers += 1
        try:
            self._kick(entry)
            last = current if current is not None else entry.endpoints
            yield last
            while not self._closed:
                if entry.endpoints.version == last.version:
                    if self._owns(entry):
                        await entry.changed.wait()
                    else:  # the loop that refreshes the name runs in another thread
                        await asyncio.sleep(OTHER_LOOP_POLL)
                    continue
                last = entry.endpoints
                yield last
        finally:
            entry.watchers -= 1

    async def aclose(self) -> None:
        """Stop every refresh, query and watcher; the resolver cannot resolve afterwards."""
        if self._closed:
            return
        self._closed = True
        self._recorder.close()
        self._memo.clear()  # so that every spelling, cached or not, reaches the closed check
        tasks = list(self._tasks)
        owner = self._loop
        if owner is asyncio.get_running_loop():
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for entry in list(self._store.values()):
                if entry.loop is owner:
                    entry.notify_watchers()
        elif owner is not None and owner.is_running():  # that loop ends its own tasks
            for task in tasks:
                with contextlib.suppress(RuntimeError):
                    owner.call_soon_threadsafe(task.cancel)
        self._unsubscribe()
        if self._owns_source:
            await self._source.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<HeadlessResolver {self._naming!r} entries={len(self._store)}>"

    # -- lookups ------------------------------------------------------------------------------

    async def _resolve_slow(self, name: str, port: PortRef, proto: str) -> EndpointSet:
        if self._closed:
            raise ResolverClosed("HeadlessResolver is closed", name=name)
        loop = asyncio.get_running_loop()
        if loop is not self._loop and not (self._loop is not None and self._loop.is_running()):
            # The first loop, or one after the last has ended (``asyncio.run`` twice): this
            # loop now runs the background work. Tasks of an ended loop will not run again.
            self._loop = loop
            self._tasks = set()
        entry = self._memo_get(name, port, proto)
        if entry is not None:
            return await self._serve(entry)
        lookup = self._naming.parse(name, port, proto)
        key = name if port is None and proto == "tcp" else (name, port, proto)
        last = len(lookup.candidates) - 1
        for i, service in enumerate(lookup.candidates):
            entry = self._entry(service, lookup.port, lookup.proto)
            if last == 0:
                self._alias(key, entry)
            try:
                served = await self._serve(entry)
            except ServiceNotFound:
                if i == last:
                    raise
                continue
            self._alias(key, entry)
            return served
        raise AssertionError("a lookup has at least one candidate")

    def _memo_get(self, name: str, port: PortRef, proto: str) -> _Name | None:
        try:
            return self._memo.get(name if port is None and proto == "tcp" else (name, port, proto))
        except TypeError:
            return None

    def _watched_entry(self, name: str, port: PortRef, proto: str) -> _Name:
        entry = self._memo_get(name, port, proto)
        if entry is None:
            lookup = self._naming.parse(name, port, proto)
            entry = self._entry(lookup.candidates[0], lookup.port, lookup.proto)
        return entry

    async def _serve(self, entry: _Name) -> EndpointSet:
        now = self._clock()
        entry.last_used = now
        try:
            served = entry.read(now)
        except ServiceNotFound:
            self.stats.negative_hits += 1
            raise
        if served is None:
            flight = entry.flight
            stale = entry.stale(now)
            if stale is None:
                served = await self._join_flight(entry)
            elif flight is not None and not flight.cancelling():
                served = stale  # DNS has been slow since the refresh-ahead already
            else:
                served = await self._join_flight(entry, self._stale_answer_timeout, stale)
        elif not served.stale:
            self.stats.cache_hits += 1
        if served.stale:
            self.stats.stale_served += 1
            self._recorder.stale_served(entry.name)
        if entry.refresher is None or now >= entry.refresh_at:
            self._kick(entry)
        return served

    def _entry(self, service: ServiceName, port: PortRef, proto: str) -> _Name:
        key = _canonical(service, port, proto)
        entry = self._store.get(key)
        if entry is None:
            entry = _Name(key, Target.of(service, port, proto), self._clock())
            self._store[key] = entry
            self._alias(key, entry)
        return entry

    def _alias(self, key: Hashable, entry: _Name) -> None:
        if self._memo.get(key) is entry or len(entry.aliases) >= MAX_ALIASES:
            return
        self._memo[key] = entry
        entry.aliases.append(key)

    def _evicted(self, entry: _Name) -> None:
        for key in entry.aliases:
            if self._memo.get(key) is entry:
                del self._memo[key]
        entry.aliases.clear()
        entry.hot_until = NEVER
        self._recorder.forget(entry.name)
        if entry.refresher is not None:
            entry.refresher.cancel()

    # -- single flight ------------------------------------------------------------------------

    async def _join_flight(
        self, entry: _Name, patience: float | None = None, stale: EndpointSet | None = None
    ) -> EndpointSet:
        """Wait for the entry's query in flight, starting one if none; a cancelled waiter
        leaves it running for the others, and the last one to leave cancels it. A flight
        being cancelled is never joined: its end would cancel the newcomer.

        With ``patience``, answer ``stale`` once that has passed, leaving the flight to
        refresh the entry for later callers (RFC 8767's client response timer)."""
        if not self._owns(entry):  # the loop sharing queries runs in another thread: ask alone
            return await self._refresh(entry)
        flight = entry.flight
        if flight is None or flight.cancelling():
            flight = entry.flight = self._spawn(self._refresh(entry), f"refresh {entry.name}")
        entry.flight_waiters += 1
        left_early = True
        try:
            if patience is None or stale is None:
                served = await asyncio.shield(flight)
            else:
                done, _ = await asyncio.wait((flight,), timeout=patience)
                if done:
                    served = flight.result()
                else:
                    served = stale
                    flight.add_done_callback(_retrieve_outcome)
            left_early = False
            return served
        except asyncio.CancelledError:
            # The flight was cancelled by aclose(), not this caller: say so, rather than make
            # the caller look cancelled (which a TaskGroup would take for its own cancel).
            caller = asyncio.current_task()
            if self._closed and flight.cancelled() and not (caller and caller.cancelling()):
                raise ResolverClosed("HeadlessResolver is closed", name=entry.name) from None
            raise
        finally:
            entry.flight_waiters -= 1
            if left_early and entry.flight_waiters == 0 and not flight.done():
                flight.cancel()

    async def _refresh(self, entry: _Name) -> EndpointSet:
        record = self._recorder.refreshing(entry.name)  # this task's queries count for it
        started = self._clock()
        try:
            try:
                outcome = await self._source.fetch(entry.target)
            except ResolutionError as exc:
                self._recorder.refresh_took(record, self._clock() - started, _reason(exc))
                served = self._record_failure(entry, exc)
                if served is None:
                    raise
                return served
            self._recorder.refresh_took(record, self._clock() - started, None)
            return self._record(entry, outcome)
        finally:
            if entry.flight is asyncio.current_task():
                entry.flight = None

    def _record(self, entry: _Name, outcome: Outcome) -> EndpointSet:
        """Store what the source said, wake the watchers if the set changed; the set to serve."""
        now = self._clock()
        before = entry.endpoints
        if entry.error is not None:
            logger.info("%s: %s answers again", entry.name, self.source_kind)
            self._warnings.forget(entry.name)
        if isinstance(outcome, Missing):
            changed = entry.record_negative(
                outcome.message, outcome.negative_ttl, now, self._policy
            )
        else:
            changed = entry.record_answer(
                outcome.endpoints, outcome.ttl, now, self._policy, self._rng
            )
        self._recorder.answered(
            entry.name, before, entry.endpoints, negative=isinstance(outcome, Missing)
        )
        self._store.get(entry.key)  # a refresh keeps the name recent in the LRU order
        if changed:
            entry.notify_watchers()
        if entry.negative_since is not None:
            self._warnings.warning(
                (entry.name, "negative"),
                "%s: negative answer for %.1f s; keeping the last good set for %.0f s",
                entry.name,
                now - entry.negative_since,
                self._policy.negative_grace,
            )
        served = entry.read(now)
        return served if served is not None else entry.endpoints

    def _record_failure(self, entry: _Name, exc: ResolutionError) -> EndpointSet | None:
        """Remember a failure; the last good set marked stale, or None when none may be served."""
        self.stats.errors += 1
        self._recorder.failed(entry.name, _reason(exc), entry.endpoints)
        now = self._clock()
        if not entry.record_failure(exc, now):
            return None  # nothing to serve: the callers get the error
        self._warnings.warning(
            entry.name,
            "%s: %s; serving the last good set (%d endpoints) for up to %.0f s",
            entry.name,
            exc,
            len(entry.endpoints),
            entry.stale_until - now,
        )
        return entry.read(now)

    def _pushed(self, target: Target, update: Update) -> None:
        """A push source's news about a target: applied at once, watchers woken."""
        entry = self._store.get(_canonical(target.service, target.port, target.proto))
        if entry is None or self._closed:
            return
        if isinstance(update, ResolutionError):
            if self._record_failure(entry, update) is not None:
                entry.expire()  # from now on served as stale, until the source recovers
            return
        self._record(entry, update)

    def _count_query(self) -> None:
        self.stats.queries += 1
        self._recorder.query()

    # -- background refresh -------------------------------------------------------------------

    def _kick(self, entry: _Name) -> None:
        """Refresh ``entry`` now if due: wake its refresher, or start one, on the loop that
        runs the resolver's background work."""
        if self._closed or self._loop is None:
            return
        if not self._owns(entry):
            with contextlib.suppress(RuntimeError):  # that loop has just closed
                self._loop.call_soon_threadsafe(self._kick, entry)
            return
        if entry.refresher is None:
            entry.refresher = self._spawn(self._keep_fresh(entry), f"keep {entry.name} fresh")
        else:
            entry.wakeup.set()

    def _idle(self, entry: _Name) -> bool:
        return not entry.watchers and self._clock() - entry.last_used >= self._idle_after

    async def _keep_fresh(self, entry: _Name) -> None:
        """Refresh while the name is in use or watched; back off (tenacity) while DNS fails."""
        try:
            while entry.refresher is asyncio.current_task():  # not if another loop took over
                delay = entry.refresh_at - self._clock()
                if delay > 0:
                    entry.wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await entry.wakeup.wait()
                    continue
                if self._idle(entry):
                    logger.debug("%s: unused, no longer refreshed", entry.name)
                    return
                with contextlib.suppress(HeadlessResolverError):
                    async for attempt in self._refresh_retrying(entry):
                        with attempt:
                            self.stats.refreshes += 1
                            await self._join_flight(entry)
                            if entry.error is not None:  # failed, but stale is still served
                                raise entry.error
        finally:
            if entry.refresher is asyncio.current_task():
                entry.refresher = None

    def _refresh_retrying(self, entry: _Name) -> AsyncRetrying:
        """Retries of a failing refresh: exponential backoff from ``failure_backoff``, but
        never slower than a healthy name is refreshed (its TTL), so that when DNS is back the
        stale set is replaced within about a TTL, not after a wait grown through the outage."""

        def stop_when_unused(state: RetryCallState) -> bool:
            return self._idle(entry)

        longest = MAX_FAILURE_BACKOFF
        if entry.ttl is not None:
            longest = min(longest, max(entry.ttl, self._failure_backoff))
        return AsyncRetrying(
            retry=retry_if_exception_type(ResolutionError),
            wait=wait_random_exponential(
                multiplier=self._failure_backoff, min=self._failure_backoff / 2, max=longest
            ),
            stop=stop_when_unused,
            reraise=True,
        )

    def _owns(self, entry: _Name) -> bool:
        """Whether the running loop runs the background work (then ``entry``'s loop-bound
        parts are made its own), rather than another thread's loop."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if running is not loop:
            return False
        if entry.loop is not loop:
            entry.bind(loop)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _canonical(service: ServiceName, port: PortRef, proto: str) -> Hashable:
    """The cache key, which is also what ``resolve()`` receives for the absolute spelling."""
    if port is None:
        return service.fqdn
    return (service.fqdn, port, proto if isinstance(port, str) else "tcp")


def _retrieve_outcome(flight: asyncio.Task[EndpointSet]) -> None:
    """Mark the outcome of a flight no caller waited out as seen: a failure is logged and
    counted by the flight itself, not reported again as an unretrieved task exception."""
    if not flight.cancelled():
        flight.exception()


def _reason(exc: ResolutionError) -> str:
    """A failure's reason as metrics count it: the rcode a server answered (``SERVFAIL``,
    ``REFUSED``...), else why no answer came (``TIMEOUT``, ``NETWORK``...)."""
    return exc.rcode or exc.reason


__all__ = ["HeadlessResolver", "ResolverStats"]
