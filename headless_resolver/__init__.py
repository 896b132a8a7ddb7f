"""Client-side service discovery and load balancing over Kubernetes headless Services."""

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._errors import (
    HeadlessResolverError,
    InvalidServiceName,
    NoEndpointsAvailable,
    ResolutionError,
    ServiceNotFound,
)
from headless_resolver._resolver import HeadlessResolver, ResolverStats

__all__ = [
    "Endpoint",
    "EndpointSet",
    "HeadlessResolver",
    "HeadlessResolverError",
    "InvalidServiceName",
    "NoEndpointsAvailable",
    "ResolutionError",
    "ResolverStats",
    "ServiceNotFound",
]
