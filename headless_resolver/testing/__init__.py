"""In-process stand-ins for a Kubernetes cluster, for tests and examples.

Needs the ``testing`` extra (``pip install headless-resolver[testing]``) for the TLS pods.
"""

from headless_resolver.testing._cluster import LocalCluster
from headless_resolver.testing._clusterdns import ClusterDNS
from headless_resolver.testing._kubeapi import KubernetesAPI, SliceEndpoint
from headless_resolver.testing._model import EndpointSpec, PortSpec, ServiceSpec
from headless_resolver.testing._pods import PodServer, make_tls
from headless_resolver.testing._system_dns import system_resolution_via

__all__ = [
    "ClusterDNS",
    "EndpointSpec",
    "KubernetesAPI",
    "LocalCluster",
    "PodServer",
    "PortSpec",
    "ServiceSpec",
    "SliceEndpoint",
    "make_tls",
    "system_resolution_via",
]
