"""Hostile names: anything that is not a service name fails with InvalidServiceName before a
packet leaves, and whatever does reach the wire is a well-formed name under ``svc``."""

from __future__ import annotations

import asyncio
import re

import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headless_resolver import HeadlessResolver, InvalidServiceName, ServiceNotFound
from tests.servers.hostile import HostileDns, Reply

_LDH = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SRV_LABEL = re.compile(r"_[a-z0-9][-a-z0-9]{0,14}")


def nxdomain(query: dns.message.Message, over_tcp: bool) -> Reply:
    answer = dns.message.make_response(query)
    answer.set_rcode(dns.rcode.NXDOMAIN)
    return Reply((answer.to_wire(),))


def well_formed_query_name(name: str) -> bool:
    """Absolute, at most 255 octets, letters-digits-hyphens labels, the service under ``svc``;
    only the two leading labels of an SRV name may start with ``_``."""
    if not name.endswith(".") or len(name) > 255:
        return False
    labels = name[:-1].split(".")
    while labels and _SRV_LABEL.fullmatch(labels[0]):
        labels = labels[1:]
    return "svc" in labels[2:4] and all(_LDH.fullmatch(label) for label in labels)


HOSTILE_PIECES = st.sampled_from(
    [
        "",
        ".",
        "..",
        "-",
        "_",
        "_http",
        "_tcp",
        "svc",
        "cluster.local",
        "web",
        "default",
        "a" * 63,
        "a" * 64,
        "\x00",
        " ",
        "\n",
        "%2e",
        "/",
        "\\",
        "@",
        ":",
        "*",
        "xn--",
        "xn--zz",
        "bücher",
        "WEB",
        "\u0130",
        "\ufb00",
        "\u200b",
        "\u3002",
        "\u212fxample",
    ]
)
HOSTILE_NAMES = st.one_of(
    st.text(max_size=300),
    st.lists(HOSTILE_PIECES, max_size=12).map("".join),
    st.lists(st.one_of(HOSTILE_PIECES, st.text(max_size=5)), max_size=8).map(".".join),
    st.integers(1, 300).map(lambda n: ".".join(["a"] * n)),
    st.integers(200, 400).map(lambda n: "a" * n),
)


def test_hostile_names_fail_before_any_packet_leaves(runner: asyncio.Runner) -> None:
    server = runner.run(HostileDns(nxdomain).start())
    resolver = HeadlessResolver(
        [server.nameserver], namespace="default", cluster_domain="cluster.local", attempts=1
    )
    outcomes = {"invalid": 0, "queried": 0}

    @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(HOSTILE_NAMES, st.one_of(st.none(), st.text(max_size=20), st.integers()))
    def example(name: str, port: str | int | None) -> None:
        async def attempt() -> None:
            before = server.packets_received
            sent = len(server.queries)
            try:
                await resolver.resolve(name, port=port)
            except InvalidServiceName:
                outcomes["invalid"] += 1
                assert server.packets_received == before, name
                with pytest.raises(InvalidServiceName):
                    resolver.peek(name, port=port)
                return
            except ServiceNotFound:
                pass
            outcomes["queried"] += 1
            for query in server.queries[sent:]:
                assert well_formed_query_name(query.name), (name, query)

        runner.run(attempt())

    try:
        example()
    finally:
        runner.run(resolver.aclose())
        runner.run(server.aclose())
    assert outcomes["invalid"] > 1000, outcomes
    assert outcomes["queried"] > 0, outcomes
