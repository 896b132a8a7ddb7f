"""ClusterDNS: what a cluster DNS client sees over real sockets, and what it survives."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import pytest

from headless_resolver.testing import ClusterDNS
from headless_resolver.testing._model import EndpointSpec, PortSpec

SVC = "web.default.svc.cluster.local."


@pytest.fixture
async def cluster() -> AsyncIterator[ClusterDNS]:
    async with ClusterDNS(shuffle=False) as server:
        yield server


async def ask(
    server: ClusterDNS,
    name: str,
    rdtype: str = "A",
    *,
    edns: int | bool = False,
    payload: int = 1232,
    tcp: bool = False,
    wait: float = 2.0,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload)
    if tcp:
        return await dns.asyncquery.tcp(query, server.host, timeout=wait, port=server.port)
    return await dns.asyncquery.udp(query, server.host, timeout=wait, port=server.port)


def texts(reply: dns.message.Message, rdtype: str, section: str = "answer") -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return [
        rdata.to_text()
        for rrset in getattr(reply, section)
        if rrset.rdtype == wanted
        for rdata in rrset
    ]


def soa(reply: dns.message.Message) -> tuple[dns.rrset.RRset, dns.rdtypes.ANY.SOA.SOA]:
    (rrset,) = reply.authority
    assert rrset.rdtype == dns.rdatatype.SOA
    record = rrset[0]
    assert isinstance(record, dns.rdtypes.ANY.SOA.SOA)
    return rrset, record


def ips(count: int) -> list[tuple[str, None]]:
    return [(f"10.1.{i // 250}.{i % 250 + 1}", None) for i in range(count)]


async def udp_exchange(server: ClusterDNS, data: bytes, wait: float = 0.3) -> bytes | None:
    """Send raw bytes; the reply, or None when the server stays silent."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (server.host, server.port))
        await loop.sock_sendall(sock, data)
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), wait)
        except TimeoutError:
            return None


# -- names and records ----------------------------------------------------------------------


async def test_headless_service_answers_one_address_per_ready_endpoint(cluster: ClusterDNS) -> None:
    cluster.add_service(
        "web", endpoints=[("10.0.0.1", "web-0"), ("10.0.0.2", None), ("10.0.0.3", None, False)]
    )

    reply = await ask(cluster, SVC)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert texts(reply, "A") == ["10.0.0.1", "10.0.0.2"]
    assert reply.answer[0].ttl == 5


async def test_publish_not_ready_publishes_every_endpoint(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=[("10.0.0.3", None, False)], publish_not_ready=True)

    assert texts(await ask(cluster, SVC), "A") == ["10.0.0.3"]


async def test_service_without_ready_endpoints_is_nxdomain_with_the_zone_soa() -> None:
    async with ClusterDNS(ttl=30) as server:
        server.add_service("web", endpoints=[("10.0.0.1", "web-0", False)])

        reply = await ask(server, SVC)

    assert reply.rcode() == dns.rcode.NXDOMAIN
    rrset, record = soa(reply)
    assert rrset.name == dns.name.from_text("cluster.local.")
    assert rrset.ttl == 30
    assert record.minimum == 30
    assert record.mname == dns.name.from_text("ns.dns.cluster.local.")
    assert record.rname == dns.name.from_text("hostmaster.cluster.local.")


async def test_soa_ttl_is_capped_at_300_while_its_minimum_is_the_ttl() -> None:
    async with ClusterDNS(ttl=3600) as server:
        rrset, record = soa(await ask(server, "nope.default.svc.cluster.local."))

    assert (rrset.ttl, record.minimum) == (300, 3600)


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        (SVC, "AAAA"),
        ("default.svc.cluster.local.", "A"),
        ("svc.cluster.local.", "A"),
        ("cluster.local.", "A"),
        (SVC, "TXT"),
        (SVC, "MX"),
    ],
)
async def test_existing_names_without_the_type_are_nodata(
    cluster: ClusterDNS, name: str, rdtype: str
) -> None:
    cluster.add_service("web", endpoints=[("10.0.0.1", None)])

    reply = await ask(cluster, name, rdtype)

    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer
    soa(reply)


