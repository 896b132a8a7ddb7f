"""The exception tree: every error the library raises derives from HeadlessResolverError."""

from __future__ import annotations

from typing import Any, Literal

FailureReason = Literal[
    "RCODE", "TIMEOUT", "NETWORK", "MALFORMED", "TRUNCATED", "CANCELLED", "BACKEND", "API_STATUS"
]
"""Why no usable answer came: ``RCODE`` when a DNS server answered with a failure rcode (then
held in ``ResolutionError.rcode``), ``API_STATUS`` when the Kubernetes API answered with an
error status, else what kept an answer from arriving or being read."""


class HeadlessResolverError(Exception):
    """Base class of every error raised by headless_resolver.

    ``name`` is the service or DNS name the error is about, when there is one.
    """

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes survive pickling (multiprocessing, concurrent.futures):
        # the default would call the class with the message alone.
        return _rebuild, (type(self), self.args), self.__dict__


def _rebuild(cls: type[HeadlessResolverError], args: tuple[Any, ...]) -> HeadlessResolverError:
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class InvalidArgument(HeadlessResolverError, ValueError):
    """An argument is out of range or of the wrong kind; raised at once, before any I/O."""


class InvalidServiceName(InvalidArgument):
    """The name cannot be a Kubernetes service name; raised before any packet is sent."""


class ServiceNotFound(HeadlessResolverError):
    """DNS says the service (or the named port) does not exist: NXDOMAIN or no SRV records.

    Over DNS a service scaled to zero looks the same as one that does not exist.
    """


class ResolutionError(HeadlessResolverError):
    """DNS could not answer (timeout, SERVFAIL, REFUSED, malformed) and nothing stale to serve.

    ``reason`` says why (see ``FailureReason``); ``rcode`` is the DNS rcode a server answered
    with (``"SERVFAIL"``, ``"REFUSED"``...) when ``reason`` is ``"RCODE"``, else None.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        reason: FailureReason,
        rcode: str | None = None,
    ) -> None:
        super().__init__(message, name=name)
        self.reason: FailureReason = reason
        self.rcode = rcode


class NoEndpointsAvailable(HeadlessResolverError):
    """Every endpoint of the service is ejected or down."""


class ResolverClosed(HeadlessResolverError):
    """The resolver was closed (``aclose()``): it neither resolves nor serves its cache."""
