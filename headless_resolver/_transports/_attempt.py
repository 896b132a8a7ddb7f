"""The decisions of one request to a service, free of I/O: both transports drive them.

As dnspython's ``_Resolution`` or httpcore's pool bookkeeping: ``Attempts`` says which pod to
try and with what request, hears how the attempt ended, and either asks for another attempt
or raises the error the caller sees; ``Exchange`` follows an answered attempt until its body
is closed. What counts against a pod is the ``Judge``'s verdict; the strategy (and through it
health) hears that verdict once per pick, when the attempt is over: at an error, or when the
response body is closed, so a body cut short counts as the failure it is (or at once, when
the whole body came with the head: ``answered_whole``).

Retry rules: a request that never reached a pod (refused, reset while connecting, a connect
or pool timeout) is tried again on another pod whatever its method; one that may have been
sent (reset, closed or timed out after sending) only when idempotent with an in-memory body.
Never the same pod twice, at most ``retries`` extra attempts. Statuses are never retried:
the response is the caller's to see; neither is a body cut short: the caller has the
response already. Whether a retry is safe (was the request sent?) is a question about the
request, apart from the verdict (what the outcome says about the pod): a reset before the
answer is a connection failure either way, but only one that never sent may be replayed
whatever the method.

``Probe`` is the active probe ``LeastLatency(probe=...)`` asks for: one ``GET`` of its path to
a pod that picks pass by, never retried and never a user's; its verdict is judged and heard
like an attempt's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._errors import HeadlessResolverError, NoEndpointsAvailable
from headless_resolver._logs import transport_log as logger
from headless_resolver._metrics import PodRecord, TransportRecorder
from headless_resolver._strategies import Strategy
from headless_resolver._transports._pools import PodPools, PoolShard
from headless_resolver._transports._routes import Route, pod_request
from headless_resolver._verdict import Judge, Verdict

T = TypeVar("T")
S = TypeVar("S")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAYBE_SENT = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ReadTimeout, httpx.WriteTimeout)
PROBE_TIMEOUT = 5.0
"""Seconds a probe waits for a connection, to connect, to write and to read: httpx's default."""
_PROBE_TIMEOUTS = dict.fromkeys(("connect", "read", "write", "pool"), PROBE_TIMEOUT)


def replayable(request: httpx.Request) -> bool:
    """Idempotent and with a body held in memory, so sending it again is both safe and possible."""
    return request.method in IDEMPOTENT_METHODS and isinstance(request.stream, httpx.ByteStream)


def retryable(request: httpx.Request, exc: BaseException) -> bool:
    """Whether an attempt that ended with ``exc`` may be made again on another pod."""
    if isinstance(exc, _NEVER_SENT):
        return True
    return isinstance(exc, _MAYBE_SENT) and replayable(request)


def resolution_failed(request: httpx.Request, exc: HeadlessResolverError) -> httpx.ConnectError:
    """Resolver errors as httpx's own, so ``except httpx.TransportError`` keeps working."""
    error = httpx.ConnectError(f"{request.url.host}: {exc}", request=request)
    error.__cause__ = exc
    return error


