"""Both DNS backends against real servers: Knot DNS, BIND 9, and scripted responders on
loopback sockets for what an authoritative server will not do on demand (garbage, SERVFAIL,
foreign records, a truncated TCP answer)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from headless_resolver._dns import BACKENDS, DnsAnswer, DnsBackend, RecordType, make_backend
from headless_resolver._errors import InvalidServiceName, ResolutionError
from headless_resolver.testing._model import ServiceSpec
from tests.servers import AuthoritativeServer, query

WEB = "web.default.svc.cluster.local."
WEB_PODS = [("10.0.0.1", "web-0"), ("10.0.0.2", "web-1"), ("10.0.0.3", "web-2")]


def web(pods: list[tuple[str, str]] = WEB_PODS) -> ServiceSpec:
    return ServiceSpec("web", endpoints=tuple(pods), ports=(("http", "tcp", 8080),))


def many_pods(name: str, count: int) -> ServiceSpec:
    return ServiceSpec(
        name, endpoints=tuple(f"10.9.{i // 250}.{i % 250 + 1}" for i in range(count))
    )


OpenBackend = Callable[..., DnsBackend]


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def open_backend(kind: str) -> AsyncIterator[OpenBackend]:
    """``open_backend(host, port, timeout=2.0)`` -> a backend of the parametrized kind."""
    opened: list[DnsBackend] = []

    def open_(host: str, port: int, *, timeout: float = 2.0) -> DnsBackend:
        backend = make_backend(kind, [(host, port)], timeout=timeout)  # type: ignore[arg-type]
        opened.append(backend)
        return backend

    yield open_
    for backend in opened:
        await backend.aclose()


def backend_for(open_backend: OpenBackend, server: AuthoritativeServer) -> DnsBackend:
    return open_backend(server.host, server.port)


# -- scripted responder ----------------------------------------------------------------------

Script = Callable[[dns.message.Message, bool], Awaitable[bytes | None]]


class ScriptedDns:
    """UDP and TCP on one loopback port; ``script(query, over_tcp)`` returns the reply bytes
    (None: stay silent). Counts what arrives per transport."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.udp_queries = 0
        self.tcp_queries = 0
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self) -> ScriptedDns:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _ScriptedUdp(self), local_addr=("127.0.0.1", 0)
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", port)
            except OSError:
                udp.close()
                continue
            self._udp, self.port = udp, port
            return self
        raise OSError("no port free for both UDP and TCP")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int.from_bytes(await reader.readexactly(2), "big")
            request = dns.message.from_wire(await reader.readexactly(size))
            self.tcp_queries += 1
            reply = await self.script(request, True)
            if reply is not None:
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


