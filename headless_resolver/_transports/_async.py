"""HeadlessTransport: an httpx async transport that sends each request to a pod of the service."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal, Unpack

import httpx

from headless_resolver._endpoints import EndpointSet
from headless_resolver._errors import HeadlessResolverError, InvalidArgument, InvalidServiceName
from headless_resolver._resolver import HeadlessResolver
from headless_resolver._strategies import Strategy
from headless_resolver._transports._attempt import (
    Attempts,
    Exchange,
    PodBody,
    Probe,
    resolution_failed,
)
from headless_resolver._transports._base import BaseHeadlessTransport, TransportOptions
from headless_resolver._transports._engine import PodConnectionPool, WholeBody
from headless_resolver._transports._routes import PoolKey, Route

Engine = Literal["auto", "llhttp", "httpcore"]
"""Who keeps the pod connections: see ``HeadlessTransport``'s ``engine``."""


class HeadlessTransport(BaseHeadlessTransport[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport):
    """Send requests for cluster services straight to a pod picked by ``strategy``.

    Use it as ``httpx.AsyncClient(transport=HeadlessTransport(...))``. Hosts that match are
    resolved (a cache hit on the hot path), a pod is picked, and a new request goes to the
    pod's IP while the URL, ``Host`` header and TLS server name stay the service's, so
    certificates are verified against the service name. Other hosts pass through to a plain
    ``httpx.AsyncHTTPTransport``. Per-pod names (``web-0.web.default.svc.cluster.local``) go
    to that pod only.

    Parameters:
        resolver: shared by the clients that should share its cache; when omitted, one is
            made (nameservers from ``/etc/resolv.conf``) and closed with the transport. A
            resolver passed in is never closed here: it is its owner's.
        strategy: picks the pod (default ``RoundRobin()``); hears every attempt's verdict.
        match: extra hosts to route, as names or a predicate. Always routed: names under the
            cluster domain, names ending in ``.svc`` (``web.default.svc``), hosts in ``ports``.
        ports: ``{"web": "http"}`` takes the port of ``http://web/`` from the SRV record of
            the named port ``_http._tcp``. A rule applies to the host exactly as written
            (``web``, not ``web.default.svc``): give each spelling the client uses.
        srv_from_scheme: every routed URL without a port takes it from ``_<scheme>._tcp``.
        retries: extra attempts on other pods (below).
        failure_statuses: statuses that count against a pod (default: those of
            ``strategy.health``, 502/503/504); the response is still returned.
        verify, cert, trust_env, http1, http2, limits, local_address, socket_options,
            connect_retries: httpx's options (``connect_retries`` is httpx's ``retries``),
            applied to every pod's pool; ``limits`` are per pod. ``http2=True`` needs
            ``h2`` (``pip install httpx[http2]``), or raises ``ImportError`` at once.
        proxy, uds: only for hosts passed through (below).
        engine: who keeps the pod connections (below): ``"auto"``, ``"llhttp"`` or
            ``"httpcore"``.
        meter_provider: where the per-service and per-pod metrics go (OpenTelemetry; README,
            "Metrics"); None: the global provider, whose instruments do nothing until an SDK
            is installed. ``stats()`` gives the same figures as plain dataclasses.
        per_pod_metrics: False reports every metric per service only (thousands of pods).

    What counts against a pod is judged once per attempt (``Verdict``) and acted on by the
    strategy and its health alike: a refused or reset connection, and a response body cut
    short, eject the pod at once (``consecutive_connect_failures``); a status in
    ``failure_statuses`` and a timeout after sending (read or write) count in a row
    (``consecutive_status_failures``). The client's own doing counts for nothing: its pool
    limit (``httpx.PoolTimeout``), a request it could not encode, a cancellation. The
    strategy hears the latency to the headers and the verdict when the body is closed, or at
    once when the whole body came with the headers (nothing is left to cut short).

    Retries: a request that never reached a pod (refused, reset while connecting, connect or
    pool timeout) is tried again on another pod, whatever its method; one that may have been
    sent (reset, or timed out after sending) only when idempotent with an in-memory body, so
    a sent POST is never resent. Never the same pod twice; at most ``retries`` extra
    attempts, each with the client's full timeouts: bound the whole request with a deadline
    of your own (``asyncio.timeout``), whose cancellation counts against no pod. Statuses
    and bodies cut short are never retried: the caller has the response already. The error
    the caller sees is httpx's own, with a note naming the pods tried (``ip:port``), or the
    pod whose body was cut short.

    Probes: with ``LeastLatency(probe="/healthz")`` the pods its picks pass by are measured by
    ``GET /healthz``, sent as tasks of the transport's own beside the request that made the
    pick, Host and TLS name the service's, within ``PROBE_TIMEOUT`` per wait, never retried;
    they are judged like attempts, counted as ``PodStats.probes`` (not as requests), and
    ``aclose()`` cancels those under way. A probe's failure never reaches a caller.

    Errors that are not httpx's: ``InvalidServiceName`` (also a ``ValueError``) for a URL
    whose host cannot be a service name, and whatever a ``Sticky`` key callable raises.
    Resolution failures are ``httpx.ConnectError`` with the resolver's error as the cause.

    Engine: with ``engine="auto"`` (the default) pods are reached over HTTP/1.1 by
    ``PodConnectionPool`` (asyncio protocols and the llhttp parser: a request costs the
    client a third to a half of its CPU on httpcore), one pool per pod; with ``http2=True``
    (or ``http1=False``), or ``engine="httpcore"``, by ``httpx.AsyncHTTPTransport``, whose
    pod pool is then split into httpcore pools of at most 8 kept-alive connections each
    (their limits add up to ``limits``), because httpcore's bookkeeping costs every request
    time in proportion to the connections of its pool. ``engine`` says which one is in use.
    Hosts passed through always use ``httpx.AsyncHTTPTransport``.

    Proxies: pods are always reached directly. A forward proxy would resolve the service name
    itself (one pod, or none from outside the cluster), and httpcore's HTTP proxy ignores the
    TLS server name. ``proxy`` and ``uds`` given here apply only to hosts passed through.
    httpx reads no proxy environment variables for a client given ``transport=`` (whatever
    ``trust_env`` says), so that is the way to use this transport. A client's own ``proxy=``,
    or mounting this transport under ``mounts=`` while ``HTTP(S)_PROXY`` is set, sends the
    matching URLs to httpx's proxy transport instead, bypassing this one.
    """

    def __init__(
        self,
        resolver: HeadlessResolver | None = None,
        strategy: Strategy | None = None,
        *,
        engine: Engine = "auto",
        **options: Unpack[TransportOptions],
    ) -> None:
        if engine not in ("auto", "llhttp", "httpcore"):
            raise InvalidArgument(f"engine: {engine!r} is not 'auto', 'llhttp' or 'httpcore'")
        http1_only = options.get("http1", True) and not options.get("http2", False)
        if engine == "llhttp" and not http1_only:
            raise InvalidArgument("engine='llhttp' speaks HTTP/1.1 only: leave http2=False")
        self._engine: Literal["llhttp", "httpcore"] = (
            "llhttp" if engine != "httpcore" and http1_only else "httpcore"
        )
        self._sharded_pools = self._engine == "httpcore"
        self._addressed_pools = self._engine == "llhttp"
        self._probes: set[asyncio.Task[None]] = set()
        super().__init__(resolver, strategy, **options)

    @property
    def engine(self) -> Literal["llhttp", "httpcore"]:
        """The engine of the pod pools: ``"llhttp"`` or ``"httpcore"``."""
        return self._engine

    def _new_pod_transport(self, key: PoolKey, **options: Any) -> httpx.AsyncBaseTransport:
        if self._engine == "llhttp":
            return PodConnectionPool(address=key, **options)
        return httpx.AsyncHTTPTransport(**options)

    def _new_passthrough(self, **options: Any) -> httpx.AsyncBaseTransport:
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
            if self._prober is not None:
                self._send_probes(request, route, endpoints)
            try:
                response = await shard.transport.handle_async_request(pod_request)
            except BaseException as exc:
                await _close(self._pools.checkin(shard))
                attempts.failed(exc)
                continue
            if isinstance(response.stream, WholeBody):  # nothing left to read: it is over
                await _close(attempts.answered_whole(response, shard))
                return response
            return _attach(response, attempts.answered(response, shard))

    def _send_probes(self, request: httpx.Request, route: Route, endpoints: EndpointSet) -> None:
        """Each probe the pick queued runs as a task of this transport's, beside the request."""
        for probe in self._due_probes(request, route, endpoints):
            task = asyncio.get_running_loop().create_task(self._probe(probe))
            self._probes.add(task)
            task.add_done_callback(functools.partial(self._probe_done, probe))

    def _probe_done(self, probe: Probe[httpx.AsyncBaseTransport], task: asyncio.Task[None]) -> None:
        self._probes.discard(task)
        probe.closed()  # cancelled before it started: the strategy hears of no outcome

    async def _probe(self, probe: Probe[httpx.AsyncBaseTransport]) -> None:
        shard = probe.start()
        try:
            response = await shard.transport.handle_async_request(probe.request)
            probe.answered(response.status_code)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except BaseException as exc:
            probe.failed(exc)
            if not isinstance(exc, Exception):
                raise  # cancelled by aclose()
        finally:
            await _close(probe.closed())

    async def aclose(self) -> None:
        """Close every pod pool, the pass-through transport, and the resolver if we made it."""
        probes = list(self._probes)
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        self._stop_recording()
        await _close(self._pools.close_all())
        await self._passthrough.aclose()
        if self._owns_resolver:
            await self._resolver.aclose()


async def _close(transports: Iterable[httpx.AsyncBaseTransport]) -> None:
    for transport in transports:
        await transport.aclose()


def _attach(
    response: httpx.Response, exchange: Exchange[httpx.AsyncBaseTransport]
) -> httpx.Response:
    """The pod's response, its body now ending the exchange when closed."""
    body = response.stream
    assert isinstance(body, httpx.AsyncByteStream)
    response.stream = _PodResponseStream(body, exchange)
    return response


class _PodResponseStream(
    PodBody[httpx.AsyncByteStream, httpx.AsyncBaseTransport], httpx.AsyncByteStream
):
    """The pod's response body: its failures are the pod's; closing it ends the attempt.

    Its own iterator rather than an async generator: one frame less per chunk, and no
    generator for the loop to track and finalise on every response.
    """

    __slots__ = ("_chunks",)
    _chunks: AsyncIterator[bytes]

    def __aiter__(self) -> _PodResponseStream:
        self._chunks = self._stream.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except httpx.TransportError as exc:
            self._exchange.body_failed(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            await _close(self._exchange.closed())
