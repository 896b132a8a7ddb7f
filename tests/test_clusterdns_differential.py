"""ClusterDNS and Knot DNS, fed the same generated cluster, give clients the same answers.

Knot serves the static zone ``zone_records`` derives from the model; ClusterDNS computes its
answers per query as CoreDNS does. For every name a client asks about (service names, named
ports, per-pod names, missing names, namespaces) both must agree on the rcode, the answer
records and the SRV glue (as sets: order is shuffled by both), and both must carry the SOA on
a negative answer. Names where a static zone cannot match CoreDNS by construction are not
asked: SRV at per-pod names, per-pod names of ClusterIP services, and namespaces whose
services publish nothing (CoreDNS knows the namespace; the zone has no name there).
"""

from __future__ import annotations

import asyncio

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headless_resolver.testing import ClusterDNS
from headless_resolver.testing._model import EndpointSpec, PortSpec, ServiceSpec
from tests.servers import AuthoritativeServer

IPV4 = [f"10.0.0.{i}" for i in range(1, 7)]
IPV6 = ["fd00::1", "fd00::2", "fd00::"]
DUAL_STACK = ("10.96.0.1", "fd00:96::1")
PORTS = [PortSpec("http", "tcp", 80), PortSpec("dns", "udp", 53), PortSpec("grpc", "tcp", 9000)]

endpoints = st.builds(
    EndpointSpec,
    ip=st.sampled_from(IPV4 + IPV6),
    hostname=st.none() | st.sampled_from(["web-0", "web-1", "db"]),
    ready=st.booleans(),
)


@st.composite
def services(draw: st.DrawFn) -> ServiceSpec:
    headless = draw(st.booleans())
    ports = tuple(draw(st.lists(st.sampled_from(PORTS), unique=True, max_size=2)))
    cluster_ips: tuple[str, ...] = ()
    if not headless:
        ports = ports or (PORTS[0],)
        families = draw(
            st.sampled_from([("10.96.0.1",), ("fd00:96::1",), ("10.96.0.1", "fd00:96::1")])
        )
        cluster_ips = families
    return ServiceSpec(
        draw(st.sampled_from(["web", "db", "api"])),
        draw(st.sampled_from(["default", "prod"])),
        endpoints=tuple(draw(st.lists(endpoints, max_size=4))),
        ports=ports,
        publish_not_ready=draw(st.booleans()),
        cluster_ips=cluster_ips,
    )


clusters = st.lists(services(), max_size=3, unique_by=lambda s: (s.namespace, s.name))


def questions(model: list[ServiceSpec]) -> list[tuple[str, str]]:
    """What clients ask about this cluster, plus names that must not exist."""
    asked = [
        ("missing.default.svc.cluster.local.", "A"),
        ("missing.prod.svc.cluster.local.", "SRV"),
    ]
    publishing = set()
    for svc in model:
        fqdn = svc.fqdn("cluster.local")
        asked += [(fqdn, "A"), (fqdn, "AAAA"), (fqdn, "SRV"), (f"_nope._tcp.{fqdn}", "SRV")]
        asked += [(f"_{p.name}._{p.protocol}.{fqdn}", "SRV") for p in PORTS]
        if svc.headless:
            for ep in svc.published:
                asked += [(f"{ep.dns_label}.{fqdn}", "A"), (f"{ep.dns_label}.{fqdn}", "AAAA")]
        if not svc.headless or svc.published:
            publishing.add(svc.namespace)
    asked += [(f"{ns}.svc.cluster.local.", "A") for ns in ("default", "prod") if ns in publishing]
    asked += [(f"{ns}.svc.cluster.local.", "A") for ns in ("kube-system",)]
    return asked


def records(section: list[dns.rrset.RRset]) -> set[tuple[str, str, int, str]]:
    return {
        (rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl, rd.to_text())
        for rrset in section
        for rd in rrset
    }


def comparable(reply: dns.message.Message) -> tuple[object, ...]:
    addresses = (dns.rdatatype.A, dns.rdatatype.AAAA)
    glue = [rrset for rrset in reply.additional if rrset.rdtype in addresses]
    negative = not reply.answer
    soa = [rrset for rrset in reply.authority if rrset.rdtype == dns.rdatatype.SOA]
    return (
        dns.rcode.to_text(reply.rcode()),
        records(reply.answer),
        records(glue),
        (len(soa), soa[0][0].minimum) if negative and soa else None,
    )


async def ask(host: str, port: int, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=4096)
    return await dns.asyncquery.udp(query, host, timeout=2.0, port=port)


async def compare(model: list[ServiceSpec], knot_host: str, knot_port: int) -> None:
    async with ClusterDNS() as cluster:
        cluster.set_services(model)
        for name, rdtype in questions(model):
            ours = comparable(await ask(cluster.host, cluster.port, name, rdtype))
            theirs = comparable(await ask(knot_host, knot_port, name, rdtype))
            assert ours == theirs, f"{name} {rdtype}"


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(model=clusters)
def test_clusterdns_agrees_with_knot(
    knot_dns: AuthoritativeServer, model: list[ServiceSpec]
) -> None:
    """One Knot server for the whole test (hypothesis runs the fixture once), reloaded with
    each generated cluster; a fresh ClusterDNS per cluster."""
    knot_dns.set_services(model)

    asyncio.run(compare(model, knot_dns.host, knot_dns.port))
