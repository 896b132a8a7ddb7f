"""Hostile DNS answers: each is a ResolutionError or ignored, never a crash, hang or wrong cache.

A hostile server on loopback answers every query with a packet derived from the true answer
to that very query (cut, flipped, wrong ID, wrong question, foreign records, CNAME and
compression-pointer loops, extreme TTLs, lying TCP length prefixes) or with random bytes.
Each hypothesis example is a batch of concurrent queries, one hostility each, so ten thousand
responses take seconds: a packet expected to be ignored leaves its client waiting, so those
queries run with a short timeout and the rest with a patient one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import dns.message
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from headless_resolver import EndpointSet, HeadlessResolver, ResolutionError, ServiceNotFound
from headless_resolver._dns import BACKENDS, BackendKind, DnsAnswer, RecordType, make_backend
from tests.leaks import open_fds
from tests.servers.hostile import (
    MAX_TTL,
    HostileDns,
    Reply,
    cname_loop,
    flipped,
    framed,
    pointer_loop,
    response,
    with_id,
)

BATCH = 40
NAMESPACE = "fuzz"
ZONE = "cluster.local"
SHORT_TIMEOUT = 0.05
PATIENT_TIMEOUT = 3.0
TTLS = (0, 1, 5, MAX_TTL)
BACKEND_EXAMPLES = 110
RESOLVER_EXAMPLES = 40
"""2 x 110 x 40 answers to backends, and 2 x 40 x 40 x (1 or 2) to resolvers: over 12,000."""


def fqdn(i: int) -> str:
    return f"s{i}.{NAMESPACE}.svc.{ZONE}."


def index_of(name: str) -> int | None:
    label = name.split(".", 1)[0]
    return int(label[1:]) if label[:1] == "s" and label[1:].isdigit() else None


# -- the truth, and what each hostility does to it --------------------------------------------

Records = list[tuple[str, str, list[str]]]


def own_records(i: int, rdtype: str) -> tuple[Records, Records]:
    """(answer, additional) that a correct server sends for ``fqdn(i)`` and ``rdtype``."""
    name = fqdn(i)
    if rdtype == "A":
        return [(name, "A", [f"10.{i}.{i}.1", f"10.{i}.{i}.2"])], []
    if rdtype == "AAAA":
        return [(name, "AAAA", [f"fd00::{i + 1}:1"])], []
    targets = [f"p{k}.{name}" for k in range(2)]
    srv = [(name, "SRV", [f"0 50 8080 {target}" for target in targets])]
    glue: Records = [(target, "A", [f"10.{i}.{k}.9"]) for k, target in enumerate(targets)]
    return srv, glue


def own_addresses(i: int, rdtype: str) -> set[str]:
    answer, additional = own_records(i, rdtype)
    return {address for _, _, data in answer + additional for address in data if " " not in address}


class Expect(Enum):
    EXACT = "the true answer"
    EXACT_OR_ERROR = "the true answer or ResolutionError"
    NEGATIVE_OR_ERROR = "a negative answer or ResolutionError"
    ERROR = "ResolutionError"
    ANY = "any well-typed answer or ResolutionError"


@dataclass(frozen=True)
class Hostility:
    expect: Expect
    slow: bool
    """The client may have to wait for its timeout (the packet is ignored, or the TCP stalls)."""
    reply: Callable[[dns.message.Message, bool, Plan], Reply]


@dataclass(frozen=True)
class Plan:
    """One query's fate: ``kind`` names the hostility; ``n`` and ``seed`` shape it."""

    kind: str
    n: int
    seed: int
    index: int = 0
    ttl: int = 5

    @property
    def hostility(self) -> Hostility:
        return HOSTILITIES[self.kind]


def true_answer(query: dns.message.Message, plan: Plan, *, ttl: int = 5) -> bytes:
    rdtype = query.question[0].rdtype
    answer, additional = own_records(plan.index, dns.rdatatype.to_text(rdtype))
    return response(query, answer, additional=additional, ttl=ttl)


