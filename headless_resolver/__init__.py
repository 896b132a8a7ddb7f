"""Client-side service discovery and load balancing over Kubernetes headless Services."""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from headless_resolver._dns import DnsAnswer, DnsBackend, RecordType, SrvRecord
from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._errors import (
    FailureReason,
    HeadlessResolverError,
    InvalidArgument,
    InvalidServiceName,
    NoEndpointsAvailable,
    ResolutionError,
    ResolverClosed,
    ServiceNotFound,
)
from headless_resolver._health import LatencyEjection, PassiveHealth
from headless_resolver._kubernetes._config import KubeConfig, KubeConfigError
from headless_resolver._metrics import NameStats, PodStats, ServiceStats, TransportStats
from headless_resolver._names import NameLookup, PortRef, ServiceName
from headless_resolver._resolver import HeadlessResolver, ResolverStats
from headless_resolver._sources import KubernetesSource, Source
from headless_resolver._strategies import (
    LeastLatency,
    PeakEwma,
    RoundRobin,
    SlowStart,
    Sticky,
    Strategy,
)
from headless_resolver._transports import HeadlessTransport, SyncHeadlessTransport
from headless_resolver._verdict import Verdict

if TYPE_CHECKING:
    from headless_resolver._aiohttp import HeadlessAiohttpResolver

try:
    __version__ = version("headless-resolver")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> object:
    # Imported on first use, so aiohttp stays an optional extra.
    if name == "HeadlessAiohttpResolver":
        from headless_resolver._aiohttp import HeadlessAiohttpResolver

        return HeadlessAiohttpResolver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DnsAnswer",
    "DnsBackend",
    "Endpoint",
    "EndpointSet",
    "FailureReason",
    "HeadlessAiohttpResolver",
    "HeadlessResolver",
    "HeadlessResolverError",
    "HeadlessTransport",
    "InvalidArgument",
    "InvalidServiceName",
    "KubeConfig",
    "KubeConfigError",
    "KubernetesSource",
    "LatencyEjection",
    "LeastLatency",
    "NameLookup",
    "NameStats",
    "NoEndpointsAvailable",
    "PassiveHealth",
    "PeakEwma",
    "PodStats",
    "PortRef",
    "RecordType",
    "ResolutionError",
    "ResolverClosed",
    "ResolverStats",
    "RoundRobin",
    "ServiceName",
    "ServiceNotFound",
    "ServiceStats",
    "SlowStart",
    "Source",
    "SrvRecord",
    "Sticky",
    "Strategy",
    "SyncHeadlessTransport",
    "TransportStats",
    "Verdict",
]