@pytest.mark.parametrize(
    "name",
    [
        "nope.default.svc.cluster.local.",
        "web.other.svc.cluster.local.",
        "bogus.web.default.svc.cluster.local.",
        "_grpc._tcp.web.default.svc.cluster.local.",
        "a.b.c.web.default.svc.cluster.local.",
        "foo.cluster.local.",
        "10-0-0-1.default.pod.cluster.local.",
    ],
)
async def test_names_that_do_not_exist_are_nxdomain(cluster: ClusterDNS, name: str) -> None:
    cluster.add_service("web", endpoints=[("10.0.0.1", None)], ports=[("http", "tcp", 80)])

    reply = await ask(cluster, name, "SRV" if name.startswith("_") else "A")

    assert reply.rcode() == dns.rcode.NXDOMAIN
    soa(reply)


async def test_a_and_aaaa_split_the_endpoints_by_family(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=[("10.0.0.1", None), ("fd00::1", None), ("fd00::", None)])

    assert texts(await ask(cluster, SVC, "A"), "A") == ["10.0.0.1"]
    assert texts(await ask(cluster, SVC, "AAAA"), "AAAA") == ["fd00::1", "fd00::"]


async def test_per_pod_names_use_the_hostname_else_the_dashed_ip(cluster: ClusterDNS) -> None:
    cluster.add_service(
        "web", endpoints=[("10.0.0.1", "web-0"), ("10.0.0.2", None), ("fd00::", None)]
    )

    for name, rdtype, address in [
        ("web-0", "A", "10.0.0.1"),
        ("10-0-0-2", "A", "10.0.0.2"),
        ("fd00--0", "AAAA", "fd00::"),
    ]:
        assert texts(await ask(cluster, f"{name}.{SVC}", rdtype), rdtype) == [address]


async def test_cluster_ip_service_answers_its_addresses(cluster: ClusterDNS) -> None:
    cluster.add_service(
        "api",
        endpoints=[("10.0.0.1", None)],
        ports=[("http", "tcp", 80)],
        cluster_ip=["10.96.0.1", "fd00:96::1"],
    )

    assert texts(await ask(cluster, "api.default.svc.cluster.local.", "A"), "A") == ["10.96.0.1"]
    reply = await ask(cluster, "api.default.svc.cluster.local.", "AAAA")
    assert texts(reply, "AAAA") == ["fd00:96::1"]


async def test_srv_targets_per_pod_names_with_glue_and_floor_weights(cluster: ClusterDNS) -> None:
    cluster.add_service(
        "web",
        endpoints=[("10.0.0.1", "web-0"), ("10.0.0.2", None), ("fd00::5", None)],
        ports=[("http", "tcp", 8080), ("metrics", "tcp", 9090)],
    )

    named = await ask(cluster, f"_http._tcp.{SVC}", "SRV", edns=0)
    bare = await ask(cluster, SVC, "SRV", edns=0)

    assert texts(named, "SRV") == [
        f"0 33 8080 web-0.{SVC}",
        f"0 33 8080 10-0-0-2.{SVC}",
        f"0 33 8080 fd00--5.{SVC}",
    ]
    glue = {(rrset.name.to_text(), rrset[0].to_text()) for rrset in named.additional}
    assert glue == {
        (f"web-0.{SVC}", "10.0.0.1"),
        (f"10-0-0-2.{SVC}", "10.0.0.2"),
        (f"fd00--5.{SVC}", "fd00::5"),
    }
    assert sorted(texts(bare, "SRV")) == sorted(
        f"0 16 {port} {target}.{SVC}"
        for target in ("web-0", "10-0-0-2", "fd00--5")
        for port in (8080, 9090)
    )
    assert len(bare.additional) == 3


async def test_srv_weight_never_drops_below_one(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=ips(150), ports=[("http", "tcp", 80)])

    reply = await ask(cluster, f"_http._tcp.{SVC}", "SRV", tcp=True)

    weights = {rdata.weight for rrset in reply.answer for rdata in rrset}
    assert weights == {1}
    assert sum(len(rrset) for rrset in reply.answer) == 150


async def test_srv_publishes_an_endpoints_own_port_numbers(cluster: ClusterDNS) -> None:
    own_port = EndpointSpec("10.0.0.2", "web-1", ports=(PortSpec("http", "tcp", 9000),))
    cluster.add_service(
        "web", endpoints=[("10.0.0.1", "web-0"), own_port], ports=[("http", "tcp", 8080)]
    )

    reply = await ask(cluster, f"_http._tcp.{SVC}", "SRV")

    assert texts(reply, "SRV") == [f"0 50 8080 web-0.{SVC}", f"0 50 9000 web-1.{SVC}"]