def foreign_records(query: dns.message.Message, plan: Plan) -> bytes:
    """The true answer plus records of other names in the batch, in the sections ``n`` picks,
    and records of the question name with another type."""
    rdtype = dns.rdatatype.to_text(query.question[0].rdtype)
    answer, additional = own_records(plan.index, rdtype)
    others: Records = []
    for step in range(1, 4):
        j = (plan.index + step) % BATCH
        for other_type in ("A", "AAAA", "SRV"):
            other_answer, other_glue = own_records(j, other_type)
            others += other_answer + other_glue
    others.append((fqdn(plan.index), "TXT", ['"not an address"']))
    sections = plan.n % 7 + 1
    return response(
        query,
        answer + (others if sections & 1 else []),
        additional=additional + (others if sections & 2 else []),
        authority=others if sections & 4 else [],
    )


def wrong_question(query: dns.message.Message, plan: Plan) -> bytes:
    """A well-formed answer, with our ID, to the same type of query for another batch name."""
    other = (plan.index + 1 + plan.n % (BATCH - 1)) % BATCH
    rdtype = dns.rdatatype.to_text(query.question[0].rdtype)
    fake = dns.message.make_query(fqdn(other), rdtype)
    fake.id = query.id
    answer, additional = own_records(other, rdtype)
    return response(fake, answer, additional=additional)


def cut(wire: bytes, plan: Plan) -> bytes:
    return wire[: plan.n % len(wire)]


def junk(query: dns.message.Message, plan: Plan) -> bytes:
    """Random bytes whose ID is not ours."""
    data = random.Random(plan.seed).randbytes(plan.n % 600)
    if len(data) >= 2 and int.from_bytes(data[:2], "big") == query.id:
        data = with_id(data, query.id ^ 0xFFFF)
    return data


def random_with_our_id(query: dns.message.Message, plan: Plan) -> bytes:
    return with_id(random.Random(plan.seed).randbytes(12 + plan.n % 600), query.id)


def truncated_udp(query: dns.message.Message) -> Reply:
    return Reply((response(query, soa=False, truncated=True),))


def udp(
    make: Callable[[dns.message.Message, Plan], list[bytes]],
) -> Callable[[dns.message.Message, bool, Plan], Reply]:
    """Datagrams over UDP; the same packets, framed, if the client asks over TCP anyway."""

    def reply(query: dns.message.Message, over_tcp: bool, plan: Plan) -> Reply:
        packets = make(query, plan)
        if over_tcp:
            return Reply(tuple(framed(p) for p in packets if len(p) >= 12), then="close")
        return Reply(tuple(packets))

    return reply


def tcp(
    make: Callable[[dns.message.Message, Plan], Reply],
) -> Callable[[dns.message.Message, bool, Plan], Reply]:
    """A UDP answer with TC set and no records, then ``make``'s reply over TCP."""

    def reply(query: dns.message.Message, over_tcp: bool, plan: Plan) -> Reply:
        return make(query, plan) if over_tcp else truncated_udp(query)

    return reply


def long_prefix(query: dns.message.Message, plan: Plan, then: str) -> Reply:
    wire = true_answer(query, plan)
    prefix = (len(wire) + 1 + plan.n % 100).to_bytes(2, "big")
    return Reply((prefix + wire,), then=then)  # type: ignore[arg-type]


