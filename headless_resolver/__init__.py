"""Client-side service discovery and load balancing over Kubernetes headless Services."""

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._errors import (
    HeadlessResolverError,
    InvalidServiceName,
    NoEndpointsAvailable,
    ResolutionError,
    ServiceNotFound,
)

__all__ = [
    "Endpoint",
    "EndpointSet",
    "HeadlessResolverError",
    "InvalidServiceName",
    "NoEndpointsAvailable",
    "ResolutionError",
    "ServiceNotFound",
]