async def test_service_without_ports_has_addresses_but_no_srv(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=[("10.0.0.1", None)])

    reply = await ask(cluster, SVC, "SRV")

    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer


async def test_ptr_names_the_endpoint_or_the_cluster_ip_service(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=[("10.0.0.1", "web-0"), ("fd00::7", None)])
    cluster.add_service("api", cluster_ip="10.96.0.1", ports=[("http", "tcp", 80)])

    assert texts(await ask(cluster, "1.0.0.10.in-addr.arpa.", "PTR"), "PTR") == [f"web-0.{SVC}"]
    v6 = dns.reversename.from_address("fd00::7").to_text()
    assert texts(await ask(cluster, v6, "PTR"), "PTR") == [f"fd00--7.{SVC}"]
    cluster_ip = await ask(cluster, "1.0.96.10.in-addr.arpa.", "PTR")
    assert texts(cluster_ip, "PTR") == ["api.default.svc.cluster.local."]
    unknown = await ask(cluster, "9.9.9.10.in-addr.arpa.", "PTR")
    assert unknown.rcode() == dns.rcode.NXDOMAIN
    assert soa(unknown)[0].name == dns.name.from_text("in-addr.arpa.")


async def test_matching_ignores_case_and_answers_echo_the_query(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=[("10.0.0.1", "web-0")], ports=[("http", "tcp", 80)])

    reply = await ask(cluster, "_HTTP._Tcp.WeB.Default.SVC.Cluster.LOCAL.", "SRV")

    assert reply.answer[0].name.to_text() == "_HTTP._Tcp.WeB.Default.SVC.Cluster.LOCAL."
    assert texts(reply, "SRV") == ["0 100 80 web-0.web.default.svc.Cluster.LOCAL."]


async def test_dns_version_is_the_schema_version(cluster: ClusterDNS) -> None:
    reply = await ask(cluster, "dns-version.cluster.local.", "TXT")

    assert texts(reply, "TXT") == ['"1.1.0"']


async def test_names_outside_the_zones_are_refused(cluster: ClusterDNS) -> None:
    reply = await ask(cluster, "example.com.", "A")

    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.AA


async def test_zone_transfer_is_refused(cluster: ClusterDNS) -> None:
    reply = await ask(cluster, "cluster.local.", "AXFR", tcp=True)

    assert reply.rcode() == dns.rcode.REFUSED


async def test_custom_domain_and_ttl() -> None:
    async with ClusterDNS(domain="Corp.Example", ttl=30) as server:
        server.add_service("web", endpoints=[("10.0.0.1", None)])

        reply = await ask(server, "web.default.svc.corp.example.", "A")
        outside = await ask(server, SVC, "A")

    assert texts(reply, "A") == ["10.0.0.1"]
    assert reply.answer[0].ttl == 30
    assert outside.rcode() == dns.rcode.REFUSED


# -- record order ---------------------------------------------------------------------------


async def test_shuffle_off_keeps_the_endpoint_order(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=ips(8))

    orders = {tuple(texts(await ask(cluster, SVC), "A")) for _ in range(10)}

    assert orders == {tuple(ip for ip, _ in ips(8))}


async def test_shuffle_on_varies_the_order_of_the_same_addresses() -> None:
    async with ClusterDNS() as server:
        server.add_service("web", endpoints=ips(8))

        orders = {tuple(texts(await ask(server, SVC), "A")) for _ in range(10)}

    assert len(orders) > 1
    assert {frozenset(order) for order in orders} == {frozenset(ip for ip, _ in ips(8))}


# -- sizes ----------------------------------------------------------------------------------

HEADER = 12
QUESTION = len(SVC) + 1 + 4
"""Wire name (one length byte per label plus the root byte) and type/class."""
COMPRESSED_A = 2 + 10 + 4
"""A compression pointer, type/class/TTL/length, the address."""
OPT = 11


@pytest.mark.parametrize(
    ("edns", "payload", "limit"),
    [(False, 0, 512), (0, 1232, 1232), (0, 300, 512), (0, 4096, 4096)],
    ids=["plain-512", "edns-1232", "edns-below-512", "edns-4096"],
)
async def test_udp_answers_keep_as_many_records_as_fit_and_set_tc(
    cluster: ClusterDNS, edns: int | bool, payload: int, limit: int
) -> None:
    cluster.add_service("web", endpoints=ips(400))

    reply = await ask(cluster, SVC, edns=edns, payload=payload)

    budget = limit - HEADER - QUESTION - (OPT if edns is not False else 0)
    assert len(texts(reply, "A")) == budget // COMPRESSED_A
    assert reply.flags & dns.flags.TC


