"""Coverage-guided fuzzing of the DNS response reader: any bytes in, a DnsAnswer to the question
or ResolutionError out; any other exception, or a record that is not the question's, is a crash.

tests/test_fuzz_dns.py sends hostile packets through real sockets, some twelve thousand per run;
this target hands libFuzzer's mutations straight to the dnspython backend's reader, hundreds of
thousands a minute, keeping the inputs that reach new branches of it. Run it with::

    pip install -e '.[fuzz]'
    python tests/fuzz/atheris_responses.py -atheris_runs=200000 [CORPUS_DIR] [libFuzzer flags]

The seeds (A, AAAA, SRV with glue, NXDOMAIN and NODATA with SOA, truncated) go into CORPUS_DIR,
or into a temporary directory without one; libFuzzer adds what it finds to CORPUS_DIR. A crash
is written to ./crash-<sha1>: a regression test for the normal suite to start from. The target
runs as a process of its own, never inside pytest: when atheris is done it sets the exit status
of the process it ran in (a failing suite would exit 0) and leaves libFuzzer's alarm armed.

An input is one byte choosing the question's type, then the response; the query ID is the
response's own, so that mutations reach past the ID check. Each answer is checked on its own
(the question's name and type, addresses of the right family, glue only for SRV targets, TTLs
in range) and, when dnspython reads the same bytes, against dnspython: the same rcode and the
same records for the question, and never MALFORMED for what dnspython reads as its response.
"""

from __future__ import annotations

import ipaddress
import sys
import tempfile
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import atheris
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from headless_resolver import ResolutionError
from headless_resolver._dns import _dnspython, _wire
from headless_resolver._dns._base import DnsAnswer, RecordType, rfc2181_ttl

RDTYPES: tuple[RecordType, ...] = ("A", "AAAA", "SRV")
SERVICE = "web.default.svc.cluster.local."
NAMES: dict[RecordType, str] = {"A": SERVICE, "AAAA": SERVICE, "SRV": f"_http._tcp.{SERVICE}"}
MAX_TTL = 2**31 - 1
ANSWERED = ("NOERROR", "NXDOMAIN")


def read(data: bytes) -> tuple[RecordType, bytes, _wire.Response | ResolutionError]:
    """The question ``data`` chooses, its response, and what the backend's reader made of it."""
    rdtype = RDTYPES[data[0] % len(RDTYPES)] if data else "A"
    wire = data[1:]
    query_id = int.from_bytes(wire[:2], "big")
    try:
        return rdtype, wire, _dnspython._read(wire, query_id, NAMES[rdtype], rdtype, "fuzz")
    except ResolutionError as exc:
        return rdtype, wire, exc


def check(data: bytes) -> None:
    """The fuzz target: raises AssertionError (or whatever escaped the reader) on a bad outcome."""
    rdtype, wire, outcome = read(data)
    if isinstance(outcome, ResolutionError):
        assert outcome.reason == "MALFORMED", outcome.reason
    elif outcome.answer is not None:
        # No answer becomes the backend's ResolutionError naming the rcode.
        assert outcome.rcode in ANSWERED, outcome
        check_alone(outcome.answer, rdtype)
    try:
        message = dns.message.from_wire(wire, ignore_trailing=True, one_rr_per_rrset=True)
    except Exception:
        return  # dnspython refuses it: nothing to compare with
    if isinstance(outcome, ResolutionError):
        assert not answers(message, rdtype), f"{outcome}: dnspython reads {message}"
    else:
        check_against(message, outcome, rdtype)


def answers(message: dns.message.Message, rdtype: RecordType) -> bool:
    """Whether dnspython reads a response to a standard query with exactly our question."""
    question = [(dns.name.from_text(NAMES[rdtype]), dns.rdatatype.from_text(rdtype))]
    return (
        bool(message.flags & dns.flags.QR)
        and message.opcode() == dns.opcode.QUERY
        and [(q.name, q.rdtype) for q in message.question if q.rdclass == 1] == question
        and len(message.question) == 1
    )


def check_alone(answer: DnsAnswer, rdtype: RecordType) -> None:
    """What holds of any answer: it is for the question, and well-formed for its type."""
    assert (answer.name, answer.rdtype) == (NAMES[rdtype], rdtype), answer
    assert answer.rcode in ANSWERED, answer
    family = ipaddress.IPv6Address if rdtype == "AAAA" else ipaddress.IPv4Address
    assert all(type(ipaddress.ip_address(a)) is family for a in answer.addresses), answer
    if rdtype == "SRV":
        assert not answer.addresses, answer
        assert set(answer.glue) <= {record.target for record in answer.srv}, answer
        for addresses in answer.glue.values():
            assert addresses, answer
            assert all(ipaddress.ip_address(a) for a in addresses), answer
        assert all(record.target.endswith(".") for record in answer.srv), answer
    else:
        assert not answer.srv, answer
        assert not answer.glue, answer
    positive = answer.rcode == "NOERROR" and bool(answer.addresses or answer.srv)
    assert positive == (not answer.negative), answer
    assert (answer.ttl is not None) == positive, answer
    assert answer.ttl is None or 0 <= answer.ttl <= MAX_TTL, answer
    assert answer.negative_ttl is None or not positive, answer
    assert answer.negative_ttl is None or 0 <= answer.negative_ttl <= MAX_TTL, answer


