"""ClusterDNS answers CoreDNS's own kubernetes-plugin test vectors, over a real socket.

The vectors live beside the checkout in ``shared/conformance/coredns_vectors.json``; their
``_about`` gives the comparison rules applied here: rcode, record count per section, and per
record (sections sorted) the owner name, the TTL unless the vector says 303, the type and the
type's key rdata (address; SRV priority/weight/port/target; PTR target; SOA MNAME; TXT text).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from headless_resolver.testing import ClusterDNS
from headless_resolver.testing._model import EndpointSpec

VECTORS = Path(__file__).parents[2] / "shared" / "conformance" / "coredns_vectors.json"
ANY_TTL = 303
"""CoreDNS's test helper does not compare the TTL of a record expected with this one."""
SUITES = {
    "serve": "coredns unit: TestServeDNS ",
    "case": "coredns unit: TestPreserveCase",
    "reverse": "coredns unit: TestReverse",
    "hostname": "coredns unit: TestEndpointHostname",
}


@cache
def vectors() -> dict[str, Any] | None:
    if not VECTORS.exists():
        return None
    loaded: dict[str, Any] = json.loads(VECTORS.read_text())
    return loaded


def require_vectors() -> dict[str, Any]:
    """The vectors; a missing file skips here and fails in CI, where it must be present."""
    loaded = vectors()
    if loaded is None:
        message = f"CoreDNS conformance vectors not found at {VECTORS}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return loaded


def suite(key: str) -> dict[str, Any]:
    matches = [s for s in require_vectors()["suites"] if s["name"].startswith(SUITES[key])]
    assert len(matches) == 1, f"expected one suite named {SUITES[key]!r}"
    found: dict[str, Any] = matches[0]
    return found


def cases(key: str) -> list[Any]:
    """Parameters for every case of a suite, or one that skips (or fails) without the file."""
    loaded = vectors()
    if loaded is None:
        return [pytest.param(None, id="vectors-missing")]
    found = [s for s in loaded["suites"] if s["name"].startswith(SUITES[key])]
    return [
        pytest.param(case, id=f"{case.get('qname', case.get('ip'))}-{case.get('qtype', i)}")
        for s in found
        for i, case in enumerate(s["cases"])
    ]


def load_handler_fixture(server: ClusterDNS) -> None:
    """CoreDNS's handler_test cluster: Services plus their EndpointSlices."""
    fixture = require_vectors()["fixtures"]["coredns_handler_test"]
    slices = {s["service"]: s for s in fixture["endpoints"]}
    for svc in fixture["services"]:
        slice_ = slices.get(f"{svc['name']}.{svc['namespace']}", {"addresses": [], "ports": []})
        headless = svc["clusterIPs"] == ["None"]
        declared = slice_["ports"] if headless else svc["ports"]
        server.add_service(
            svc["name"],
            svc["namespace"],
            endpoints=[(a["ip"], a.get("hostname")) for a in slice_["addresses"]],
            ports=[(p["name"], p["protocol"], p["port"]) for p in declared if p["port"] > 0],
            cluster_ip=None if headless else svc["clusterIPs"],
        )


def load_reverse_fixture(server: ClusterDNS, summary: dict[str, Any]) -> None:
    """TestReverse's cluster, given as ``"<ip> hostname <name>"`` endpoint lines. The summary
    lists no ports; a ClusterIP service needs one, and PTR answers do not depend on it."""
    for key, svc in summary.items():
        name, namespace = key.split(".")
        endpoints = []
        for line in svc["endpoints"]:
            ip, _, hostname = line.split()
            endpoints.append((ip, hostname))
        cluster_ip = svc.get("clusterIP")
        server.add_service(
            name,
            namespace,
            endpoints=endpoints,
            ports=[("http", "tcp", 80)] if cluster_ip else [],
            cluster_ip=cluster_ip,
        )


async def ask(server: ClusterDNS, qname: str, qtype: str) -> dns.message.Message:
    """One UDP query with a buffer large enough that nothing is cut: CoreDNS's unit tests call
    the plugin directly, below the layer that truncates."""
    query = dns.message.make_query(qname, qtype, use_edns=0, payload=4096)
    reply = await dns.asyncquery.udp(query, server.host, timeout=2.0, port=server.port)
    assert not reply.flags & dns.flags.TC, "a conformance answer must fit without truncation"
    return reply