@dataclass(slots=True, frozen=True)
class AttemptRules(Generic[T]):
    """What every request of one transport shares: who picks, who judges, the pools, and
    who counts."""

    strategy: Strategy
    judge: Judge
    pools: PodPools[T]
    retries: int
    recorder: TransportRecorder
    addressed: bool = False
    """Whether each pod transport knows its pod's address (and TLS name), and so takes the
    caller's request as it is, instead of a copy addressed to the pod (``pod_request``)."""

    def conclude(
        self,
        route: Route,
        endpoint: Endpoint,
        pod: PodRecord,
        latency: float,
        verdict: Verdict,
        method: str,
        *,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        """An attempt's verdict is in: the strategy (and its health) and the metrics hear it,
        here and nowhere else."""
        self._tell_strategy(route, endpoint, latency, verdict, error, "attempt on")
        self.recorder.finished(pod, verdict, latency, method, status=status, error=error)

    def conclude_probe(
        self, route: Route, endpoint: Endpoint, latency: float, verdict: Verdict, error: str | None
    ) -> None:
        """A probe's verdict is in: the strategy and its health hear it as an attempt's; the
        metrics counted it as a probe when it started, not as a request."""
        self._tell_strategy(route, endpoint, latency, verdict, error, "probe of")

    def _tell_strategy(
        self,
        route: Route,
        endpoint: Endpoint,
        latency: float,
        verdict: Verdict,
        error: str | None,
        what: str,
    ) -> None:
        if verdict.about_the_pod:
            self.strategy.observe(endpoint, latency, verdict)
        else:
            self.strategy.release(endpoint)
        if verdict is not Verdict.OK:
            logger.debug(
                "%s: %s %s: %s after %.1f ms (%s)",
                route.host,
                what,
                endpoint.netloc(route.default_port),
                verdict.value,
                latency * 1000,
                error,
            )


def status_error(status: int) -> str | None:
    """What an answer's status says went wrong, for metrics and logs: the status from 400."""
    return str(status) if status >= 400 else None


class Attempts(Generic[T]):
    """One request's attempts at the pods of a route, until one is answered or none is left.

    ``start()`` picks an untried pod and checks out its pool; then the transport reports the
    attempt's end with ``failed(exc)`` (which raises unless another attempt is due) or
    ``answered(response)``.
    """

    __slots__ = (
        "_endpoint",
        "_endpoints",
        "_last_error",
        "_pod",
        "_request",
        "_route",
        "_rules",
        "_started",
        "tried",
    )

    def __init__(
        self, rules: AttemptRules[T], request: httpx.Request, route: Route, endpoints: EndpointSet
    ) -> None:
        self._rules = rules
        self._request = request
        self._route = route
        self._endpoints = endpoints
        self.tried: list[Endpoint] = []
        self._endpoint: Endpoint | None = None
        self._last_error: httpx.TransportError | None = None
        self._pod: PodRecord | None = None
        self._started = 0.0

    def start(self) -> tuple[PoolShard[T], httpx.Request]:
        """The next attempt: a shard of the picked pod's pool, and the request to send it."""
        strategy = self._rules.strategy
        try:
            endpoint = strategy.pick(
                self._endpoints, strategy.key_for(self._request), exclude=self.tried
            )
        except NoEndpointsAvailable as exc:
            if self._last_error is None:
                raise resolution_failed(self._request, exc) from exc
            raise self._noted(self._last_error) from None  # says more than "none left"
        self.tried.append(endpoint)
        self._endpoint = endpoint
        request = self._request
        try:
            if not self._rules.addressed:
                request = pod_request(request, self._route, endpoint)
            shard = self._rules.pools.checkout(self._route, endpoint)
        except BaseException:
            strategy.release(endpoint)
            raise
        route = self._route
        self._pod = self._rules.recorder.started(
            self._endpoints, endpoint, route.host, route.default_port
        )
        self._started = time.perf_counter()
        return shard, request

    def failed(self, exc: BaseException) -> None:
        """The attempt ended with ``exc`` (its shard checked in): raises it unless a retry is due.

        The error the caller sees is ``exc`` itself, with a note naming the pods tried.
        """
        assert self._endpoint is not None
        assert self._pod is not None
        latency = time.perf_counter() - self._started
        verdict = self._rules.judge.error(exc)
        error = type(exc).__name__
        self._rules.conclude(
            self._route,
            self._endpoint,
            self._pod,
            latency,
            verdict,
            self._request.method,
            error=error,
        )
        if not isinstance(exc, httpx.TransportError):
            raise exc  # a cancellation, or a bug: as it is
        if len(self.tried) > self._rules.retries or not retryable(self._request, exc):
            raise self._noted(exc)
        self._last_error = exc
        self._rules.recorder.retried(self._pod)

    def answered(self, response: httpx.Response, shard: PoolShard[T]) -> Exchange[T]:
        """The pod answered: the caller's response, whose body the returned exchange follows."""
        assert self._endpoint is not None
        assert self._pod is not None
        response.request = self._request
        latency = time.perf_counter() - self._started
        verdict = self._rules.judge.answer(response.status_code)
        return Exchange(
            self._rules,
            self._route,
            self._endpoint,
            shard,
            latency,
            verdict,
            self._pod,
            self._request.method,
            response.status_code,
        )

    def answered_whole(self, response: httpx.Response, shard: PoolShard[T]) -> Sequence[T]:
        """The pod answered with the whole body at once: the attempt is over, and its verdict
        (the status's) is in. Returns pod transports the caller must close."""
        assert self._endpoint is not None
        assert self._pod is not None
        response.request = request = self._request
        latency = time.perf_counter() - self._started
        status = response.status_code
        rules = self._rules
        rules.conclude(
            self._route,
            self._endpoint,
            self._pod,
            latency,
            rules.judge.answer(status),
            request.method,
            status=status,
            error=status_error(status),
        )
        return rules.pools.checkin(shard)

    def _noted(self, exc: httpx.TransportError) -> httpx.TransportError:
        port = self._route.default_port
        exc.add_note("tried pods: " + ", ".join(e.netloc(port) for e in self.tried))
        return exc


class Exchange(Generic[T]):
    """An answered attempt, from its headers until the caller closes the body.

    The strategy hears the verdict when the body is closed: the answer's own (its status),
    unless reading the body failed, which is then the verdict (``body_failed``).
    """

    __slots__ = (
        "_endpoint",
        "_error",
        "_latency",
        "_method",
        "_pod",
        "_route",
        "_rules",
        "_shard",
        "_status",
        "_verdict",
    )

    def __init__(
        self,
        rules: AttemptRules[T],
        route: Route,
        endpoint: Endpoint,
        shard: PoolShard[T],
        latency: float,
        verdict: Verdict,
        pod: PodRecord,
        method: str,
        status: int,
    ) -> None:
        self._rules = rules
        self._route = route
        self._endpoint = endpoint
        self._shard: PoolShard[T] | None = shard
        self._latency = latency
        self._verdict = verdict
        self._pod = pod
        self._method = method
        self._status = status
        self._error = status_error(status)

    def body_failed(self, exc: BaseException) -> None:
        """Reading the body ended with ``exc``: judge it, and name the pod on the error."""
        verdict = self._rules.judge.body_error(exc)
        if verdict.about_the_pod:
            self._verdict = verdict
            self._error = type(exc).__name__
            pod = self._endpoint.netloc(self._route.default_port)
            exc.add_note(f"while reading the response body from pod {pod} ({self._route.host})")

    def closed(self) -> Sequence[T]:
        """The body is closed: tell the strategy; returns pod transports the caller must close."""
        shard, self._shard = self._shard, None
        if shard is None:
            return ()
        self._rules.conclude(
            self._route,
            self._endpoint,
            self._pod,
            self._latency,
            self._verdict,
            self._method,
            status=self._status,
            error=self._error,
        )
        return self._rules.pools.checkin(shard)


class PodBody(Generic[S, T]):
    """A pod's response body (``S``) as the caller reads it, behind the exchange it ends.

    A twin adds the reading and closing: an error while reading is the pod's
    (``Exchange.body_failed``), and closing the body ends the attempt (``Exchange.closed``).
    """

    __slots__ = ("_exchange", "_stream")

    def __init__(self, stream: S, exchange: Exchange[T]) -> None:
        self._stream = stream
        self._exchange = exchange


class Probe(Generic[T]):
    """One active probe: ``GET path`` to a pod, Host and TLS name the service's, as a request.

    ``start()`` checks out the pod's pool; the transport then reports ``answered(status)``, a
    failure (``failed``) before or while the body is read, and ``closed()`` once the body is
    read and closed, which concludes it. Nothing is retried and nothing raises: the outcome
    is the strategy's and health's to hear, within ``PROBE_TIMEOUT`` for each wait.
    """

    __slots__ = (
        "_answered",
        "_concluded",
        "_endpoint",
        "_endpoints",
        "_error",
        "_latency",
        "_route",
        "_rules",
        "_shard",
        "_started",
        "_verdict",
        "request",
    )

    def __init__(
        self,
        rules: AttemptRules[T],
        route: Route,
        endpoints: EndpointSet,
        endpoint: Endpoint,
        url: httpx.URL,
        path: str,
    ) -> None:
        self._rules = rules
        self._route = route
        self._endpoints = endpoints
        self._endpoint = endpoint
        probe = httpx.Request("GET", url.join(path), extensions={"timeout": _PROBE_TIMEOUTS})
        # as Attempts.start: a pool made for its pod takes the request as it is
        self.request = probe if rules.addressed else pod_request(probe, route, endpoint)
        self._shard: PoolShard[T] | None = None
        self._started = self._latency = 0.0
        self._answered = False
        self._concluded = False
        self._verdict = Verdict.NOT_THE_PODS
        self._error: str | None = None

    def start(self) -> PoolShard[T]:
        """A shard of the pod's pool to send ``request`` through."""
        route = self._route
        self._rules.recorder.probed(self._endpoints, self._endpoint, route.host, route.default_port)
        self._shard = self._rules.pools.checkout(route, self._endpoint)
        self._started = time.perf_counter()
        return self._shard

    def answered(self, status: int) -> None:
        self._answered = True
        self._latency = time.perf_counter() - self._started
        self._verdict = self._rules.judge.answer(status)
        self._error = status_error(status)

    def failed(self, exc: BaseException) -> None:
        """The probe ended with ``exc``, before its answer or while reading the body."""
        judge = self._rules.judge
        verdict = judge.body_error(exc) if self._answered else judge.error(exc)
        if verdict.about_the_pod:  # a cancellation leaves the answer's verdict, if any
            if not self._answered:
                self._latency = time.perf_counter() - self._started
            self._verdict = verdict
            self._error = type(exc).__name__

    def closed(self) -> Sequence[T]:
        """The probe is over (or never started): its verdict is heard, once; returns pod
        transports to close."""
        if self._concluded:
            return ()
        self._concluded = True
        shard, self._shard = self._shard, None
        self._rules.conclude_probe(
            self._route, self._endpoint, self._latency, self._verdict, self._error
        )
        return () if shard is None else self._rules.pools.checkin(shard)