def check_against(
    message: dns.message.Message, outcome: _wire.Response, rdtype: RecordType
) -> None:
    """The reader agrees with dnspython on bytes both accept: same rcode and TC bit, and exactly
    dnspython's records for the question's name and type (and SRV targets' glue)."""
    assert outcome.rcode == _wire.RCODE_NAMES.get(message.rcode(), f"RCODE{message.rcode()}")
    assert outcome.truncated == bool(message.flags & dns.flags.TC)
    answer = outcome.answer
    if answer is None:
        return
    name = dns.name.from_text(NAMES[rdtype])
    assert message.question[0].name == name, (message.question, answer)
    found = records(message.answer, name, dns.rdatatype.from_text(rdtype))
    if rdtype == "SRV":
        srv = {(r.priority, r.weight, r.port, r.target) for r in found}
        ours = {(r.priority, r.weight, r.port, as_name(r.target)) for r in answer.srv}
        assert ours == srv, (srv, answer)
        glue = {target: addresses_of(message.additional, target) for *_, target in srv}
        glue = {target: addresses for target, addresses in glue.items() if addresses}
        ours_glue = {as_name(target): set(addresses) for target, addresses in answer.glue.items()}
        assert ours_glue == glue, (glue, answer)
    else:
        assert set(answer.addresses) == {r.address for r in found}, (found, answer)
    soa = [
        rrset
        for rrset in message.authority
        if rrset.rdtype == dns.rdatatype.SOA and rrset.rdclass == dns.rdataclass.IN
    ]
    if answer.negative and soa:
        expected = min(rfc2181_ttl(soa[0].ttl), rfc2181_ttl(soa[0][0].minimum))
        assert answer.negative_ttl == expected, (soa, answer)


def as_name(text: str) -> dns.name.Name:
    """A name as the reader writes it, read back as presentation format (octets as latin-1)."""
    return dns.name.from_text(text.encode("latin-1"))


def addresses_of(section: list[dns.rrset.RRset], name: dns.name.Name) -> set[str]:
    return {
        r.address
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for r in records(section, name, rdtype)
    }


def records(section: list[dns.rrset.RRset], name: dns.name.Name, rdtype: int) -> list[Any]:
    return [
        rdata
        for rrset in section
        if rrset.name == name and rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN
        for rdata in rrset
    ]


# -- seeds -------------------------------------------------------------------------------------


def seed(
    rdtype: RecordType,
    answer: Sequence[str] = (),
    *,
    additional: Sequence[str] = (),
    rcode: int = dns.rcode.NOERROR,
    soa: bool = False,
    truncated: bool = False,
) -> bytes:
    """The selector byte for ``rdtype``, then a response (EDNS, compressed) to its question;
    records are ``"owner ttl type rdata"``."""
    query = dns.message.make_query(NAMES[rdtype], rdtype, use_edns=0, payload=1232)
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.Rcode(rcode))
    for section, lines in ((response.answer, answer), (response.additional, additional)):
        for line in lines:
            owner, ttl, rrtype, rdata = line.split(" ", 3)
            section.append(dns.rrset.from_text(owner, int(ttl), "IN", rrtype, rdata))
    if soa:
        zone = "cluster.local."
        response.authority.append(
            dns.rrset.from_text(zone, 30, "IN", "SOA", f"ns.dns.{zone} h.{zone} 1 2 3 4 5")
        )
    if truncated:
        response.flags |= dns.flags.TC
    return bytes([RDTYPES.index(rdtype)]) + response.to_wire()


def seeds() -> dict[str, bytes]:
    srv = NAMES["SRV"]
    targets = [f"{pod}.web.default.svc.cluster.local." for pod in ("web-0", "web-1")]
    return {
        "a": seed("A", [f"{SERVICE} 5 A 10.0.0.1", f"{SERVICE} 5 A 10.0.0.2"]),
        "aaaa": seed("AAAA", [f"{SERVICE} 5 AAAA fd00::1"]),
        "srv-glue": seed(
            "SRV",
            [f"{srv} 5 SRV 0 50 8080 {targets[0]}", f"{srv} 5 SRV 0 50 8080 {targets[1]}"],
            additional=[f"{targets[0]} 5 A 10.0.0.1", f"{targets[1]} 5 AAAA fd00::2"],
        ),
        "nxdomain-soa": seed("A", rcode=dns.rcode.NXDOMAIN, soa=True),
        "nodata-soa": seed("AAAA", soa=True),
        "truncated": seed("SRV", truncated=True),
    }


def write_seeds(corpus: Path) -> Path:
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (corpus / f"seed-{name}").write_bytes(data)
    return corpus


# -- running -----------------------------------------------------------------------------------


def instrument() -> None:
    """The reader's functions report their branches to libFuzzer."""
    for function in (*vars(_wire).values(), _dnspython._read):
        if isinstance(function, types.FunctionType) and function.__module__.startswith(
            "headless_resolver."
        ):
            atheris.instrument_func(function)


def fuzz(argv: list[str]) -> None:
    """libFuzzer's own flags, plus a corpus directory that gets the seeds; exits when done."""
    flags = [arg for arg in argv[1:] if arg.startswith("-")]
    dirs = [arg for arg in argv[1:] if not arg.startswith("-")]
    instrument()
    with tempfile.TemporaryDirectory() as scratch:
        corpus = write_seeds(Path(dirs[0] if dirs else scratch))
        atheris.Setup([argv[0], *flags, str(corpus), *dirs[1:]], check)
        atheris.Fuzz()


if __name__ == "__main__":
    fuzz(sys.argv)
