"""BaseHeadlessTransport: what the async and sync transports do around their I/O, once.

As httpx's ``BaseClient`` under ``Client`` and ``AsyncClient``: the options, the routing table
and pools, the pick and what the strategy hears, when to retry and which errors callers see.
Each twin adds only how it waits: by awaiting, or by blocking on its loop thread.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

import httpx
from httpx._types import CertTypes, ProxyTypes
from opentelemetry.metrics import MeterProvider
from tenacity import BaseRetrying, retry_if_exception, stop_after_attempt

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._logs import transport_log as logger
from headless_resolver._metrics import Outcome, TransportRecorder, TransportStats
from headless_resolver._resolver import HeadlessResolver
from headless_resolver._strategies import LeastLatency, RoundRobin, Strategy
from headless_resolver._transports._routing import (
    Attempts,
    HostMatch,
    Router,
    SocketOption,
    host_matcher,
    port_rules,
    retryable,
    shard_limits,
)

T = TypeVar("T")
R = TypeVar("R", bound=BaseRetrying)


class BaseHeadlessTransport(Generic[T]):
    """Options, routing and the strategy's view of each attempt, for pod transports of type T."""

    def __init__(
        self,
        resolver: HeadlessResolver | None,
        strategy: Strategy | None,
        *,
        pod_transport: Callable[..., T],
        lock: AbstractContextManager[object],
        match: HostMatch | None,
        ports: Mapping[str, str] | None,
        srv_from_scheme: bool,
        retries: int,
        failure_statuses: Collection[int] | None,
        verify: ssl.SSLContext | str | bool,
        cert: CertTypes | None,
        trust_env: bool,
        http1: bool,
        http2: bool,
        limits: httpx.Limits,
        proxy: ProxyTypes | None,
        uds: str | None,
        local_address: str | None,
        connect_retries: int,
        socket_options: Iterable[SocketOption] | None,
        meter_provider: MeterProvider | None,
        per_pod_metrics: bool,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries: {retries!r} must be >= 0")
        self._resolver = self._open_resolver(resolver)
        self._strategy: Strategy = RoundRobin() if strategy is None else strategy
        self._retries = retries
        self._failure_statuses = frozenset(
            self._strategy.health.failure_statuses if failure_statuses is None else failure_statuses
        )
        rules = port_rules(ports)
        ssl_context = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        socket_options = None if socket_options is None else list(socket_options)
        new_transport = functools.partial(
            pod_transport,
            verify=ssl_context,
            http1=http1,
            http2=http2,
            local_address=local_address,
            retries=connect_retries,
            socket_options=socket_options,
        )
        self._router: Router[T] = Router(
            host_matcher(self._resolver, match, rules),
            rules,
            srv_from_scheme,
            lambda limits: new_transport(limits=limits),
            shard_limits(limits, http2=http2),
            lock,
        )
        self._passthrough: T = new_transport(limits=limits, proxy=proxy, uds=uds)
        self._recorder = _recorder(self._strategy, meter_provider, per_pod_metrics)
        self._strategy.health.add_listener(self._recorder)

    def _open_resolver(self, resolver: HeadlessResolver | None) -> HeadlessResolver:
        """The resolver to use: ``resolver``, or one the twin makes where it can close it."""
        raise NotImplementedError

    @property
    def resolver(self) -> HeadlessResolver:
        return self._resolver

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    def stats(self) -> TransportStats:
        """Per service and per pod: attempts, in flight, outcomes, time, ejections, retries."""
        return self._recorder.stats()

    def _stop_recording(self) -> None:
        """Health outlives the transport when the strategy is shared: stop listening to it,
        and stop reporting."""
        self._strategy.health.remove_listener(self._recorder)
        self._recorder.close()

    def pools(self) -> list[tuple[str, int, str]]:
        """``(pod IP, port, TLS name)`` of the open per-pod pools."""
        return self._router.pool_keys()

    def _will_retry(self, request: httpx.Request, exc: httpx.TransportError) -> bool:
        """Whether the first attempt's error leaves a retry worth making."""
        return self._retries != 0 and retryable(request, exc)

    def _retrying(self, retrying: type[R], request: httpx.Request) -> R:
        """The retry policy for ``request``: other pods, at most ``retries`` more attempts."""
        return retrying(
            stop=stop_after_attempt(self._retries),
            retry=retry_if_exception(lambda exc: retryable(request, exc)),
            reraise=True,
        )

    def _pick(self, request: httpx.Request, endpoints: EndpointSet, attempts: Attempts) -> Endpoint:
        """The strategy's pod for this attempt, never one the request has tried."""
        strategy = self._strategy
        endpoint = strategy.pick(endpoints, strategy.key_for(request), exclude=attempts.tried)
        if attempts.pod is not None:
            self._recorder.retried(attempts.pod)
        attempts.tried.append(endpoint)
        route = attempts.route
        attempts.pod = self._recorder.started(endpoints, endpoint, route.host, route.default_port)
        return endpoint

    def _failed(
        self, endpoint: Endpoint, started: float, exc: httpx.TransportError, attempts: Attempts
    ) -> None:
        latency = time.perf_counter() - started
        self._strategy.observe(endpoint, latency, False)
        attempts.last_error = exc
        logger.debug(
            "%s: attempt on %s failed after %.1f ms: %s: %s",
            attempts.route.host,
            endpoint.netloc(attempts.route.default_port),
            latency * 1000,
            type(exc).__name__,
            exc,
        )
        if attempts.pod is not None:
            outcome = (
                Outcome.CLIENT
                if isinstance(exc, httpx.PoolTimeout)
                else Outcome.TIMEOUT
                if isinstance(exc, httpx.TimeoutException)
                else Outcome.CONNECT_FAILURE
            )
            method = attempts.method
            self._recorder.finished(
                attempts.pod, outcome, latency, method, error=type(exc).__name__
            )

    def _abandoned(self, endpoint: Endpoint, attempts: Attempts) -> None:
        """The attempt ended without an outcome (cancelled): nothing to hold against the pod."""
        self._strategy.release(endpoint)
        if attempts.pod is not None:
            self._recorder.finished(attempts.pod, Outcome.CLIENT, 0.0, attempts.method)

    def _answered(
        self,
        request: httpx.Request,
        endpoint: Endpoint,
        started: float,
        response: httpx.Response,
        attempts: Attempts,
    ) -> None:
        """Tell the strategy how the pod did; the response is the caller's request's."""
        latency = time.perf_counter() - started
        status = response.status_code
        ok = status not in self._failure_statuses
        self._strategy.observe(endpoint, latency, ok, status=status)
        response.request = request
        if attempts.pod is not None:
            self._recorder.finished(
                attempts.pod,
                Outcome.OK if ok else Outcome.FAILING_STATUS,
                latency,
                request.method,
                status=status,
                error=str(status) if status >= 400 else None,
            )


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
    )
