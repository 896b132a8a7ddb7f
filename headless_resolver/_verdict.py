"""What one attempt at a pod says about the pod: the one place failures are judged.

A transport reports what happened (a status, an httpx error before the answer, an error while
reading the body, a cancellation); ``Judge`` turns it into one ``Verdict``; health and
strategies act on the verdict and never judge again. The rules:

- a status in ``failure_statuses`` is a failing answer; any other status is ``OK``;
- a connection the pod refused, cut or failed to set up (including TLS) is a connection
  failure, and so is a response body cut short: a pod that resets is ejected at once;
- a timeout after the request was sent (read or write) counts like a failing status, in a
  row: a pod may be slow once without being ejected, not five times running;
- what the client did to itself is nobody's verdict on the pod: its own connection pool
  running out (``httpx.PoolTimeout``), a request it could not encode, a cancellation.
"""

from __future__ import annotations

import enum
from collections.abc import Collection

import httpx

DEFAULT_FAILURE_STATUSES = frozenset({502, 503, 504})


class Verdict(enum.Enum):
    """The outcome of one attempt at a pod, as health and strategies count it.

    Truthy only for ``OK``, so a strategy written against ``observe(endpoint, latency_s, ok:
    bool)`` reads a verdict as the ``ok`` it expects.
    """

    OK = "ok"
    FAILING_STATUS = "failing status"
    TIMEOUT = "timeout"
    CONNECT_FAILURE = "connect failure"
    BODY_CUT_SHORT = "body cut short"
    NOT_THE_PODS = "not the pod's doing"

    broke_connection: bool
    """The pod refused or cut the connection: counted with ``consecutive_connect_failures``."""
    about_the_pod: bool
    """Whether the outcome says anything about the pod at all."""

    def __init__(self, label: str) -> None:
        # Plain attributes, not properties: read on every attempt.
        self.broke_connection = label in ("connect failure", "body cut short")
        self.about_the_pod = label != "not the pod's doing"

    def __bool__(self) -> bool:
        return self is Verdict.OK

    @classmethod
    def of(cls, ok: bool | Verdict, status: int | None = None) -> Verdict:
        """A verdict from ``observe()``'s older form: ``ok``, and ``status`` when it failed.

        ``False`` with a status is a failing status (the caller judged it so), ``False``
        without one a connection failure, as the ``Strategy`` protocol has always said.
        """
        if isinstance(ok, Verdict):
            return ok
        if ok:
            return cls.OK
        return cls.CONNECT_FAILURE if status is None else cls.FAILING_STATUS


_NOT_THE_PODS = (httpx.PoolTimeout, httpx.LocalProtocolError, httpx.UnsupportedProtocol)
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class Judge:
    """Turns what happened to an attempt into its ``Verdict``; one per transport.

    ``failure_statuses``: the statuses that count against a pod (default: 502, 503, 504).
    """

    __slots__ = ("failure_statuses",)

    def __init__(self, failure_statuses: Collection[int] = DEFAULT_FAILURE_STATUSES) -> None:
        self.failure_statuses = frozenset(failure_statuses)

    def answer(self, status: int) -> Verdict:
        """The pod answered with ``status``."""
        return Verdict.FAILING_STATUS if status in self.failure_statuses else Verdict.OK

    def error(self, exc: BaseException) -> Verdict:
        """The attempt ended with ``exc`` before the pod's answer arrived."""
        if not isinstance(exc, httpx.TransportError) or isinstance(exc, _NOT_THE_PODS):
            return Verdict.NOT_THE_PODS  # a cancellation, an error of the caller's own
        if isinstance(exc, _NEVER_SENT):
            return Verdict.CONNECT_FAILURE
        if isinstance(exc, httpx.TimeoutException):
            return Verdict.TIMEOUT
        return Verdict.CONNECT_FAILURE  # reset or closed after sending, before the answer

    def body_error(self, exc: BaseException) -> Verdict:
        """Reading the answer's body ended with ``exc``."""
        if not isinstance(exc, httpx.TransportError) or isinstance(exc, _NOT_THE_PODS):
            return Verdict.NOT_THE_PODS
        if isinstance(exc, httpx.TimeoutException):
            return Verdict.TIMEOUT
        return Verdict.BODY_CUT_SHORT