class _ScriptedUdp(asyncio.DatagramProtocol):
    def __init__(self, server: ScriptedDns) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        asyncio.get_running_loop().create_task(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        request = dns.message.from_wire(data)
        self.server.udp_queries += 1
        reply = await self.server.script(request, False)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[ScriptedDns]]]:
    servers: list[ScriptedDns] = []

    async def start(script: Script) -> ScriptedDns:
        server = await ScriptedDns(script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def reply_to(
    request: dns.message.Message,
    *answer: str,
    additional: tuple[str, ...] = (),
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
) -> dns.message.Message:
    """A response to ``request`` with records given in zone-file text."""
    response = dns.message.make_response(request)
    response.set_rcode(rcode)
    for text in answer:
        response.answer.append(rrset(text))
    for text in additional:
        response.additional.append(rrset(text))
    return response


def rrset(text: str) -> dns.rrset.RRset:
    """One record in zone-file text: ``name ttl class type data``."""
    name, ttl, rdclass, rdtype, data = text.split(maxsplit=4)
    return dns.rrset.from_text(name, int(ttl), rdclass, rdtype, data)


Answered = Callable[..., Awaitable[DnsAnswer]]


@pytest.fixture
def answered(
    scripted: Callable[[Script], Awaitable[ScriptedDns]], open_backend: OpenBackend
) -> Answered:
    """``await answered(name, rdtype, *records, additional=())``: the backend's answer from a
    server that replies to every query with those records (zone-file text)."""

    async def ask(
        name: str, rdtype: RecordType, *records: str, additional: tuple[str, ...] = ()
    ) -> DnsAnswer:
        async def reply(request: dns.message.Message, over_tcp: bool) -> bytes:
            return reply_to(request, *records, additional=additional).to_wire()

        server = await scripted(reply)
        return await open_backend("127.0.0.1", server.port).query(name, rdtype)

    return ask


# -- answers from Knot -----------------------------------------------------------------------


async def test_a_query_returns_every_ready_pod_with_the_record_ttl(
    make_knot_dns: Callable[..., AuthoritativeServer], open_backend: OpenBackend
) -> None:
    not_ready = ("10.0.0.4", "web-3", False)
    knot = make_knot_dns([ServiceSpec("web", endpoints=(*WEB_PODS, not_ready))], ttl=7)

    answer = await backend_for(open_backend, knot).query(WEB, "A")

    assert answer.rcode == "NOERROR"
    assert not answer.negative
    assert sorted(answer.addresses) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert answer.ttl == 7
    assert answer.name == WEB
    assert answer.rdtype == "A"


async def test_aaaa_query_returns_ipv6_pods(
    make_knot_dns: Callable[..., AuthoritativeServer], open_backend: OpenBackend
) -> None:
    knot = make_knot_dns([ServiceSpec("v6", endpoints=("fd00::1", "fd00:0::2", "10.0.0.9"))])

    answer = await backend_for(open_backend, knot).query("v6.default.svc.cluster.local.", "AAAA")

    assert sorted(answer.addresses) == ["fd00::1", "fd00::2"]
    assert answer.ttl == 5


async def test_srv_query_returns_ports_targets_and_glue(
    make_knot_dns: Callable[..., AuthoritativeServer], open_backend: OpenBackend
) -> None:
    knot = make_knot_dns([web()])

    answer = await backend_for(open_backend, knot).query(f"_http._tcp.{WEB}", "SRV")

    targets = {r.target: (r.priority, r.weight, r.port) for r in answer.srv}
    assert targets == {f"web-{i}.{WEB}": (0, 33, 8080) for i in range(3)}
    assert dict(answer.glue) == {f"{host}.{WEB}": (ip,) for ip, host in WEB_PODS}
    assert answer.ttl == 5
    assert answer.addresses == ()


async def test_upper_case_names_are_asked_lower_case(
    make_knot_dns: Callable[..., AuthoritativeServer], open_backend: OpenBackend
) -> None:
    knot = make_knot_dns([web()])

    answer = await backend_for(open_backend, knot).query(WEB.upper(), "A")

    assert answer.name == WEB
    assert len(answer.addresses) == 3


async def test_nxdomain_is_an_answer_with_the_soa_negative_ttl(
    make_knot_dns: Callable[..., AuthoritativeServer], open_backend: OpenBackend
) -> None:
    knot = make_knot_dns([web()], ttl=9)

    answer = await backend_for(open_backend, knot).query("gone.default.svc.cluster.local.", "A")

    assert answer.rcode == "NXDOMAIN"
    assert answer.negative
    assert answer.addresses == ()
    assert answer.ttl is None
    assert answer.negative_ttl == 9


async def test_nodata_is_a_negative_noerror_answer(
    make_knot_dns: Callable[..., AuthoritativeServer], open_backend: OpenBackend
) -> None:
    knot = make_knot_dns([web()], ttl=6)

    answer = await backend_for(open_backend, knot).query(WEB, "AAAA")

    assert answer.rcode == "NOERROR"
    assert answer.negative
    assert answer.addresses == ()
    assert answer.negative_ttl == 6


@pytest.mark.parametrize(
    ("rcode", "soa_ttl", "minimum", "negative_ttl"),
    [
        ("NXDOMAIN", 30, 4, 4),
        ("NXDOMAIN", 3, 60, 3),
        ("NOERROR", 30, 4, 4),
        ("NOERROR", 3, 60, 3),
        # RFC 2181 section 8: a TTL with the top bit set counts as 0.
        ("NXDOMAIN", 2**31, 60, 0),
        ("NOERROR", 30, 2**31 + 5, 0),
    ],
)
async def test_negative_ttl_is_the_smaller_of_soa_ttl_and_minimum(
    scripted: Callable[[Script], Awaitable[ScriptedDns]],
    open_backend: OpenBackend,
    rcode: str,
    soa_ttl: int,
    minimum: int,
    negative_ttl: float,
) -> None:
    async def negative(request: dns.message.Message, over_tcp: bool) -> bytes:
        response = reply_to(request, rcode=dns.rcode.from_text(rcode))
        soa = f"ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 {minimum}"
        response.authority.append(dns.rrset.from_text("cluster.local.", soa_ttl, "IN", "SOA", soa))
        return response.to_wire()

    server = await scripted(negative)

    answer = await open_backend("127.0.0.1", server.port).query(WEB, "A")

    assert (answer.rcode, answer.negative) == (rcode, True)
    assert answer.negative_ttl == negative_ttl


async def test_a_negative_answer_without_an_soa_has_no_negative_ttl(
    scripted: Callable[[Script], Awaitable[ScriptedDns]], open_backend: OpenBackend
) -> None:
    async def bare(request: dns.message.Message, over_tcp: bool) -> bytes:
        return reply_to(request, rcode=dns.rcode.NXDOMAIN).to_wire()

    server = await scripted(bare)

    answer = await open_backend("127.0.0.1", server.port).query(WEB, "A")

    assert answer.rcode == "NXDOMAIN"
    assert answer.negative_ttl is None


async def test_a_zone_the_server_does_not_serve_is_refused(
    knot_dns: AuthoritativeServer, open_backend: OpenBackend
) -> None:
    backend = backend_for(open_backend, knot_dns)

    with pytest.raises(ResolutionError) as failure:
        await backend.query("web.default.svc.other.example.", "A")

    assert (failure.value.reason, failure.value.rcode) == ("RCODE", "REFUSED")
    assert failure.value.name == "web.default.svc.other.example."


# -- size: EDNS, truncation, TCP -------------------------------------------------------------


async def test_a_2000_pod_service_comes_complete_over_tcp(
    make_knot_dns: Callable[..., AuthoritativeServer], open_backend: OpenBackend
) -> None:
    knot = make_knot_dns([many_pods("big", 2000)])
    name = "big.default.svc.cluster.local."
    udp = query(knot.nameserver, name, "A")
    assert udp.flags & dns.flags.TC, "premise: the answer does not fit a 1232-byte UDP reply"

    answer = await backend_for(open_backend, knot).query(name, "A")

    assert len(answer.addresses) == 2000
    assert set(answer.addresses) == {ep.ip for ep in many_pods("big", 2000).endpoints}
    assert not answer.truncated


async def test_bind_partial_truncated_udp_answer_is_never_used(
    make_bind_dns: Callable[..., AuthoritativeServer], open_backend: OpenBackend
) -> None:
    bind = make_bind_dns([many_pods("wide", 120)])
    name = "wide.default.svc.cluster.local."
    partial = query(bind.nameserver, name, "A", edns=False)
    assert partial.flags & dns.flags.TC, "premise: BIND truncates a plain UDP answer"
    assert 0 < len(partial.answer[0]) < 120, "premise: ...and sends the part that fits"

    answer = await backend_for(open_backend, bind).query(name, "A")

    assert len(answer.addresses) == 120


async def test_a_truncated_tcp_answer_is_kept_and_marked(
    scripted: Callable[[Script], Awaitable[ScriptedDns]], open_backend: OpenBackend
) -> None:
    async def truncating(request: dns.message.Message, over_tcp: bool) -> bytes:
        response = reply_to(request, *(f"{WEB} 5 IN A 10.0.0.{i}" for i in (1, 2, 3)))
        if not over_tcp:
            response.answer.clear()
        response.flags |= dns.flags.TC
        return response.to_wire()

    server = await scripted(truncating)

    answer = await open_backend("127.0.0.1", server.port).query(WEB, "A")

    assert (server.udp_queries, server.tcp_queries) == (1, 1)
    assert sorted(answer.addresses) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert answer.truncated


# -- what counts in an answer ----------------------------------------------------------------


async def test_records_for_other_names_and_types_are_ignored(answered: Answered) -> None:
    answer = await answered(
        WEB,
        "A",
        f"{WEB} 30 IN A 10.0.0.1",
        f"{WEB.upper()} 20 IN A 10.0.0.2",
        "other.default.svc.cluster.local. 1 IN A 10.6.6.6",
        f"{WEB} 1 IN TXT hello",
    )

    assert sorted(answer.addresses) == ["10.0.0.1", "10.0.0.2"]
    assert answer.ttl == 20


async def test_a_ttl_with_the_top_bit_set_counts_as_zero(answered: Answered) -> None:
    answer = await answered(WEB, "A", f"{WEB} 30 IN A 10.0.0.1", f"{WEB} {2**31 + 1} IN A 10.0.0.2")

    assert sorted(answer.addresses) == ["10.0.0.1", "10.0.0.2"]
    assert answer.ttl == 0


async def test_srv_glue_is_kept_only_for_srv_targets(answered: Answered) -> None:
    srv_name = f"_http._tcp.{WEB}"

    answer = await answered(
        srv_name,
        "SRV",
        f"{srv_name} 30 IN SRV 0 50 8080 WEB-0.{WEB}",
        f"{srv_name} 30 IN SRV 0 50 8080 web-1.{WEB}",
        additional=(
            f"web-0.{WEB} 30 IN A 10.0.0.1",
            f"web-1.{WEB} 10 IN AAAA fd00::2",
            f"stranger.{WEB} 1 IN A 10.6.6.6",
        ),
    )

    assert sorted(r.target for r in answer.srv) == [f"web-0.{WEB}", f"web-1.{WEB}"]
    assert dict(answer.glue) == {f"web-0.{WEB}": ("10.0.0.1",), f"web-1.{WEB}": ("fd00::2",)}
    assert answer.ttl == 10


async def test_only_ascii_letters_are_case_folded_so_glue_of_another_name_is_not_taken(
    answered: Answered,
) -> None:
    # Octet 201 is latin-1 "É" and 233 is "é": different names, as DNS folds ASCII only.
    srv_name = f"_http._tcp.{WEB}"

    answer = await answered(
        srv_name,
        "SRV",
        f"{srv_name} 30 IN SRV 0 50 8080 \\201x.{WEB}",
        f"{srv_name} 30 IN SRV 0 50 8080 WEB-0.{WEB}",
        additional=(f"\\233x.{WEB} 30 IN A 10.6.6.6", f"web-0.{WEB} 30 IN A 10.0.0.1"),
    )

    assert len(answer.srv) == 2
    assert dict(answer.glue) == {f"web-0.{WEB}": ("10.0.0.1",)}


async def test_a_record_owned_by_one_label_spelling_the_question_with_dots_is_ignored(
    answered: Answered,
) -> None:
    one_label = WEB[:-1].replace(".", "\\.") + "."

    answer = await answered(WEB, "A", f"{WEB} 30 IN A 10.0.0.1", f"{one_label} 30 IN A 10.6.6.6")

    assert answer.addresses == ("10.0.0.1",)


async def test_a_255_octet_name_with_dots_and_backslashes_in_its_labels_is_well_formed(
    answered: Answered,
) -> None:
    odd = "a\\.\\\\" * 20  # one label: a, dot, backslash twenty times (60 octets, 100 escaped)
    inner = f"{odd}.{'b' * 60}.{'c' * 60}.{'d' * 60}."
    longest = f"{'x' * 9}.{inner}"

    answer = await answered(
        WEB,
        "A",
        f"{inner} 5 IN A 10.6.6.1",
        f"{longest} 5 IN A 10.6.6.2",
        f"{WEB} 5 IN A 10.0.0.1",
    )

    assert answer.addresses == ("10.0.0.1",)


async def test_a_cname_only_answer_is_negative_and_not_followed(
    scripted: Callable[[Script], Awaitable[ScriptedDns]], open_backend: OpenBackend
) -> None:
    """An ExternalName service answers with a CNAME: not a headless service, nothing to pick."""

    async def alias(request: dns.message.Message, over_tcp: bool) -> bytes:
        return reply_to(request, f"{WEB} 5 IN CNAME db.example.com.").to_wire()

    server = await scripted(alias)

    answer = await open_backend("127.0.0.1", server.port).query(WEB, "A")

    assert answer.rcode == "NOERROR"
    assert answer.negative
    assert answer.addresses == ()
    assert server.udp_queries == 1


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rcode", ["SERVFAIL", "REFUSED", "NOTIMP"])
async def test_server_failures_raise_resolution_error_with_the_rcode(
    scripted: Callable[[Script], Awaitable[ScriptedDns]], open_backend: OpenBackend, rcode: str
) -> None:
    async def failing(request: dns.message.Message, over_tcp: bool) -> bytes:
        return reply_to(request, rcode=dns.rcode.from_text(rcode)).to_wire()

    server = await scripted(failing)

    with pytest.raises(ResolutionError) as failure:
        await open_backend("127.0.0.1", server.port).query(WEB, "A")

    assert (failure.value.reason, failure.value.rcode) == ("RCODE", rcode)
    assert failure.value.name == WEB
    assert server.udp_queries == 1, "one attempt: retries are the resolver's job"


async def test_a_silent_server_times_out_within_the_timeout(open_backend: OpenBackend) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        backend = open_backend("127.0.0.1", silent.getsockname()[1], timeout=0.3)
        started = time.monotonic()

        with pytest.raises(ResolutionError) as failure:
            await backend.query(WEB, "A")

        elapsed = time.monotonic() - started
        received = silent.recv(512)  # the query did arrive: one attempt, then silence
    assert (failure.value.reason, failure.value.rcode) == ("TIMEOUT", None)
    assert elapsed < 2.0
    assert dns.message.from_wire(received).question[0].name.to_text() == WEB


async def test_garbage_with_the_right_id_is_malformed(
    scripted: Callable[[Script], Awaitable[ScriptedDns]], open_backend: OpenBackend
) -> None:
    async def garbage(request: dns.message.Message, over_tcp: bool) -> bytes:
        good = reply_to(request, f"{WEB} 5 IN A 10.0.0.1").to_wire()
        return good[:-3]  # the A record's data is cut short

    server = await scripted(garbage)

    with pytest.raises(ResolutionError) as failure:
        await open_backend("127.0.0.1", server.port, timeout=0.5).query(WEB, "A")

    assert (failure.value.reason, failure.value.rcode) == ("MALFORMED", None)


async def test_a_compression_pointer_loop_is_malformed(
    scripted: Callable[[Script], Awaitable[ScriptedDns]], open_backend: OpenBackend
) -> None:
    async def looping(request: dns.message.Message, over_tcp: bool) -> bytes:
        wire = reply_to(request, f"{WEB} 5 IN A 10.0.0.1").to_wire()
        owner = wire.index(b"\xc0\x0c")  # the answer's owner: a pointer to the question
        return wire[:owner] + bytes([0xC0 | owner >> 8, owner & 0xFF]) + wire[owner + 2 :]

    server = await scripted(looping)

    with pytest.raises(ResolutionError) as failure:
        await open_backend("127.0.0.1", server.port, timeout=0.5).query(WEB, "A")

    assert (failure.value.reason, failure.value.rcode) == ("MALFORMED", None)


async def test_an_answer_to_another_question_is_never_used(
    scripted: Callable[[Script], Awaitable[ScriptedDns]], open_backend: OpenBackend, kind: str
) -> None:
    async def confused(request: dns.message.Message, over_tcp: bool) -> bytes:
        other = dns.message.make_query("evil.example.", "A")
        other.id = request.id
        return reply_to(other, "evil.example. 5 IN A 10.6.6.6").to_wire()

    server = await scripted(confused)

    with pytest.raises(ResolutionError) as failure:
        await open_backend("127.0.0.1", server.port, timeout=0.5).query(WEB, "A")

    # dnspython's reader rejects it; c-ares drops it as not ours and waits until the timeout.
    assert failure.value.reason == ("MALFORMED" if kind == "dnspython" else "TIMEOUT")


async def test_closing_the_aiodns_backend_ends_a_waiting_query_as_cancelled() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(5)
        backend = make_backend("aiodns", [("127.0.0.1", silent.getsockname()[1])], timeout=10)
        waiting = asyncio.create_task(backend.query(WEB, "A"))
        await asyncio.to_thread(silent.recv, 512)  # the query is out, and will get no answer

        await backend.aclose()

        with pytest.raises(ResolutionError) as failure:
            await waiting
    assert (failure.value.reason, failure.value.rcode) == ("CANCELLED", None)


# -- no cache below ours ------------------------------------------------------------------------


async def test_changes_are_seen_at_once_no_cache_inside_the_backend(
    make_knot_dns: Callable[..., AuthoritativeServer], open_backend: OpenBackend
) -> None:
    """c-ares caches answers by default (NODATA for up to an hour): the backend must not."""
    knot = make_knot_dns([web(WEB_PODS[:2])], ttl=30)
    backend = backend_for(open_backend, knot)
    late = "late.default.svc.cluster.local."

    assert len((await backend.query(WEB, "A")).addresses) == 2
    assert (await backend.query(late, "A")).rcode == "NXDOMAIN"
    assert (await backend.query(WEB, "AAAA")).negative

    knot.set_services(
        [web([*WEB_PODS, ("fd00::4", "web-3")]), ServiceSpec("late", endpoints=("10.0.5.1",))]
    )

    assert len((await backend.query(WEB, "A")).addresses) == 3
    assert (await backend.query(late, "A")).addresses == ("10.0.5.1",)
    assert (await backend.query(WEB, "AAAA")).addresses == ("fd00::4",)


# -- configuration ------------------------------------------------------------------------------


async def test_queries_rotate_through_the_nameservers(
    scripted: Callable[[Script], Awaitable[ScriptedDns]], kind: str
) -> None:
    if kind == "aiodns":
        pytest.skip("c-ares picks servers by its own failover order")

    async def answer(request: dns.message.Message, over_tcp: bool) -> bytes:
        return reply_to(request, f"{WEB} 5 IN A 10.0.0.1").to_wire()

    first, second = await scripted(answer), await scripted(answer)
    backend = make_backend(
        "dnspython", [("127.0.0.1", first.port), ("127.0.0.1", second.port)], timeout=1
    )

    for _ in range(4):
        await backend.query(WEB, "A")

    assert (first.udp_queries, second.udp_queries) == (2, 2)


async def test_bad_arguments_raise_typed_errors(kind: str) -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        make_backend("bind", [("127.0.0.1", 53)], timeout=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an IP address"):
        make_backend(kind, [("dns.local", 53)], timeout=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"1\.\.65535"):
        make_backend(kind, [("127.0.0.1", 0)], timeout=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        make_backend(kind, [], timeout=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        make_backend(kind, [("127.0.0.1", 53)], timeout=0)  # type: ignore[arg-type]

    backend = make_backend(kind, [("127.0.0.1", 9)], timeout=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidServiceName, match="absolute"):
        await backend.query("web.default", "A")
    with pytest.raises(InvalidServiceName):
        await backend.query("a" * 64 + ".cluster.local.", "A")
    with pytest.raises(ValueError, match="record type"):
        await backend.query(WEB, "MX")  # type: ignore[arg-type]
    await backend.aclose()
