"""BaseHeadlessTransport: the options and parts the async and sync transports share.

As httpx's ``BaseClient`` under ``Client`` and ``AsyncClient``: the options (one signature),
the route table, the per-pod pools, the judge and strategy every attempt reports to. Each
twin adds only its I/O: how it sends to a pod, closes a pod transport, and waits for DNS.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ssl
import threading
from collections.abc import Collection, Iterable, Mapping
from typing import Any, ClassVar, Generic, TypedDict, TypeVar

import httpx
from httpx._types import CertTypes, ProxyTypes
from opentelemetry.metrics import MeterProvider

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._errors import InvalidArgument
from headless_resolver._hosts import HostMatch, host_matcher, port_rules
from headless_resolver._metrics import TransportRecorder, TransportStats
from headless_resolver._resolver import HeadlessResolver
from headless_resolver._strategies import BaseStrategy, LeastLatency, RoundRobin, Strategy
from headless_resolver._transports._attempt import AttemptRules, Probe
from headless_resolver._transports._pools import (
    DEFAULT_LIMITS,
    PodPools,
    SocketOption,
    shard_limits,
)
from headless_resolver._transports._routes import PoolKey, Route, Routes
from headless_resolver._verdict import Judge

T = TypeVar("T")


class TransportOptions(TypedDict, total=False):
    """The keyword options of ``BaseHeadlessTransport``, for a twin that adds its own."""

    match: HostMatch | None
    ports: Mapping[str, str] | None
    srv_from_scheme: bool
    retries: int
    failure_statuses: Collection[int] | None
    verify: ssl.SSLContext | str | bool
    cert: CertTypes | None
    trust_env: bool
    http1: bool
    http2: bool
    limits: httpx.Limits
    proxy: ProxyTypes | None
    uds: str | None
    local_address: str | None
    connect_retries: int
    socket_options: Iterable[SocketOption] | None
    meter_provider: MeterProvider | None
    per_pod_metrics: bool


def require_h2() -> None:
    """``http2=True`` needs the ``h2`` package: say so at once, as ``httpx.Client`` does."""
    if importlib.util.find_spec("h2") is None:
        raise ImportError(
            "Using http2=True, but the 'h2' package is not installed. "
            "Make sure to install httpx using `pip install httpx[http2]`."
        )


class BaseHeadlessTransport(Generic[T]):
    """Options, routes, pools and the attempt rules, for pod transports of type T."""

    _threaded: ClassVar[bool] = False
    """Whether requests come from many threads at once (the bookkeeping then takes a lock)."""
    _sharded_pools: bool = True
    """Whether a pod's pool is split into shards (httpcore's bookkeeping grows with a pool)."""
    _addressed_pools: bool = False
    """Whether a pod transport is made for its pod's address and takes the caller's request
    as it is (``AttemptRules.addressed``)."""

    def __init__(
        self,
        resolver: HeadlessResolver | None = None,
        strategy: Strategy | None = None,
        *,
        match: HostMatch | None = None,
        ports: Mapping[str, str] | None = None,
        srv_from_scheme: bool = False,
        retries: int = 2,
        failure_statuses: Collection[int] | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        proxy: ProxyTypes | None = None,
        uds: str | None = None,
        local_address: str | None = None,
        connect_retries: int = 0,
        socket_options: Iterable[SocketOption] | None = None,
        meter_provider: MeterProvider | None = None,
        per_pod_metrics: bool = True,
    ) -> None:
        if retries < 0:
            raise InvalidArgument(f"retries: {retries!r} must be >= 0")
        if http2:
            require_h2()
        self._strategy: Strategy = RoundRobin() if strategy is None else strategy
        judge = Judge(
            self._strategy.health.failure_statuses if failure_statuses is None else failure_statuses
        )
        ssl_context = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        options: dict[str, Any] = dict(
            verify=ssl_context,
            http1=http1,
            http2=http2,
            local_address=local_address,
            retries=connect_retries,
            socket_options=None if socket_options is None else list(socket_options),
        )
        self._owns_resolver = resolver is None
        self._resolver = self._open_resolver(resolver)
        lock = threading.Lock() if self._threaded else contextlib.nullcontext()
        rules = port_rules(ports)
        self._routes = Routes(
            host_matcher(self._resolver, match, rules), rules, srv_from_scheme, lock
        )
        self._pools: PodPools[T] = PodPools(
            self._routes,
            lambda key, limits: self._new_pod_transport(key, limits=limits, **options),
            shard_limits(limits, http2=http2) if self._sharded_pools else [limits],
            lock,
        )
        self._recorder = _recorder(self._strategy, meter_provider, per_pod_metrics)
        self._strategy.health.add_listener(self._recorder)
        self._rules = AttemptRules(
            self._strategy, judge, self._pools, retries, self._recorder, self._addressed_pools
        )
        self._prober = (
            self._strategy
            if isinstance(self._strategy, LeastLatency) and self._strategy.probe is not None
            else None
        )
        """The strategy, when it asks for active probes (``LeastLatency(probe=...)``)."""
        self._passthrough: T = self._new_passthrough(limits=limits, proxy=proxy, uds=uds, **options)

    def _due_probes(
        self, request: httpx.Request, route: Route, endpoints: EndpointSet
    ) -> list[Probe[T]]:
        """The probes the strategy queued while picking for ``request``'s route.

        A pod of another route (a strategy shared across transports or threads) is handed
        back unprobed: it is due again after ``probe_interval``, for a request of its own.
        """
        assert self._prober is not None
        path = self._prober.probe
        assert path is not None
        probes = []
        for endpoint in self._prober.take_probes():
            if endpoint in endpoints.members:
                probes.append(Probe(self._rules, route, endpoints, endpoint, request.url, path))
            else:
                self._strategy.release(endpoint)
        return probes

    def _new_pod_transport(self, key: PoolKey, **options: Any) -> T:
        """A transport to the pod at ``key`` (IP, port, TLS name), with httpx's options."""
        raise NotImplementedError

    def _new_passthrough(self, **options: Any) -> T:
        """The transport for hosts passed through (with ``proxy`` and ``uds``)."""
        raise NotImplementedError

    def _open_resolver(self, resolver: HeadlessResolver | None) -> HeadlessResolver:
        """The resolver to use: ``resolver``, or one the twin makes where it can close it."""
        raise NotImplementedError

    @property
    def resolver(self) -> HeadlessResolver:
        return self._resolver

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @property
    def failure_statuses(self) -> frozenset[int]:
        """The statuses this transport judges failing (they count against the pod)."""
        return self._rules.judge.failure_statuses

    def pools(self) -> list[PoolKey]:
        """``(pod IP, port, TLS name)`` of the open per-pod pools."""
        return self._pools.keys()

    def stats(self) -> TransportStats:
        """Per service and per pod: attempts, in flight, outcomes, time, ejections, retries."""
        return self._recorder.stats()

    def _stop_recording(self) -> None:
        """Health outlives the transport when the strategy is shared: stop listening to it,
        and stop reporting."""
        self._strategy.health.remove_listener(self._recorder)
        self._recorder.close()


def _recorder(
    strategy: Strategy, meter_provider: MeterProvider | None, per_pod: bool
) -> TransportRecorder:
    """Metrics of one transport: named after its strategy, with its estimates if it has any."""
    estimate = None
    if isinstance(strategy, LeastLatency):
        least_latency = strategy

        def estimate(endpoint: Endpoint) -> float | None:
            rtt = least_latency.estimate(endpoint)
            state = None if rtt is None else rtt.state
            return None if state is None else state[0]

    return TransportRecorder(
        meter_provider,
        per_pod=per_pod,
        strategy=type(strategy).__name__,
        ejected=strategy.health.ejected,
        estimate=estimate,
        warming=strategy.warming if isinstance(strategy, BaseStrategy) else None,
    )
