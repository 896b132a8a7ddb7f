"""Client-side service discovery and load balancing over Kubernetes headless Services."""

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._errors import (
    HeadlessResolverError,
    InvalidServiceName,
    NoEndpointsAvailable,
    ResolutionError,
    ServiceNotFound,
)
from headless_resolver._health import PassiveHealth
from headless_resolver._resolver import HeadlessResolver, ResolverStats
from headless_resolver._strategies import LeastLatency, RoundRobin, Sticky, Strategy

__all__ = [
    "Endpoint",
    "EndpointSet",
    "HeadlessResolver",
    "HeadlessResolverError",
    "InvalidServiceName",
    "LeastLatency",
    "NoEndpointsAvailable",
    "PassiveHealth",
    "ResolutionError",
    "ResolverStats",
    "RoundRobin",
    "ServiceNotFound",
    "Sticky",
    "Strategy",
]
