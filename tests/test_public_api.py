"""The public names are a contract: adding or removing one is a decision, made here."""

from __future__ import annotations

import importlib.metadata
import inspect
import pickle

import pytest

import headless_resolver
import headless_resolver.testing
from headless_resolver import (
    DnsAnswer,
    DnsBackend,
    HeadlessResolver,
    HeadlessResolverError,
    RecordType,
    ServiceNotFound,
    SrvRecord,
)


def test_the_package_exports_exactly_these_names() -> None:
    assert sorted(headless_resolver.__all__) == [
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
    for name in headless_resolver.__all__:
        assert getattr(headless_resolver, name) is not None


def test_the_testing_package_exports_exactly_these_names() -> None:
    assert sorted(headless_resolver.testing.__all__) == [
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
    for name in headless_resolver.testing.__all__:
        assert getattr(headless_resolver.testing, name) is not None


def test_the_version_is_the_installed_distributions() -> None:
    assert headless_resolver.__version__ == importlib.metadata.version("headless-resolver")


def test_every_exported_exception_is_a_library_error_with_a_name() -> None:
    exported = [getattr(headless_resolver, name) for name in headless_resolver.__all__]
    errors = {
        value for value in exported if inspect.isclass(value) and issubclass(value, BaseException)
    }
    assert {error.__name__ for error in errors} == {
        "HeadlessResolverError",
        "InvalidArgument",
        "InvalidServiceName",
        "KubeConfigError",
        "NoEndpointsAvailable",
        "ResolutionError",
        "ResolverClosed",
        "ServiceNotFound",
    }
    for error in errors - {headless_resolver.ResolutionError}:
        assert issubclass(error, HeadlessResolverError)
        assert error("what happened", name="web").name == "web"
    timeout = headless_resolver.ResolutionError("no answer", name="web", reason="TIMEOUT")
    assert (timeout.name, timeout.reason, timeout.rcode) == ("web", "TIMEOUT", None)


def test_bad_arguments_are_value_errors_and_library_errors() -> None:
    assert issubclass(headless_resolver.InvalidArgument, ValueError)
    assert issubclass(headless_resolver.InvalidServiceName, headless_resolver.InvalidArgument)
    assert not issubclass(headless_resolver.ResolverClosed, RuntimeError)


def test_parse_returns_an_exported_type() -> None:
    resolver = headless_resolver.HeadlessResolver(
        ["127.0.0.1:53"], namespace="shop", cluster_domain="cluster.local"
    )
    lookup = resolver.parse("web-0.web", port=None)
    assert isinstance(lookup, headless_resolver.NameLookup)
    assert all(isinstance(c, headless_resolver.ServiceName) for c in lookup.candidates)
    assert [c.fqdn for c in lookup.candidates] == [
        "web-0.web.shop.svc.cluster.local.",
        "web-0.web.svc.cluster.local.",
    ]


def test_errors_keep_their_attributes_through_pickle() -> None:
    failed = headless_resolver.ResolutionError(
        "web: SERVFAIL", name="web.default.svc.cluster.local.", reason="RCODE", rcode="SERVFAIL"
    )
    copy = pickle.loads(pickle.dumps(failed))
    assert (type(copy), str(copy), copy.name, copy.reason, copy.rcode) == (
        headless_resolver.ResolutionError,
        "web: SERVFAIL",
        "web.default.svc.cluster.local.",
        "RCODE",
        "SERVFAIL",
    )
    closed = pickle.loads(pickle.dumps(headless_resolver.ResolverClosed("closed", name="web")))
    assert (type(closed), closed.name) == (headless_resolver.ResolverClosed, "web")


class AnswersFromATable:
    """A backend written against the exported protocol: answers from a dict, as a user's
    stand-in for DNS might."""

    def __init__(self, answers: dict[tuple[str, RecordType], DnsAnswer]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, RecordType]] = []

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        self.asked.append((name, rdtype))
        return self.answers.get((name, rdtype), DnsAnswer(name, rdtype, "NXDOMAIN"))

    async def aclose(self) -> None:
        pass


async def test_a_backend_of_ones_own_serves_the_resolver() -> None:
    fqdn = "web.shop.svc.cluster.local."
    srv = f"_http._tcp.{fqdn}"
    pod = f"web-0.{fqdn}"
    backend = AnswersFromATable(
        {
            (fqdn, "A"): DnsAnswer(fqdn, "A", "NOERROR", ("10.0.0.1", "10.0.0.2"), ttl=5),
            (srv, "SRV"): DnsAnswer(
                srv,
                "SRV",
                "NOERROR",
                srv=(SrvRecord(0, 50, 8080, pod),),
                glue={pod: ("10.0.0.1",)},
                ttl=5,
            ),
        }
    )
    assert isinstance(backend, DnsBackend)
    async with HeadlessResolver(
        backend=backend, namespace="shop", cluster_domain="cluster.local"
    ) as resolver:
        assert {e.ip for e in await resolver.resolve("web")} == {"10.0.0.1", "10.0.0.2"}
        assert [(e.ip, e.port, e.hostname) for e in await resolver.resolve("web", port="http")] == [
            ("10.0.0.1", 8080, "web-0")
        ]
        with pytest.raises(ServiceNotFound):
            await resolver.resolve("nosuch")
    assert (fqdn, "AAAA") in backend.asked
