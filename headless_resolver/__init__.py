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
from headless_resolver._health import PassiveHealth
from headless_resolver._metrics import NameStats, PodStats, ServiceStats, TransportStats
from headless_resolver._resolver import HeadlessResolver, ResolverStats
from headless_resolver._strategies import LeastLatency, RoundRobin, Sticky, Strategy
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
    "LeastLatency",
    "NameStats",
    "NoEndpointsAvailable",
    "PassiveHealth",
    "PodStats",
    "ResolutionError",
    "ResolverStats",
    "RoundRobin",
    "ServiceNotFound",
    "ServiceStats",
    "Sticky",
    "Strategy",
    "SyncHeadlessTransport",
    "TransportStats",
]
