"""The exception tree: every error the library raises derives from HeadlessResolverError."""

from __future__ import annotations


class HeadlessResolverError(Exception):
    """Base class of every error raised by headless_resolver."""


class InvalidServiceName(HeadlessResolverError, ValueError):
    """The name cannot be a Kubernetes service name; raised before any packet is sent."""


class ServiceNotFound(HeadlessResolverError):
    """DNS says the service (or the named port) does not exist: NXDOMAIN or no SRV records.

    Over DNS a service scaled to zero looks the same as one that does not exist.
    """

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class ResolutionError(HeadlessResolverError):
    """DNS could not answer (timeout, SERVFAIL, REFUSED, malformed) and nothing stale to serve."""

    def __init__(self, message: str, *, name: str | None = None, rcode: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.rcode = rcode


class NoEndpointsAvailable(HeadlessResolverError):
    """Every endpoint of the service is ejected or down."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name
