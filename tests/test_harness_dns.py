"""The real DNS servers serve the Kubernetes DNS layout, and runtime changes are visible at once.

Every other test that talks to Knot DNS or BIND relies on these properties.
"""

from __future__ import annotations

import ipaddress

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from dns.rdtypes.ANY.SOA import SOA

from headless_resolver.testing._model import EndpointSpec, PortSpec, ServiceSpec
from tests.servers import (
    AuthoritativeServer,
    KnotServer,
    ServerFactory,
    ServerUnavailable,
    query,
    skip_or_fail,
)

SVC = "web.default.svc.cluster.local."


@pytest.fixture(params=["knot", "bind"])
def make_dns(request: pytest.FixtureRequest) -> ServerFactory:
    """Either real server, through its factory fixture."""
    factory: ServerFactory = request.getfixturevalue(f"make_{request.param}_dns")
    return factory


def records(answer: dns.message.Message, rdtype: str) -> set[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return {rdata.to_text() for rrset in answer.answer if rrset.rdtype == wanted for rdata in rrset}


def soa_of(answer: dns.message.Message) -> SOA:
    (rrset,) = answer.authority
    (soa,) = rrset
    assert isinstance(soa, SOA)
    return soa


def web(*endpoints: object, ports: tuple[object, ...] = (("http", "tcp", 8080),)) -> ServiceSpec:
    return ServiceSpec("web", endpoints=endpoints, ports=ports)  # type: ignore[arg-type]


def many_ips(count: int) -> list[str]:
    first = ipaddress.ip_address("10.1.0.1")
    return [str(first + i) for i in range(count)]


def big_service(ips: list[str]) -> ServiceSpec:
    """Addresses only: 2,000 SRV records would not fit one RRset in BIND (64 KiB)."""
    return web(*((ip, None) for ip in ips), ports=())


def test_service_name_answers_one_a_record_per_ready_endpoint(make_dns: ServerFactory) -> None:
    server = make_dns(
        [web(("10.0.0.1", "web-0"), ("10.0.0.2", "web-1"), ("10.0.0.3", "web-2", False))]
    )

    answer = query(server.nameserver, SVC, "A")

    assert answer.rcode() == dns.rcode.NOERROR
    assert answer.flags & dns.flags.AA
    assert records(answer, "A") == {"10.0.0.1", "10.0.0.2"}
    assert answer.answer[0].ttl == 5


def test_not_ready_endpoints_are_published_when_the_service_asks(make_dns: ServerFactory) -> None:
    spec = ServiceSpec(
        "web", endpoints=(("10.0.0.1", None), ("10.0.0.2", None, False)), publish_not_ready=True
    )
    server = make_dns([spec])

    assert records(query(server.nameserver, SVC, "A"), "A") == {"10.0.0.1", "10.0.0.2"}


def test_ipv6_endpoints_answer_aaaa_and_ipv4_ones_a(make_dns: ServerFactory) -> None:
    server = make_dns([web(("10.0.0.1", None), ("fd00::1", None), ("fd00::2", None))])

    assert records(query(server.nameserver, SVC, "A"), "A") == {"10.0.0.1"}
    assert records(query(server.nameserver, SVC, "AAAA"), "AAAA") == {"fd00::1", "fd00::2"}


def test_srv_targets_the_pod_names_with_address_glue(make_dns: ServerFactory) -> None:
    server = make_dns([web(("10.0.0.1", "web-0"), ("10.0.0.2", "web-1"), ("fd00::5", None))])

    answer = query(server.nameserver, f"_http._tcp.{SVC}", "SRV")

    assert records(answer, "SRV") == {
        f"0 33 8080 web-0.{SVC}",
        f"0 33 8080 web-1.{SVC}",
        f"0 33 8080 fd00--5.{SVC}",
    }
    glue = {
        (rrset.name.to_text(), rdata.to_text()) for rrset in answer.additional for rdata in rrset
    }
    assert glue == {
        (f"web-0.{SVC}", "10.0.0.1"),
        (f"web-1.{SVC}", "10.0.0.2"),
        (f"fd00--5.{SVC}", "fd00::5"),
    }


def test_srv_at_the_bare_service_name_lists_every_pod_and_port(make_dns: ServerFactory) -> None:
    ports = (("http", "tcp", 8080), ("metrics", "tcp", 9090))
    server = make_dns([web(("10.0.0.1", "web-0"), ("10.0.0.2", "web-1"), ports=ports)])

    answer = query(server.nameserver, SVC, "SRV")

    assert records(answer, "SRV") == {
        f"0 25 {number} {pod}.{SVC}" for pod in ("web-0", "web-1") for number in (8080, 9090)
    }


def test_srv_publishes_an_endpoints_own_port_numbers(make_dns: ServerFactory) -> None:
    own_port = EndpointSpec("10.0.0.2", "web-1", ports=(PortSpec("http", "tcp", 9000),))
    server = make_dns([web(("10.0.0.1", "web-0"), own_port)])

    answer = query(server.nameserver, f"_http._tcp.{SVC}", "SRV")

    assert records(answer, "SRV") == {f"0 50 8080 web-0.{SVC}", f"0 50 9000 web-1.{SVC}"}


def test_srv_of_an_unknown_port_name_is_nxdomain(make_dns: ServerFactory) -> None:
    server = make_dns([web(("10.0.0.1", "web-0"))])

    answer = query(server.nameserver, f"_grpc._tcp.{SVC}", "SRV")

    assert answer.rcode() == dns.rcode.NXDOMAIN


def test_missing_service_is_nxdomain_with_the_soa_minimum_equal_to_the_ttl(
    make_dns: ServerFactory,
) -> None:
    server = make_dns([web(("10.0.0.1", None))], ttl=30)

    answer = query(server.nameserver, "nope.default.svc.cluster.local.", "A")

    assert answer.rcode() == dns.rcode.NXDOMAIN
    assert not answer.answer
    assert soa_of(answer).minimum == 30
    assert answer.authority[0].ttl == 30


def test_service_without_ready_endpoints_is_nxdomain(make_dns: ServerFactory) -> None:
    server = make_dns([web(("10.0.0.1", "web-0", False))])

    assert query(server.nameserver, SVC, "A").rcode() == dns.rcode.NXDOMAIN


def test_name_without_the_asked_type_is_nodata_with_the_soa(make_dns: ServerFactory) -> None:
    server = make_dns([web(("10.0.0.1", None))])

    answer = query(server.nameserver, SVC, "AAAA")

    assert answer.rcode() == dns.rcode.NOERROR
    assert not answer.answer
    assert soa_of(answer).minimum == 5


def test_per_pod_names_answer_that_pod_only(make_dns: ServerFactory) -> None:
    server = make_dns([web(("10.0.0.1", "web-0"), ("10.0.0.2", None), ("fd00::7", None))])

    assert records(query(server.nameserver, f"web-0.{SVC}", "A"), "A") == {"10.0.0.1"}
    assert records(query(server.nameserver, f"10-0-0-2.{SVC}", "A"), "A") == {"10.0.0.2"}
    assert records(query(server.nameserver, f"fd00--7.{SVC}", "AAAA"), "AAAA") == {"fd00::7"}


def test_names_compare_case_insensitively(make_dns: ServerFactory) -> None:
    server = make_dns([web(("10.0.0.1", "web-0"))])

    answer = query(server.nameserver, "WEB-0.Web.Default.SVC.Cluster.Local.", "A")

    assert records(answer, "A") == {"10.0.0.1"}


def test_a_custom_cluster_domain_is_served(make_dns: ServerFactory) -> None:
    server = make_dns([web(("10.0.0.1", None))], domain="corp.example")

    answer = query(server.nameserver, "web.default.svc.corp.example.", "A")

    assert server.domain == "corp.example"
    assert records(answer, "A") == {"10.0.0.1"}
    assert query(server.nameserver, SVC, "A").rcode() == dns.rcode.REFUSED


def test_big_service_is_truncated_over_udp_and_complete_over_tcp(make_dns: ServerFactory) -> None:
    ips = many_ips(2000)
    server = make_dns([big_service(ips)])

    over_udp = query(server.nameserver, SVC, "A")
    over_tcp = query(server.nameserver, SVC, "A", tcp=True)

    assert over_udp.flags & dns.flags.TC
    assert records(over_udp, "A") < set(ips)
    assert not over_tcp.flags & dns.flags.TC
    assert records(over_tcp, "A") == set(ips)


def test_bind_answers_a_big_query_without_edns_partially_with_tc(
    make_bind_dns: ServerFactory,
) -> None:
    ips = many_ips(2000)
    server = make_bind_dns([big_service(ips)])

    answer = query(server.nameserver, SVC, "A", edns=False)

    assert answer.flags & dns.flags.TC
    partial = records(answer, "A")
    assert partial, "BIND should put as many records as fit into 512 bytes"
    assert partial < set(ips)
    assert len(answer.to_wire()) <= 512


def test_knot_truncates_a_big_query_without_edns(make_knot_dns: ServerFactory) -> None:
    ips = many_ips(2000)
    server = make_knot_dns([big_service(ips)])

    answer = query(server.nameserver, SVC, "A", edns=False)

    assert answer.flags & dns.flags.TC
    assert records(answer, "A") < set(ips)
    assert len(answer.to_wire()) <= 512


def test_scaling_up_and_down_is_visible_to_the_next_query(make_dns: ServerFactory) -> None:
    server = make_dns()
    seen = []
    for replicas in (1, 4, 2, 0):
        server.set_service(web(*((f"10.0.0.{i + 1}", f"web-{i}") for i in range(replicas))))
        answer = query(server.nameserver, f"_http._tcp.{SVC}", "SRV")
        seen.append((answer.rcode(), len(records(answer, "SRV"))))

    assert seen == [
        (dns.rcode.NOERROR, 1),
        (dns.rcode.NOERROR, 4),
        (dns.rcode.NOERROR, 2),
        (dns.rcode.NXDOMAIN, 0),
    ]


def test_every_change_bumps_the_soa_serial(make_dns: ServerFactory) -> None:
    server = make_dns()
    before = soa_serial(server)

    server.set_service(web(("10.0.0.1", None)))
    server.remove_service("web")

    assert soa_serial(server) == before + 2 == server.serial


def soa_serial(server: AuthoritativeServer) -> int:
    (rrset,) = query(server.nameserver, "cluster.local.", "SOA").answer
    return int(rrset[0].serial)


def test_set_services_replaces_the_whole_model(make_dns: ServerFactory) -> None:
    server = make_dns([web(("10.0.0.1", None)), ServiceSpec("db", endpoints=("10.0.1.1",))])

    server.set_services([ServiceSpec("cache", "infra", endpoints=("10.0.2.1",))])

    assert query(server.nameserver, SVC, "A").rcode() == dns.rcode.NXDOMAIN
    assert (
        query(server.nameserver, "db.default.svc.cluster.local.", "A").rcode() == dns.rcode.NXDOMAIN
    )
    cache = query(server.nameserver, "cache.infra.svc.cluster.local.", "A")
    assert records(cache, "A") == {"10.0.2.1"}


def test_a_stopped_server_comes_back_on_the_same_port_with_the_same_zone(
    make_dns: ServerFactory,
) -> None:
    server = make_dns([web(("10.0.0.1", None))])
    nameserver = server.nameserver

    server.stop()
    with pytest.raises(ConnectionRefusedError):
        query(nameserver, SVC, "A", tcp=True)
    server.start()

    assert server.nameserver == nameserver
    assert records(query(nameserver, SVC, "A"), "A") == {"10.0.0.1"}


def test_changes_while_stopped_are_served_after_restart(make_dns: ServerFactory) -> None:
    server = make_dns([web(("10.0.0.1", None))])

    server.stop()
    server.set_service(web(("10.0.0.9", None)))
    server.start()

    assert records(query(server.nameserver, SVC, "A"), "A") == {"10.0.0.9"}


def test_removing_an_unknown_service_is_a_key_error(knot_dns: AuthoritativeServer) -> None:
    with pytest.raises(KeyError, match="nope"):
        knot_dns.remove_service("nope")


def test_a_service_must_be_a_service_spec(knot_dns: AuthoritativeServer) -> None:
    with pytest.raises(TypeError, match="ServiceSpec"):
        knot_dns.set_service("web")  # type: ignore[arg-type]


def test_empty_fixtures_serve_an_empty_cluster_local_with_ttl_5(
    knot_dns: AuthoritativeServer, bind_dns: AuthoritativeServer
) -> None:
    for server in (knot_dns, bind_dns):
        answer = query(server.nameserver, SVC, "A")
        assert answer.rcode() == dns.rcode.NXDOMAIN
        assert soa_of(answer).minimum == 5
        assert server.nameserver == f"127.0.0.1:{server.port}"


class _MissingKnot(KnotServer):
    executable = "knotd-not-installed"


def test_a_missing_server_names_its_debian_package() -> None:
    with pytest.raises(ServerUnavailable, match="apt-get install knot"):
        _MissingKnot()


def test_a_missing_server_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="knot"):
        skip_or_fail(ServerUnavailable("knotd", "knot"))


def test_a_missing_server_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="knot"):
        skip_or_fail(ServerUnavailable("knotd", "knot"))