E = Expect
HOSTILITIES: dict[str, Hostility] = {
    # over UDP
    "true answer": Hostility(E.EXACT, False, udp(lambda q, p: [true_answer(q, p, ttl=p.ttl)])),
    "foreign records": Hostility(E.EXACT, False, udp(lambda q, p: [foreign_records(q, p)])),
    "wrong ID, then the answer": Hostility(
        E.EXACT, False, udp(lambda q, p: [with_id(true_answer(q, p), q.id ^ 1), true_answer(q, p)])
    ),
    "short packet, then the answer": Hostility(
        E.EXACT,
        False,
        udp(lambda q, p: [with_id(true_answer(q, p), q.id)[: p.n % 12], true_answer(q, p)]),
    ),
    "random bytes, then the answer": Hostility(
        E.EXACT, False, udp(lambda q, p: [junk(q, p), true_answer(q, p)])
    ),
    "wrong question, then the answer": Hostility(
        E.EXACT_OR_ERROR, False, udp(lambda q, p: [wrong_question(q, p), true_answer(q, p)])
    ),
    "query echoed, then the answer": Hostility(
        E.EXACT_OR_ERROR, False, udp(lambda q, p: [q.to_wire(), true_answer(q, p)])
    ),
    "CNAME loop": Hostility(E.NEGATIVE_OR_ERROR, False, udp(lambda q, p: [cname_loop(q, p.n % 4)])),
    "wrong ID only": Hostility(
        E.ERROR, True, udp(lambda q, p: [with_id(true_answer(q, p), q.id ^ 0x8000)])
    ),
    "short packet only": Hostility(
        E.ERROR, True, udp(lambda q, p: [with_id(true_answer(q, p), q.id)[: p.n % 12]])
    ),
    "wrong question only": Hostility(E.ERROR, True, udp(lambda q, p: [wrong_question(q, p)])),
    "cut short": Hostility(E.ERROR, True, udp(lambda q, p: [cut(true_answer(q, p), p)])),
    "compression pointer loop": Hostility(
        E.ERROR, True, udp(lambda q, p: [pointer_loop(q, p.n % 4)])
    ),
    "flipped bytes": Hostility(
        E.ANY,
        True,
        udp(lambda q, p: [flipped(true_answer(q, p), random.Random(p.seed), 1 + p.n % 8)]),
    ),
    "random bytes with our ID": Hostility(
        E.ANY, True, udp(lambda q, p: [random_with_our_id(q, p)])
    ),
    # truncated over UDP, then over TCP
    "TCP: true answer": Hostility(
        E.EXACT, False, tcp(lambda q, p: Reply((framed(true_answer(q, p, ttl=p.ttl)),)))
    ),
    "TCP: foreign records": Hostility(
        E.EXACT, False, tcp(lambda q, p: Reply((framed(foreign_records(q, p)),)))
    ),
    "TCP: length prefix beyond the data, then close": Hostility(
        E.ERROR, True, tcp(lambda q, p: long_prefix(q, p, "close"))
    ),
    "TCP: length prefix beyond the data, then stall": Hostility(
        E.ERROR, True, tcp(lambda q, p: long_prefix(q, p, "stall"))
    ),
    "TCP: closed without an answer": Hostility(
        E.ERROR, True, tcp(lambda q, p: Reply(then="close"))
    ),
    "TCP: cut short": Hostility(
        E.ERROR, True, tcp(lambda q, p: Reply((framed(cut(true_answer(q, p), p)),), "close"))
    ),
    "TCP: compression pointer loop": Hostility(
        E.ERROR, True, tcp(lambda q, p: Reply((framed(pointer_loop(q, p.n % 4)),), "close"))
    ),
    "TCP: flipped bytes": Hostility(
        E.ANY,
        True,
        tcp(
            lambda q, p: Reply(
                (framed(flipped(true_answer(q, p), random.Random(p.seed), 1 + p.n % 8)),),
                "close",
            )
        ),
    ),
    "TCP: random bytes with our ID": Hostility(
        E.ANY, True, tcp(lambda q, p: Reply((framed(random_with_our_id(q, p)),), "close"))
    ),
}


C_ARES_UNREADABLE = {"random bytes, then the answer", "short packet, then the answer"}
"""c-ares fails every query waiting on a socket that received an unreadable datagram
(EBADRESP) instead of ignoring it; the resolver's next attempt asks again. These run beside
the slow ones, so that they cannot fail the others."""


def expected(plan: Plan, kind: BackendKind) -> Expect:
    expect = plan.hostility.expect
    if kind == "aiodns":
        if plan.kind == "query echoed, then the answer":
            return Expect.ANY  # c-ares 1.34 ignores the QR bit: the echo reads as NODATA
        tcp_exact = plan.kind.startswith("TCP:") and expect is Expect.EXACT
        if plan.kind in C_ARES_UNREADABLE or tcp_exact:
            # c-ares also shortens its timeout to a multiple of the latency it has seen, so a
            # TCP retry behind a fast UDP answer may time out well before ``timeout``.
            return Expect.EXACT_OR_ERROR
    return expect


def patient(plan: Plan, kind: BackendKind) -> bool:
    """Whether the query may wait for the patient timeout: its answer should arrive."""
    return not plan.hostility.slow and not (kind == "aiodns" and plan.kind in C_ARES_UNREADABLE)


def plans() -> st.SearchStrategy[Plan]:
    return st.builds(
        Plan,
        kind=st.sampled_from(sorted(HOSTILITIES)),
        n=st.integers(0, 2**16),
        seed=st.integers(0, 2**32 - 1),
        ttl=st.sampled_from(TTLS),
    )


