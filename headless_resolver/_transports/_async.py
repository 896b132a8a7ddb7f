"""HeadlessTransport: an httpx async transport that sends each request to a pod of the service."""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from types import TracebackType

import httpx
from httpx._types import CertTypes, ProxyTypes
from opentelemetry.metrics import MeterProvider
from tenacity import AsyncRetrying

from headless_resolver._endpoints import EndpointSet
from headless_resolver._errors import (
    HeadlessResolverError,
    InvalidServiceName,
    NoEndpointsAvailable,
)
from headless_resolver._resolver import HeadlessResolver
from headless_resolver._strategies import Strategy
from headless_resolver._transports._base import BaseHeadlessTransport
from headless_resolver._transports._routing import (
    DEFAULT_LIMITS,
    Attempts,
    HostMatch,
    PoolShard,
    Route,
    SocketOption,
    pod_request,
    resolution_failed,
)


class HeadlessTransport(BaseHeadlessTransport[httpx.AsyncHTTPTransport], httpx.AsyncBaseTransport):
    """Send requests for cluster services straight to a pod picked by ``strategy``.

    Use it as ``httpx.AsyncClient(transport=HeadlessTransport(...))``. Hosts that match (names
    under the cluster domain, hosts listed in ``match`` or ``ports``) are resolved (a cache hit
    on the hot path), a pod is picked, and a new request goes to the pod's IP while the URL,
    ``Host`` header and TLS server name stay the service's, so certificates are verified
    against the service name. Other hosts pass through to a plain ``httpx.AsyncHTTPTransport``.

    Ports: a URL with an explicit port uses it. ``ports={"web": "http"}`` takes the port of
    ``http://web/`` from the SRV record of the named port ``_http._tcp``; with
    ``srv_from_scheme=True`` every routed URL without a port takes it from ``_<scheme>._tcp``.
    Per-pod names (``web-0.web.default.svc.cluster.local``) go to that pod only.

    Retries: a request that never reached a pod (refused, reset while connecting, connect or
    pool timeout) is tried again on another pod, whatever its method; one that may have been
    sent is retried only when idempotent with an in-memory body. Never the same pod twice;
    at most ``retries`` extra attempts. The latency to the response headers and the outcome
    go to ``strategy.observe()`` and so to its health: connection errors and statuses in
    ``failure_statuses`` (default: those of ``strategy.health``, 502/503/504) are failures.
    Statuses are never retried: the response is the caller's to see.

    The httpx options (``verify``, ``cert``, ``http1``, ``http2``, ``limits``,
    ``local_address``, ``socket_options``, ``connect_retries`` = httpx's ``retries``) apply
    to every pod pool; ``limits`` are per pod. Over HTTP/1.1 a pod's pool is split into
    httpcore pools of at most 8 kept-alive connections each (their limits add up to
    ``limits``), because httpcore's bookkeeping costs every request time in proportion to
    the connections of its pool.

    Proxies: pods are always reached directly. A forward proxy would resolve the service name
    itself (one pod, or none from outside the cluster), and httpcore's HTTP proxy ignores the
    TLS server name. ``proxy`` and ``uds`` given here apply only to hosts passed through.
    httpx reads no proxy environment variables for a client given ``transport=`` (whatever
    ``trust_env`` says), so that is the way to use this transport. A client's own ``proxy=``,
    or mounting this transport under ``mounts=`` while ``HTTP(S)_PROXY`` is set, sends the
    matching URLs to httpx's proxy transport instead, bypassing this one.

    Metrics: ``meter_provider`` (None: OpenTelemetry's global provider) gets per-service and
    per-pod metrics (README, "Metrics"); ``per_pod_metrics=False`` reports them per service
    only. ``stats()`` gives the same figures as plain dataclasses.
    """

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
        super().__init__(
            resolver,
            strategy,
            pod_transport=httpx.AsyncHTTPTransport,
            lock=contextlib.nullcontext(),
            match=match,
            ports=ports,
            srv_from_scheme=srv_from_scheme,
            retries=retries,
            failure_statuses=failure_statuses,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            limits=limits,
            proxy=proxy,
            uds=uds,
            local_address=local_address,
            connect_retries=connect_retries,
            socket_options=socket_options,
            meter_provider=meter_provider,
            per_pod_metrics=per_pod_metrics,
        )

    def _open_resolver(self, resolver: HeadlessResolver | None) -> HeadlessResolver:
        self._owns_resolver = resolver is None
        return HeadlessResolver() if resolver is None else resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = self._router.route(request.url)
        if route is None:
            return await self._passthrough.handle_async_request(request)
        try:
            endpoints = await self._resolver.resolve(route.host, port=route.port_name)
        except InvalidServiceName:
            raise
        except HeadlessResolverError as exc:
            raise resolution_failed(request, exc) from exc
        if endpoints.version != route.version:
            for transport in self._router.update(route, endpoints):
                await transport.aclose()
        attempts = Attempts(route, request.method)
        try:
            return await self._attempt(request, route, endpoints, attempts)
        except NoEndpointsAvailable as exc:
            raise resolution_failed(request, exc) from exc
        except httpx.TransportError as exc:
            if not self._will_retry(request, exc):
                attempts.noted(exc)
                raise
        return await self._retry(request, route, endpoints, attempts)

    async def _retry(
        self, request: httpx.Request, route: Route, endpoints: EndpointSet, attempts: Attempts
    ) -> httpx.Response:
        retrying = self._retrying(AsyncRetrying, request)
        try:
            return await retrying(self._attempt, request, route, endpoints, attempts)
        except NoEndpointsAvailable:
            raise attempts.exhausted() from None
        except httpx.TransportError as exc:
            attempts.noted(exc)
            raise

    async def _attempt(
        self, request: httpx.Request, route: Route, endpoints: EndpointSet, attempts: Attempts
    ) -> httpx.Response:
        endpoint = self._pick(request, endpoints, attempts)
        shard = self._router.checkout(route, endpoint)
        started = time.perf_counter()
        try:
            response = await shard.transport.handle_async_request(
                pod_request(request, route, endpoint)
            )
        except httpx.TransportError as exc:
            self._failed(endpoint, started, exc, attempts)
            await self._checkin(shard)
            raise
        except BaseException:
            self._abandoned(endpoint, attempts)
            await self._checkin(shard)
            raise
        self._answered(request, endpoint, started, response, attempts)
        response.stream = _PodResponseStream(response.stream, self, shard)
        return response

    async def _checkin(self, shard: PoolShard[httpx.AsyncHTTPTransport]) -> None:
        for transport in self._router.checkin(shard):
            await transport.aclose()

    async def aclose(self) -> None:
        """Close every pod pool, the pass-through transport, and the resolver if we made it."""
        self._stop_recording()
        for transport in self._router.close_all():
            await transport.aclose()
        await self._passthrough.aclose()
        if self._owns_resolver:
            await self._resolver.aclose()

    async def __aenter__(self) -> HeadlessTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


class _PodResponseStream(httpx.AsyncByteStream):
    """The pod's response body; closing it ends the request's use of the pod pool."""

    __slots__ = ("_shard", "_stream", "_transport")

    def __init__(
        self,
        stream: httpx.SyncByteStream | httpx.AsyncByteStream,
        transport: HeadlessTransport,
        shard: PoolShard[httpx.AsyncHTTPTransport],
    ) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self._stream = stream
        self._transport = transport
        self._shard: PoolShard[httpx.AsyncHTTPTransport] | None = shard

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            shard, self._shard = self._shard, None
            if shard is not None:
                await self._transport._checkin(shard)
