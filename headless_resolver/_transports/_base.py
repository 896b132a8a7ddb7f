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
from tenacity import BaseRetrying, retry_if_exception, stop_after_attempt

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._resolver import HeadlessResolver
from headless_resolver._strategies import RoundRobin, Strategy
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
        passthrough_transport: Callable[..., T] | None = None,
        sharded: bool = True,
    ) -> None:
        """``pod_transport`` makes the pod pools, ``passthrough_transport`` (default: the same)
        the one for other hosts; ``sharded`` splits a pod's pool as ``shard_limits()`` says."""
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
        options = dict(
            verify=ssl_context,
            http1=http1,
            http2=http2,
            local_address=local_address,
            retries=connect_retries,
            socket_options=socket_options,
        )
        new_transport = functools.partial(pod_transport, **options)
        self._router: Router[T] = Router(
            host_matcher(self._resolver, match, rules),
            rules,
            srv_from_scheme,
            lambda limits: new_transport(limits=limits),
            shard_limits(limits, http2=http2) if sharded else [limits],
            lock,
        )
        passthrough = pod_transport if passthrough_transport is None else passthrough_transport
        self._passthrough: T = passthrough(limits=limits, proxy=proxy, uds=uds, **options)

    def _open_resolver(self, resolver: HeadlessResolver | None) -> HeadlessResolver:
        """The resolver to use: ``resolver``, or one the twin makes where it can close it."""
        raise NotImplementedError

    @property
    def resolver(self) -> HeadlessResolver:
        return self._resolver

    @property
    def strategy(self) -> Strategy:
        return self._strategy

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
        attempts.tried.append(endpoint)
        return endpoint

    def _failed(
        self, endpoint: Endpoint, started: float, exc: httpx.TransportError, attempts: Attempts
    ) -> None:
        self._strategy.observe(endpoint, time.perf_counter() - started, False)
        attempts.last_error = exc

    def _answered(
        self, request: httpx.Request, endpoint: Endpoint, started: float, response: httpx.Response
    ) -> None:
        """Tell the strategy how the pod did; the response is the caller's request's."""
        status = response.status_code
        ok = status not in self._failure_statuses
        self._strategy.observe(endpoint, time.perf_counter() - started, ok, status=status)
        response.request = request