async def test_tcp_carries_what_udp_cannot(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=ips(2000))

    reply = await ask(cluster, SVC, tcp=True)

    assert len(texts(reply, "A")) == 2000
    assert not reply.flags & dns.flags.TC


async def test_tcp_truncates_past_64_kib(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=ips(5000))

    reply = await ask(cluster, SVC, tcp=True)

    assert len(texts(reply, "A")) == (65535 - HEADER - QUESTION) // COMPRESSED_A
    assert reply.flags & dns.flags.TC


async def test_srv_glue_is_dropped_before_answers_and_still_sets_tc(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=ips(6), ports=[("http", "tcp", 80)])

    reply = await ask(cluster, f"_http._tcp.{SVC}", "SRV")

    assert len(texts(reply, "SRV")) == 6
    assert len(reply.additional) < 6
    assert reply.flags & dns.flags.TC


async def test_edns_is_echoed_only_when_the_client_used_it(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=ips(1))

    with_edns = await ask(cluster, SVC, edns=0, payload=1400)
    without = await ask(cluster, SVC)

    assert (with_edns.edns, with_edns.payload) == (0, 1400)
    assert without.edns == -1


async def test_unknown_edns_version_is_badvers(cluster: ClusterDNS) -> None:
    reply = await ask(cluster, SVC, edns=1)

    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0


# -- the model changes under the server -------------------------------------------------------


async def test_changes_are_visible_to_the_next_query(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=[("10.0.0.1", None)])
    before = soa(await ask(cluster, SVC, "AAAA"))[1].serial

    cluster.set_endpoints("web", endpoints=[("10.0.0.2", None), ("10.0.0.3", None)])
    assert texts(await ask(cluster, SVC), "A") == ["10.0.0.2", "10.0.0.3"]
    assert soa(await ask(cluster, SVC, "AAAA"))[1].serial > before

    cluster.set_endpoints("web", endpoints=[])
    assert (await ask(cluster, SVC)).rcode() == dns.rcode.NXDOMAIN

    cluster.remove_service("web")
    assert (await ask(cluster, "default.svc.cluster.local.")).rcode() == dns.rcode.NXDOMAIN
    assert cluster.services == ()


async def test_changes_from_another_thread_are_visible(cluster: ClusterDNS) -> None:
    def scale_up() -> None:
        for n in range(1, 21):
            cluster.add_service("web", endpoints=ips(n))

    worker = threading.Thread(target=scale_up)
    worker.start()
    while worker.is_alive():
        reply = await ask(cluster, SVC)
        assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    worker.join()

    assert len(texts(await ask(cluster, SVC), "A")) == 20


async def test_set_services_replaces_the_whole_cluster(cluster: ClusterDNS) -> None:
    from headless_resolver.testing._model import ServiceSpec

    cluster.add_service("web", endpoints=ips(1))
    cluster.set_services([ServiceSpec("db", "data", endpoints=("10.9.0.1",))])

    assert (await ask(cluster, SVC)).rcode() == dns.rcode.NXDOMAIN
    assert texts(await ask(cluster, "db.data.svc.cluster.local."), "A") == ["10.9.0.1"]


def test_invalid_input_is_a_value_error_naming_the_field() -> None:
    server = ClusterDNS()
    for kwargs, field in [
        ({"name": "Web_1"}, "service.name"),
        ({"name": "web", "namespace": "-x"}, "service.namespace"),
        ({"name": "web", "endpoints": [("10.0.0.300", None)]}, "endpoint.ip"),
        ({"name": "web", "endpoints": [("10.0.0.1", "Bad_Host")]}, "endpoint.hostname"),
        ({"name": "web", "ports": [("http", "tcp", 0)]}, "port.number"),
        ({"name": "web", "ports": [("http", "icmp", 80)]}, "port.protocol"),
        ({"name": "web", "cluster_ip": "nope", "ports": [("http", "tcp", 80)]}, "cluster_ip"),
        ({"name": "web", "cluster_ip": "10.96.0.1"}, "service.ports"),
    ]:
        with pytest.raises(ValueError, match=field):
            server.add_service(**kwargs)  # type: ignore[arg-type]
    assert server.services == ()


