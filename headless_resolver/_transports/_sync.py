"""SyncHeadlessTransport: the same routing for ``httpx.Client``, in threads without a loop."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar, Unpack

import httpx

from headless_resolver._endpoints import EndpointSet
from headless_resolver._errors import HeadlessResolverError, InvalidServiceName
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
from headless_resolver._transports._routes import PoolKey, Route

T = TypeVar("T")
PROBE_THREADS = 2
"""Threads a sync transport sends active probes from, started with its first probe."""


class _LoopThread:
    """One background thread running the event loop a resolver lives on, for its users.

    Every sync transport given the same resolver uses the same thread, so the resolver stays
    on one loop. The thread stops when its last user closes, after cancelling what still
    runs on its loop (the resolver's refreshes): the loop is the thread's, the resolver not.
    """

    _lock = threading.Lock()
    _by_resolver: weakref.WeakKeyDictionary[HeadlessResolver, _LoopThread] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="headless-resolver", daemon=True
        )
        self._thread.start()
        self._users = 1

    @classmethod
    def serving(cls, resolver: HeadlessResolver) -> _LoopThread:
        """The thread ``resolver`` lives on, now with one more user."""
        with cls._lock:
            thread = cls._by_resolver.get(resolver)
            if thread is None:
                thread = cls._by_resolver[resolver] = _LoopThread()
            else:
                thread._users += 1
            return thread

    def adopt(self, resolver: HeadlessResolver) -> None:
        """``resolver`` was made on this thread: other transports given it share the thread."""
        with self._lock:
            self._by_resolver[resolver] = self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def release(self) -> None:
        """One user fewer; the last one stops the thread."""
        with self._lock:
            self._users -= 1
            if self._users:
                return
            for resolver, thread in list(self._by_resolver.items()):
                if thread is self:
                    del self._by_resolver[resolver]
        try:
            self.run(_cancel_pending())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _cancel_pending() -> None:
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def _new_resolver() -> HeadlessResolver:
    """Made on the loop thread, so anything it binds to a loop binds to that one."""
    return HeadlessResolver()


class SyncHeadlessTransport(BaseHeadlessTransport[httpx.HTTPTransport], httpx.BaseTransport):
    """``HeadlessTransport`` for ``httpx.Client``: Flask, Django, scripts, worker threads.

    The caller's threads need no event loop: the resolver runs on a background thread, one
    per resolver, shared by every sync transport given that resolver. A request whose
    endpoint set is cached (``resolver.peek()``) never leaves the caller's thread; a miss
    waits for the resolver thread, at most ``resolve_timeout`` seconds, then fails with
    ``httpx.ConnectTimeout``. One client may be shared by many threads (the strategies are
    thread-safe, the pool bookkeeping is locked).

    ``close()`` closes what this transport made: its pools, and the resolver if it made it.
    A resolver passed in stays open for the other clients sharing it; the thread it runs on
    stops with its last transport, and its owner may then close it
    (``asyncio.run(resolver.aclose())``). The probes of ``LeastLatency(probe=...)`` go from up
    to ``PROBE_THREADS`` threads of the transport's own, started with the first probe;
    ``close()`` waits for the probes under way (each wait within ``PROBE_TIMEOUT``) and sends
    no new one. Every other parameter (matching, ports, retries, failure judgement, proxies,
    httpx options) is as documented on ``HeadlessTransport``.
    """

    _threaded: ClassVar[bool] = True

    def __init__(
        self,
        resolver: HeadlessResolver | None = None,
        strategy: Strategy | None = None,
        *,
        resolve_timeout: float = 30.0,
        **options: Unpack[TransportOptions],
    ) -> None:
        self._resolve_timeout = resolve_timeout
        self._closed = False
        self._closing = threading.Lock()
        self._probe_threads: ThreadPoolExecutor | None = None
        super().__init__(resolver, strategy, **options)

    def _new_pod_transport(self, key: PoolKey, **options: Any) -> httpx.HTTPTransport:
        return httpx.HTTPTransport(**options)

    def _new_passthrough(self, **options: Any) -> httpx.HTTPTransport:
        return httpx.HTTPTransport(**options)

    def _open_resolver(self, resolver: HeadlessResolver | None) -> HeadlessResolver:
        if resolver is not None:
            self._thread = _LoopThread.serving(resolver)
            return resolver
        self._thread = _LoopThread()
        made = self._thread.run(_new_resolver())
        self._thread.adopt(made)
        return made

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        route = self._routes.route(request.url)
        if route is None:
            return self._passthrough.handle_request(request)
        endpoints = self._endpoints(request, route)
        if endpoints.version != route.version:
            _close(self._pools.update(route, endpoints))
        attempts = Attempts(self._rules, request, route, endpoints)
        while True:
            shard, pod_request = attempts.start()
            if self._prober is not None:
                self._send_probes(request, route, endpoints)
            try:
                response = shard.transport.handle_request(pod_request)
            except BaseException as exc:
                _close(self._pools.checkin(shard))
                attempts.failed(exc)
            else:
                return _attach(response, attempts.answered(response, shard))

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

    def _send_probes(self, request: httpx.Request, route: Route, endpoints: EndpointSet) -> None:
        """The probes the pick queued go to the transport's probe threads."""
        probes = self._due_probes(request, route, endpoints)
        if not probes:
            return
        with self._closing:
            if self._probe_threads is None and not self._closed:
                self._probe_threads = ThreadPoolExecutor(
                    PROBE_THREADS, thread_name_prefix="headless-resolver-probe"
                )
            for probe in probes:
                if self._closed or self._probe_threads is None:
                    probe.closed()  # never sent: the pod is released
                else:
                    self._probe_threads.submit(self._probe, probe)

    def _probe(self, probe: Probe[httpx.HTTPTransport]) -> None:
        if self._closed:  # queued before close(): not sent
            probe.closed()
            return
        shard = probe.start()
        try:
            response = shard.transport.handle_request(probe.request)
            probe.answered(response.status_code)
            try:
                response.read()
            finally:
                response.close()
        except Exception as exc:
            probe.failed(exc)
        finally:
            _close(probe.closed())

    def close(self) -> None:
        """Close every pod pool, the pass-through transport and, if this transport made the
        resolver, the resolver; the resolver thread stops once no transport uses it."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            probe_threads = self._probe_threads
        if probe_threads is not None:
            probe_threads.shutdown(wait=True)
        self._stop_recording()
        _close(self._pools.close_all())
        self._passthrough.close()
        try:
            if self._owns_resolver:
                self._thread.run(self._resolver.aclose(), self._resolve_timeout)
        finally:
            self._thread.release()


def _close(transports: Iterable[httpx.HTTPTransport]) -> None:
    for transport in transports:
        transport.close()


def _attach(response: httpx.Response, exchange: Exchange[httpx.HTTPTransport]) -> httpx.Response:
    """The pod's response, its body now ending the exchange when closed."""
    body = response.stream
    assert isinstance(body, httpx.SyncByteStream)
    response.stream = _PodResponseStream(body, exchange)
    return response


class _PodResponseStream(PodBody[httpx.SyncByteStream, httpx.HTTPTransport], httpx.SyncByteStream):
    """The pod's response body: its failures are the pod's; closing it ends the attempt."""

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except httpx.TransportError as exc:
            self._exchange.body_failed(exc)
            raise

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            _close(self._exchange.closed())
