"""SyncHeadlessTransport: the same routing for ``httpx.Client``, in threads without a loop."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Collection, Coroutine, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx
from httpx._types import CertTypes, ProxyTypes
from opentelemetry.metrics import MeterProvider
from tenacity import Retrying

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

T = TypeVar("T")


class _LoopThread:
    """One background thread running the event loop that the async resolver lives on."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="headless-resolver", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _new_resolver() -> HeadlessResolver:
    """Made on the loop thread, so anything it binds to a loop binds to that one."""
    return HeadlessResolver()


class SyncHeadlessTransport(BaseHeadlessTransport[httpx.HTTPTransport], httpx.BaseTransport):
    """``HeadlessTransport`` for ``httpx.Client``: Flask, Django, scripts, worker threads.

    The caller's threads need no event loop: the resolver runs on one background thread, and
    since only that thread can close it, the transport owns it (also one passed in).
    A request whose endpoint set is cached (``resolver.peek()``) never leaves the caller's
    thread; a miss waits for the resolver thread, at most ``resolve_timeout`` seconds. One
    client may be shared by many threads (the strategies are thread-safe, the pool
    bookkeeping is locked). ``close()`` closes the pools, the resolver if this transport
    made it, and stops the thread. Everything else (matching, ports, retries, proxies,
    httpx options) is as documented on ``HeadlessTransport``.
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
        resolve_timeout: float = 30.0,
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
            pod_transport=httpx.HTTPTransport,
            lock=threading.Lock(),
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
        self._resolve_timeout = resolve_timeout
        self._closed = False

    def _open_resolver(self, resolver: HeadlessResolver | None) -> HeadlessResolver:
        self._thread = _LoopThread()
        return self._thread.run(_new_resolver()) if resolver is None else resolver

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        route = self._router.route(request.url)
        if route is None:
            return self._passthrough.handle_request(request)
        endpoints = self._endpoints(request, route)
        if endpoints.version != route.version:
            for transport in self._router.update(route, endpoints):
                transport.close()
        attempts = Attempts(route, request.method)
        try:
            return self._attempt(request, route, endpoints, attempts)
        except NoEndpointsAvailable as exc:
            raise resolution_failed(request, exc) from exc
        except httpx.TransportError as exc:
            if not self._will_retry(request, exc):
                attempts.noted(exc)
                raise
        return self._retry(request, route, endpoints, attempts)

    def _endpoints(self, request: httpx.Request, route: Route) -> EndpointSet:
        """The cached set without leaving this thread; on a miss, ask the resolver thread."""
        resolver = self._resolver
        try:
            endpoints = resolver.peek(route.host, port=route.port_name)
            if endpoints is None:
                endpoints = self._thread.run(
                    resolver.resolve(route.host, port=route.port_name), self._resolve_timeout
                )
        except InvalidServiceName:
            raise
        except HeadlessResolverError as exc:
            raise resolution_failed(request, exc) from exc
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                f"{route.host}: no DNS answer within {self._resolve_timeout} s", request=request
            ) from exc
        return endpoints

    def _retry(
        self, request: httpx.Request, route: Route, endpoints: EndpointSet, attempts: Attempts
    ) -> httpx.Response:
        retrying = self._retrying(Retrying, request)
        try:
            return retrying(self._attempt, request, route, endpoints, attempts)
        except NoEndpointsAvailable:
            raise attempts.exhausted() from None
        except httpx.TransportError as exc:
            attempts.noted(exc)
            raise

    def _attempt(
        self, request: httpx.Request, route: Route, endpoints: EndpointSet, attempts: Attempts
    ) -> httpx.Response:
        endpoint = self._pick(request, endpoints, attempts)
        shard = self._router.checkout(route, endpoint)
        started = time.perf_counter()
        try:
            response = shard.transport.handle_request(pod_request(request, route, endpoint))
        except httpx.TransportError as exc:
            self._failed(endpoint, started, exc, attempts)
            self._checkin(shard)
            raise
        except BaseException:
            self._abandoned(endpoint, attempts)
            self._checkin(shard)
            raise
        self._answered(request, endpoint, started, response, attempts)
        response.stream = _PodResponseStream(response.stream, self, shard)
        return response

    def _checkin(self, shard: PoolShard[httpx.HTTPTransport]) -> None:
        for transport in self._router.checkin(shard):
            transport.close()

    def close(self) -> None:
        """Close every pod pool, the pass-through transport, the resolver, and the thread."""
        self._stop_recording()
        if self._closed:
            return
        self._closed = True
        for transport in self._router.close_all():
            transport.close()
        self._passthrough.close()
        try:
            self._thread.run(self._resolver.aclose(), self._resolve_timeout)
        finally:
            self._thread.stop()

    def __enter__(self) -> SyncHeadlessTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()


class _PodResponseStream(httpx.SyncByteStream):
    """The pod's response body; closing it ends the request's use of the pod pool."""

    __slots__ = ("_shard", "_stream", "_transport")

    def __init__(
        self,
        stream: httpx.SyncByteStream | httpx.AsyncByteStream,
        transport: SyncHeadlessTransport,
        shard: PoolShard[httpx.HTTPTransport],
    ) -> None:
        assert isinstance(stream, httpx.SyncByteStream)
        self._stream = stream
        self._transport = transport
        self._shard: PoolShard[httpx.HTTPTransport] | None = shard

    def __iter__(self) -> Iterator[bytes]:
        return self._stream.__iter__()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            shard, self._shard = self._shard, None
            if shard is not None:
                self._transport._checkin(shard)