def test_invalid_server_settings_are_value_errors() -> None:
    for kwargs, field in [
        ({"host": "192.0.2.1"}, "host"),
        ({"host": "localhost"}, "host"),
        ({"port": 70000}, "port"),
        ({"ttl": -1}, "ttl"),
        ({"domain": "."}, "domain"),
        ({"reverse_zones": ["example.com"]}, "reverse_zones"),
    ]:
        with pytest.raises(ValueError, match=field):
            ClusterDNS(**kwargs)  # type: ignore[arg-type]


def test_changing_a_missing_service_is_a_key_error() -> None:
    server = ClusterDNS()

    with pytest.raises(KeyError, match="default/web"):
        server.set_endpoints("web", endpoints=[])
    with pytest.raises(KeyError, match="default/web"):
        server.remove_service("web")


# -- counters -------------------------------------------------------------------------------


async def test_queries_are_counted_per_name_and_type(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=ips(1))

    await ask(cluster, SVC, "A")
    await ask(cluster, SVC.upper(), "A")
    await ask(cluster, SVC, "AAAA", tcp=True)

    assert cluster.query_count("web.default.svc.cluster.local", "A") == 2
    assert cluster.query_count("WEB.default.svc.cluster.local.", dns.rdatatype.AAAA) == 1
    assert cluster.query_count(SVC, "SRV") == 0
    assert cluster.queries == 3
    cluster.reset_counts()
    assert cluster.query_count(SVC, "A") == 0


# -- faults ---------------------------------------------------------------------------------


async def test_servfail_switch(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=ips(1))
    cluster.servfail = True

    assert (await ask(cluster, SVC)).rcode() == dns.rcode.SERVFAIL
    cluster.servfail = False
    assert (await ask(cluster, SVC)).rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_drop_switch_makes_clients_time_out_but_counts(
    cluster: ClusterDNS, tcp: bool
) -> None:
    cluster.add_service("web", endpoints=ips(1))
    cluster.drop = True

    with pytest.raises(dns.exception.Timeout):
        await ask(cluster, SVC, tcp=tcp, wait=0.2)
    assert cluster.query_count(SVC, "A") == 1

    cluster.drop = False
    assert (await ask(cluster, SVC, tcp=tcp)).rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_delay_switch_holds_answers_back(cluster: ClusterDNS, tcp: bool) -> None:
    cluster.add_service("web", endpoints=ips(1))
    cluster.delay = 0.5

    with pytest.raises(dns.exception.Timeout):
        await ask(cluster, SVC, tcp=tcp, wait=0.1)
    assert (await ask(cluster, SVC, tcp=tcp, wait=5.0)).rcode() == dns.rcode.NOERROR


async def test_stop_is_an_outage_and_start_comes_back_on_the_same_port(
    cluster: ClusterDNS,
) -> None:
    cluster.add_service("web", endpoints=ips(1))
    nameserver = cluster.nameserver

    await cluster.stop()
    assert await udp_exchange(cluster, dns.message.make_query(SVC, "A").to_wire()) is None
    with pytest.raises(ConnectionRefusedError):
        await ask(cluster, SVC, tcp=True, wait=0.5)

    await cluster.start()
    assert cluster.nameserver == nameserver
    assert texts(await ask(cluster, SVC), "A") == ["10.1.0.1"]
    assert texts(await ask(cluster, SVC, tcp=True), "A") == ["10.1.0.1"]


async def test_serves_on_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        server = ClusterDNS(host="::1")
        await server.start()
    except OSError as error:
        pytest.skip(f"cannot bind ::1: {error}")
    try:
        server.add_service("web", endpoints=ips(1))
        assert server.nameserver == f"[::1]:{server.port}"
        assert texts(await ask(server, SVC), "A") == ["10.1.0.1"]
        assert texts(await ask(server, "ns.dns.cluster.local.", "AAAA"), "AAAA") == ["::1"]
    finally:
        await server.stop()


# -- hostile input --------------------------------------------------------------------------


def header(query_id: int, flags: int = 0, qdcount: int = 0) -> bytes:
    return struct.pack("!HHHHHH", query_id, flags, qdcount, 0, 0, 0)