def expected_key(record: dict[str, Any]) -> tuple[str, str, str]:
    rdtype = record["type"]
    rdata: str
    if rdtype in ("A", "AAAA"):
        rdata = ipaddress.ip_address(record["rdata"]).compressed
    elif rdtype == "SRV":
        srv = record["srv"]
        rdata = f"{srv['priority']} {srv['weight']} {srv['port']} {srv['target'].lower()}"
    elif rdtype == "SOA":
        rdata = record["soa"]["mname"].lower()
    else:
        rdata = record["rdata"].lower()
    return (record["name"].lower(), rdtype, rdata)


def actual_records(section: list[dns.rrset.RRset]) -> Iterator[tuple[tuple[str, str, str], int]]:
    for rrset in section:
        rdtype = dns.rdatatype.to_text(rrset.rdtype)
        for rdata in rrset:
            text: str
            if rdtype in ("A", "AAAA"):
                text = ipaddress.ip_address(rdata.address).compressed
            elif rdtype == "SRV":
                text = f"{rdata.priority} {rdata.weight} {rdata.port} {rdata.target}".lower()
            elif rdtype == "SOA":
                text = rdata.mname.to_text().lower()
            elif rdtype == "TXT":
                text = b"".join(rdata.strings).decode()
            else:
                text = rdata.to_text().lower()
            yield (rrset.name.to_text().lower(), rdtype, text), rrset.ttl


def assert_matches(reply: dns.message.Message, case: dict[str, Any]) -> None:
    assert dns.rcode.to_text(reply.rcode()) == case["rcode"]
    for section_name, section in (
        ("answer", reply.answer),
        ("authority", reply.authority),
        ("additional", reply.additional),
    ):
        expected = sorted((expected_key(r), r["ttl"]) for r in case[section_name])
        actual = sorted(actual_records(section))
        assert len(actual) == len(expected), f"{section_name}: {actual} != {expected}"
        for (got, got_ttl), (want, want_ttl) in zip(actual, expected, strict=True):
            assert got == want, section_name
            if want_ttl != ANY_TTL:
                assert got_ttl == want_ttl, f"{section_name} TTL of {got}"


@pytest.mark.parametrize("case", cases("serve") + cases("case"))
async def test_serve_dns_and_preserve_case(case: dict[str, Any] | None) -> None:
    require_vectors()
    assert case is not None
    async with ClusterDNS(domain="cluster.local", ttl=suite("serve")["config"]["ttl"]) as server:
        load_handler_fixture(server)

        reply = await ask(server, case["qname"], case["qtype"])

    assert_matches(reply, case)
    for rrset in reply.answer:
        assert rrset.name.to_text() == case["qname"], "answer owner echoes the query's case"


@pytest.mark.parametrize("case", cases("reverse"))
async def test_reverse(case: dict[str, Any] | None) -> None:
    config = suite("reverse")["config"]
    assert case is not None
    domain, *reverse_zones = config["zones"]
    async with ClusterDNS(domain=domain, reverse_zones=reverse_zones) as server:
        load_reverse_fixture(server, config["fixture_summary"])

        reply = await ask(server, case["qname"], case["qtype"])

    assert_matches(reply, case)


@pytest.mark.parametrize("case", cases("hostname"))
async def test_endpoint_hostname(case: dict[str, Any] | None) -> None:
    """The per-pod label, seen where clients see it: the SRV target and the per-pod name."""
    require_vectors()
    assert case is not None
    endpoint = EndpointSpec(
        case["ip"], case["endpoint_hostname"] or None, pod_name=case["pod_name"] or None
    )
    family = "AAAA" if endpoint.is_ipv6 else "A"
    async with ClusterDNS(endpoint_pod_names=case["endpoint_pod_names"]) as server:
        server.add_service("svc", endpoints=[endpoint], ports=[("http", "tcp", 80)])

        srv = await ask(server, "_http._tcp.svc.default.svc.cluster.local.", "SRV")
        pod = await ask(server, f"{case['expected_label']}.svc.default.svc.cluster.local.", family)

    assert [rdata.target.labels[0].decode() for rdata in srv.answer[0]] == [case["expected_label"]]
    assert [rdata.address for rdata in pod.answer[0]] == [endpoint.ip]
