"""In-process stand-ins for a Kubernetes cluster, for tests and examples."""

from headless_resolver.testing._clusterdns import ClusterDNS

__all__ = ["ClusterDNS"]