async def test_malformed_queries_get_formerr_with_their_id(cluster: ClusterDNS) -> None:
    no_question = header(0x1234, dns.flags.RD)
    two = dns.message.make_query(SVC, "A")
    two.question.append(dns.message.make_query("x.cluster.local.", "A").question[0])
    lying_count = header(0x4321, 0, qdcount=3) + b"\x03web\x00"

    for data, query_id in [(no_question, 0x1234), (two.to_wire(), two.id), (lying_count, 0x4321)]:
        reply = await udp_exchange(cluster, data)
        assert reply is not None
        parsed = dns.message.from_wire(reply)
        assert parsed.id == query_id
        assert parsed.rcode() == dns.rcode.FORMERR
        assert parsed.flags & dns.flags.QR


async def test_other_opcodes_are_not_implemented(cluster: ClusterDNS) -> None:
    update = header(7, dns.opcode.to_flags(dns.opcode.UPDATE))

    reply = await udp_exchange(cluster, update)

    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.rcode() == dns.rcode.NOTIMP
    assert parsed.opcode() == dns.opcode.UPDATE


async def test_short_packets_and_responses_are_ignored(cluster: ClusterDNS) -> None:
    response = dns.message.make_response(dns.message.make_query(SVC, "A")).to_wire()

    for data in [b"", b"\x12", b"\x12\x34\x01", response]:
        assert await udp_exchange(cluster, data, wait=0.1) is None


async def test_random_garbage_never_stops_the_server(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=ips(1))
    rng = random.Random(1234)
    valid = dns.message.make_query(SVC, "A").to_wire()
    junk = [rng.randbytes(rng.randrange(0, 600)) for _ in range(150)]
    junk += [bytes(b ^ rng.randrange(256) if rng.random() < 0.1 else b for b in valid)]
    junk += [valid[:cut] for cut in range(len(valid))]

    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (cluster.host, cluster.port))
        for data in junk:
            await loop.sock_sendall(sock, data)

    assert texts(await ask(cluster, SVC), "A") == ["10.1.0.1"]
    assert texts(await ask(cluster, SVC, tcp=True), "A") == ["10.1.0.1"]


async def test_tcp_answers_several_queries_on_one_connection(cluster: ClusterDNS) -> None:
    cluster.add_service("web", endpoints=ips(2))
    reader, writer = await asyncio.open_connection(cluster.host, cluster.port)
    queries = [dns.message.make_query(SVC, rdtype) for rdtype in ("A", "AAAA", "SRV")]
    try:
        writer.write(
            b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
        )
        replies = []
        for _ in queries:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            replies.append(dns.message.from_wire(await reader.readexactly(length)))
    finally:
        writer.close()

    assert [r.id for r in replies] == [q.id for q in queries]
    assert [len(r.answer) for r in replies] == [1, 0, 0]


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("!H", 5000) + b"\x00" * 20,
        struct.pack("!H", 40),
        b"\x00",
    ],
    ids=["length-beyond-data", "length-without-data", "half-a-length"],
)
async def test_tcp_stalled_messages_are_closed_not_held(cluster: ClusterDNS, data: bytes) -> None:
    cluster.tcp_read_timeout = 0.2
    cluster.tcp_idle_timeout = 0.2
    reader, writer = await asyncio.open_connection(cluster.host, cluster.port)
    try:
        writer.write(data)
        await writer.drain()

        assert await asyncio.wait_for(reader.read(), timeout=5.0) == b""
    finally:
        writer.close()
    assert texts(await ask(cluster, "nope.cluster.local.", "A"), "A") == []


async def test_tcp_garbage_gets_formerr_then_the_connection_still_works(
    cluster: ClusterDNS,
) -> None:
    cluster.add_service("web", endpoints=ips(1))
    garbage = header(99, 0, qdcount=1) + b"\xff\xff"
    query = dns.message.make_query(SVC, "A")
    reader, writer = await asyncio.open_connection(cluster.host, cluster.port)
    try:
        for data in (garbage, query.to_wire()):
            writer.write(struct.pack("!H", len(data)) + data)
        replies = []
        for _ in range(2):
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            replies.append(dns.message.from_wire(await reader.readexactly(length)))
    finally:
        writer.close()

    assert (replies[0].id, replies[0].rcode()) == (99, dns.rcode.FORMERR)
    assert texts(replies[1], "A") == ["10.1.0.1"]
