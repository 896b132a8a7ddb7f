"""HeadlessTransport: an httpx async transport that sends each request to a pod of the service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx

from headless_resolver._errors import HeadlessResolverError, InvalidServiceName
from headless_resolver._resolver import HeadlessResolver
from headless_resolver._transports._attempt import Attempts, Exchange, PodBody, resolution_failed
from headless_resolver._transports._base import BaseHeadlessTransport


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
    """

    def _new_pod_transport(self, **options: Any) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(**options)

    def _open_resolver(self, resolver: HeadlessResolver | None) -> HeadlessResolver:
        return HeadlessResolver() if resolver is None else resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = self._routes.route(request.url)
        if route is None:
            return await self._passthrough.handle_async_request(request)
        try:
            endpoints = await self._resolver.resolve(route.host, port=route.port_name)
        except InvalidServiceName:
            raise
        except HeadlessResolverError as exc:
            raise resolution_failed(request, exc) from exc
        if endpoints.version != route.version:
            await _close(self._pools.update(route, endpoints))
        attempts = Attempts(self._rules, request, route, endpoints)
        while True:
            shard, pod_request = attempts.start()
            try:
                response = await shard.transport.handle_async_request(pod_request)
            except BaseException as exc:
                await _close(self._pools.checkin(shard))
                attempts.failed(exc)
            else:
                return _attach(response, attempts.answered(response, shard))

    async def aclose(self) -> None:
        """Close every pod pool, the pass-through transport, and the resolver if we made it."""
        await _close(self._pools.close_all())
        await self._passthrough.aclose()
        if self._owns_resolver:
            await self._resolver.aclose()


async def _close(transports: Iterable[httpx.AsyncHTTPTransport]) -> None:
    for transport in transports:
        await transport.aclose()


def _attach(
    response: httpx.Response, exchange: Exchange[httpx.AsyncHTTPTransport]
) -> httpx.Response:
    """The pod's response, its body now ending the exchange when closed."""
    body = response.stream
    assert isinstance(body, httpx.AsyncByteStream)
    response.stream = _PodResponseStream(body, exchange)
    return response


class _PodResponseStream(
    PodBody[httpx.AsyncByteStream, httpx.AsyncHTTPTransport], httpx.AsyncByteStream
):
    """The pod's response body: its failures are the pod's; closing it ends the attempt."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx.TransportError as exc:
            self._exchange.body_failed(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            await _close(self._exchange.closed())
