"""Client-side service discovery and load balancing over Kubernetes headless Services."""

from typing import TYPE_CHECKING

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._errors import (
    HeadlessResolverError,
    InvalidServiceName,
    NoEndpointsAvailable,
    ResolutionError,
    ServiceNotFound,
)
from headless_resolver._health import LatencyEjection, PassiveHealth
from headless_resolver._resolver import HeadlessResolver, ResolverStats
from headless_resolver._strategies import (
    LeastLatency,
    PeakEwma,
    RoundRobin,
    SlowStart,
    Sticky,
    Strategy,
)
from headless_resolver._transports import HeadlessTransport, SyncHeadlessTransport

if TYPE_CHECKING:
    from headless_resolver._aiohttp import HeadlessAiohttpResolver


def __getattr__(name: str) -> object:
    # Imported on first use, so aiohttp stays an optional extra.
    if name == "HeadlessAiohttpResolver":
        from headless_resolver._aiohttp import HeadlessAiohttpResolver

        return HeadlessAiohttpResolver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Endpoint",
    "EndpointSet",
    "HeadlessAiohttpResolver",
    "HeadlessResolver",
    "HeadlessResolverError",
    "HeadlessTransport",
    "InvalidServiceName",
    "LatencyEjection",
    "LeastLatency",
    "NoEndpointsAvailable",
    "PassiveHealth",
    "PeakEwma",
    "ResolutionError",
    "ResolverStats",
    "RoundRobin",
    "ServiceNotFound",
    "SlowStart",
    "Sticky",
    "Strategy",
    "SyncHeadlessTransport",
]