def batches() -> st.SearchStrategy[list[Plan]]:
    return st.lists(plans(), min_size=BATCH, max_size=BATCH).map(
        lambda drawn: [Plan(p.kind, p.n, p.seed, index=i, ttl=p.ttl) for i, p in enumerate(drawn)]
    )


# -- the server, and the health of the process around it -----------------------------------------


@dataclass
class Batch:
    """The plans the hostile server follows for the example being run, by name index."""

    plans: list[Plan] = field(default_factory=list)
    answered: int = 0

    def script(self, query: dns.message.Message, over_tcp: bool) -> Reply:
        i = index_of(query.question[0].name.to_text().lower())
        if i is None or i >= len(self.plans):
            return Reply()
        self.answered += 1
        plan = self.plans[i]
        return plan.hostility.reply(query, over_tcp, plan)


async def settled_tasks() -> set[asyncio.Task[object]]:
    """Tasks other than the caller's still pending after connections have wound down."""
    pending: set[asyncio.Task[object]] = set()
    for _ in range(50):
        pending = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        if not pending:
            break
        await asyncio.sleep(0.01)
    return pending


async def settled_fds(baseline: int) -> int:
    """The FD count once c-ares' shutdown thread has closed what it still holds (~1 s max)."""
    for _ in range(100):
        count = open_fds()
        if count <= baseline:
            return count
        await asyncio.sleep(0.02)
    return open_fds()


def fuzz(
    runner: asyncio.Runner,
    examples: int,
    strategy: st.SearchStrategy[list[Plan]],
    run_batch: Callable[[HostileDns, list[Plan]], Coroutine[Any, Any, None]],
) -> Batch:
    """Run ``examples`` hypothesis batches against one hostile server; then check that honest
    answers still come through, the loop has no task left and the process no extra FD."""
    batch = Batch()
    server = HostileDns(batch.script)
    fds_before = open_fds()
    runner.run(server.start())

    # No shrinking: a failure names its plan already, and shrinking batches that each wait
    # for a timeout takes minutes.
    @settings(
        max_examples=examples,
        deadline=None,
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def example(plans: list[Plan]) -> None:
        batch.plans = plans
        runner.run(run_batch(server, plans))

    example()
    # Still healthy: a batch of honest answers comes through as it should.
    batch.plans = [Plan("true answer", 0, 0, index=i) for i in range(BATCH)]
    runner.run(run_batch(server, batch.plans))

    async def finish() -> tuple[set[asyncio.Task[object]], int]:
        await server.aclose()
        return await settled_tasks(), await settled_fds(fds_before)

    leftover_tasks, fds_after = runner.run(finish())
    assert leftover_tasks == set()
    assert fds_after <= fds_before
    return batch


# -- backends ----------------------------------------------------------------------------------


def check_answer(
    plan: Plan, rdtype: RecordType, outcome: DnsAnswer | BaseException, expect: Expect
) -> None:
    where = f"{plan} {rdtype}"
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, ResolutionError), f"{where}: {outcome!r}"
        assert expect is not Expect.EXACT, f"{where}: {outcome!r}"
        return
    assert expect is not Expect.ERROR, f"{where}: {outcome!r}"
    assert outcome.name == fqdn(plan.index)
    assert outcome.rdtype == rdtype
    family = ipaddress.IPv4Address if rdtype != "AAAA" else ipaddress.IPv6Address
    found = set(outcome.addresses) | {a for addrs in outcome.glue.values() for a in addrs}
    assert all(isinstance(ipaddress.ip_address(a), family) for a in outcome.addresses), where
    if not outcome.negative:
        assert outcome.ttl is not None, where
        assert 0 <= outcome.ttl <= 2**32, where
    if expect is Expect.NEGATIVE_OR_ERROR:
        assert outcome.negative, f"{where}: {outcome!r}"
    elif expect in (Expect.EXACT, Expect.EXACT_OR_ERROR):
        assert outcome.rcode == "NOERROR", where
        assert found == own_addresses(plan.index, rdtype), where
        if rdtype == "SRV":
            assert {s.target for s in outcome.srv} == {
                f"p{k}.{fqdn(plan.index)}" for k in range(2)
            }, where
        sent_ttl = plan.ttl if plan.kind.endswith("true answer") else 5
        assert outcome.ttl == sent_ttl, where


