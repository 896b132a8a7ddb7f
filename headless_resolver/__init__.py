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
from headless_resolver._kubernetes._config import KubeConfig, KubeConfigError
from headless_resolver._resolver import HeadlessResolver, ResolverStats
from headless_resolver._sources import KubernetesSource, Source
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
    "KubeConfig",
    "KubeConfigError",
    "KubernetesSource",
    "LeastLatency",
    "NoEndpointsAvailable",
    "PassiveHealth",
    "ResolutionError",
    "ResolverStats",
    "RoundRobin",
    "ServiceNotFound",
    "Source",
    "Sticky",
    "Strategy",
    "SyncHeadlessTransport",
]