@pytest.mark.slow
@pytest.mark.parametrize("kind", BACKENDS)
def test_a_backend_survives_hostile_answers(runner: asyncio.Runner, kind: BackendKind) -> None:
    async def run_batch(server: HostileDns, plans: list[Plan]) -> None:
        choices: tuple[RecordType, ...] = ("A", "AAAA", "SRV")
        rdtypes = [choices[p.seed % 3] for p in plans]
        where = [("127.0.0.1", server.port)]
        short = make_backend(kind, where, timeout=SHORT_TIMEOUT)
        long = make_backend(kind, where, timeout=PATIENT_TIMEOUT)

        async def ask(plan: Plan, rdtype: RecordType) -> DnsAnswer | BaseException:
            backend = long if patient(plan, kind) else short
            try:
                return await backend.query(fqdn(plan.index), rdtype)
            except ResolutionError as exc:
                return exc

        try:
            outcomes = await asyncio.gather(*map(ask, plans, rdtypes))
        finally:
            await short.aclose()
            await long.aclose()
        for plan, rdtype, outcome in zip(plans, rdtypes, outcomes, strict=True):
            check_answer(plan, rdtype, outcome, expected(plan, kind))

    batch = fuzz(runner, BACKEND_EXAMPLES, batches(), run_batch)
    assert batch.answered >= BACKEND_EXAMPLES * BATCH


# -- the resolver --------------------------------------------------------------------------------


def check_lookup(plan: Plan, outcome: EndpointSet | BaseException, expect: Expect) -> None:
    where = str(plan)
    if isinstance(outcome, ServiceNotFound):
        assert expect in (Expect.NEGATIVE_OR_ERROR, Expect.ANY), f"{where}: {outcome!r}"
        return
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, ResolutionError), f"{where}: {outcome!r}"
        assert expect is not Expect.EXACT, f"{where}: {outcome!r}"
        return
    assert expect not in (Expect.ERROR, Expect.NEGATIVE_OR_ERROR), f"{where}: {outcome!r}"
    assert outcome.name == fqdn(plan.index)
    if expect is not Expect.ANY:
        assert {e.ip for e in outcome} == addresses_of(plan.index), where


def addresses_of(i: int) -> set[str]:
    return own_addresses(i, "A") | own_addresses(i, "AAAA")


def check_cache(plan: Plan, cached: EndpointSet | None, kind: BackendKind) -> None:
    """Whatever is cached under a name came from answers to that name."""
    if cached is None:
        return
    assert cached.name == fqdn(plan.index)
    found = {e.ip for e in cached}
    if expected(plan, kind) is Expect.ANY:
        others = set().union(*(addresses_of(j) for j in range(BATCH) if j != plan.index))
        assert not found & others, f"{plan}: {cached!r}"
    else:
        assert found == addresses_of(plan.index), f"{plan}: {cached!r}"


@pytest.mark.slow
@pytest.mark.parametrize("kind", BACKENDS)
def test_a_resolver_caches_nothing_under_the_wrong_name(
    runner: asyncio.Runner, kind: BackendKind
) -> None:
    async def run_batch(server: HostileDns, plans: list[Plan]) -> None:
        options = {
            "backend": kind,
            "namespace": NAMESPACE,
            "cluster_domain": ZONE,
            "attempts": 1,
            "refresh_ahead": None,
        }
        short = HeadlessResolver([server.nameserver], timeout=SHORT_TIMEOUT, **options)  # type: ignore[arg-type]
        long = HeadlessResolver([server.nameserver], timeout=PATIENT_TIMEOUT, **options)  # type: ignore[arg-type]

        def resolver_for(plan: Plan) -> HeadlessResolver:
            return long if patient(plan, kind) else short

        async def lookup(plan: Plan) -> EndpointSet | BaseException:
            try:
                return await resolver_for(plan).resolve(f"s{plan.index}")
            except (ResolutionError, ServiceNotFound) as exc:
                return exc

        try:
            outcomes = await asyncio.gather(*map(lookup, plans))
            cached = [resolver_for(plan).peek(f"s{plan.index}") for plan in plans]
        finally:
            await short.aclose()
            await long.aclose()
        for plan, outcome, entry in zip(plans, outcomes, cached, strict=True):
            check_lookup(plan, outcome, expected(plan, kind))
            check_cache(plan, entry, kind)

    batch = fuzz(runner, RESOLVER_EXAMPLES, batches(), run_batch)
    assert batch.answered >= RESOLVER_EXAMPLES * BATCH  # A and AAAA, unless one fails first
