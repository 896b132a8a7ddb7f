"""Which absolute names a caller's name stands for, and which names are refused before any I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from headless_resolver import InvalidServiceName
from headless_resolver._names import ClusterNaming, ResolvConf, ServiceName, parse_nameserver

NAMING = ClusterNaming("team", "cluster.local")


def fqdns(name: str, **kwargs: object) -> list[str]:
    return [c.fqdn for c in NAMING.parse(name, **kwargs).candidates]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("web", ["web.team.svc.cluster.local."]),
        ("web.ns.svc", ["web.ns.svc.cluster.local."]),
        ("web.ns.svc.cluster.local", ["web.ns.svc.cluster.local."]),
        ("web.ns.svc.cluster.local.", ["web.ns.svc.cluster.local."]),
        ("WEB.Ns.SVC.cluster.LOCAL.", ["web.ns.svc.cluster.local."]),
        ("web-0.web.ns", ["web-0.web.ns.svc.cluster.local."]),
        ("web-0.web.ns.svc", ["web-0.web.ns.svc.cluster.local."]),
        ("web-0.web.ns.svc.cluster.local.", ["web-0.web.ns.svc.cluster.local."]),
        ("web.ns.svc.example.org.", ["web.ns.svc.example.org."]),
        ("10-0-0-1.web", ["10-0-0-1.web.team.svc.cluster.local."]),
        ("--1.web", ["--1.web.team.svc.cluster.local."]),  # pod ::1, as CoreDNS dashes it
        ("fd00--1.web.ns.svc", ["fd00--1.web.ns.svc.cluster.local."]),
    ],
)
def test_unambiguous_names_expand_to_one_absolute_name(name: str, expected: list[str]) -> None:
    assert fqdns(name) == expected


def test_two_labels_are_tried_in_search_list_order() -> None:
    # a.b: pod a of service b here (a.b.<ns>.svc.<zone>), then service a in namespace b.
    lookup = NAMING.parse("web-0.web")
    assert lookup.candidates == (
        ServiceName("web", "team", "cluster.local", pod="web-0"),
        ServiceName("web-0", "web", "cluster.local"),
    )


def test_named_port_and_srv_form_name_the_same_records() -> None:
    by_argument = NAMING.parse("web.ns.svc", port="HTTP", proto="TCP")
    by_name = NAMING.parse("_http._tcp.web.ns.svc.cluster.local.")
    assert by_argument == by_name
    assert by_name.candidates[0].srv_fqdn("http", "tcp") == "_http._tcp.web.ns.svc.cluster.local."


def test_port_on_a_two_label_name_keeps_only_the_service_reading() -> None:
    assert fqdns("web.ns", port="http") == ["web.ns.svc.cluster.local."]


@pytest.mark.parametrize("name", ["wéb", "bücher.team", "web.ns.svc.clüster.local.", "\uff57eb"])
def test_unicode_names_are_invalid_not_idna_encoded(name: str) -> None:
    # Kubernetes names are ASCII; IDNA would query a look-alike such as xn--wb-9ia.
    with pytest.raises(InvalidServiceName, match="characters other than a-z, 0-9 and '-'"):
        NAMING.parse(name)


@pytest.mark.parametrize(
    ("name", "kwargs", "says"),
    [
        ("", {}, "empty service name"),
        ("web..ns", {}, "empty label"),
        ("a" * 64, {}, "is 64 characters, the limit is 63"),
        (".".join(["a" * 60] * 5), {}, "the limit is 253"),
        ("web_1", {}, "characters other than"),
        ("web.ns;rm", {}, "characters other than"),
        ("-web", {}, "starts or ends with '-'"),
        ("--1", {}, "starts or ends with '-'"),  # a dashed IPv6 address names pods, not services
        ("web.--1", {}, "starts or ends with '-'"),
        ("--.web", {}, "starts or ends with '-'"),  # CoreDNS writes :: as --0
        ("web.\udcff", {}, "other than a-z, 0-9"),
        ("9web", {}, "must start with a letter"),
        ("web.example.com.", {}, "an absolute name must be"),
        ("a.b.c.d.e", {}, "expected <service>"),
        ("web", {"port": 0}, "not in 1..65535"),
        ("web", {"port": "no_such"}, "not a service port name"),
        ("web", {"port": True}, "not a port name or number"),
        ("web", {"port": "http", "proto": "icmp"}, "proto 'icmp'"),
        ("web-0.web.ns", {"port": "http"}, "per-pod name has no SRV"),
        ("_http._tcp.web", {"port": "grpc"}, "port='grpc' is also given"),
    ],
)
def test_bad_names_raise_invalid_service_name_saying_why(
    name: str, kwargs: dict[str, object], says: str
) -> None:
    with pytest.raises(InvalidServiceName, match=says) as caught:
        NAMING.parse(name, **kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


def test_non_string_name_is_invalid() -> None:
    with pytest.raises(InvalidServiceName, match="must be a str"):
        NAMING.parse(b"web")  # type: ignore[arg-type]


def test_is_cluster_name_covers_names_under_the_cluster_domain() -> None:
    assert NAMING.is_cluster_name("web.ns.svc.cluster.local")
    assert NAMING.is_cluster_name("Web.NS.svc.Cluster.Local.")
    assert not NAMING.is_cluster_name("example.com")
    assert not NAMING.is_cluster_name("notcluster.local")


def test_namespace_comes_from_argument_then_env_then_search_list() -> None:
    conf = ResolvConf(("10.96.0.10",), ("shop.svc.k8s.example", "svc.k8s.example", "k8s.example"))
    from_conf = ClusterNaming.from_environment(resolv_conf=conf, environ={})
    assert (from_conf.namespace, from_conf.cluster_domain) == ("shop", "k8s.example")
    from_env = ClusterNaming.from_environment(resolv_conf=conf, environ={"POD_NAMESPACE": "ops"})
    assert (from_env.namespace, from_env.cluster_domain) == ("ops", "k8s.example")
    explicit = ClusterNaming.from_environment("a", "b.c", resolv_conf=conf, environ={})
    assert (explicit.namespace, explicit.cluster_domain) == ("a", "b.c")
    bare = ClusterNaming.from_environment(resolv_conf=ResolvConf(), environ={})
    assert (bare.namespace, bare.cluster_domain) == ("default", "cluster.local")


def test_resolv_conf_is_read_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(
        "# generated\nnameserver 10.96.0.10\nnameserver fd00::10 # v6\n"
        "search web.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    )
    conf = ResolvConf.read(path)
    assert conf.nameservers == ("10.96.0.10", "fd00::10")
    assert conf.cluster_search() == ("web", "cluster.local")
    assert ResolvConf.read(path.parent / "missing") == ResolvConf()


def test_bad_namespace_argument_is_refused() -> None:
    with pytest.raises(InvalidServiceName, match="single label"):
        ClusterNaming("a.b", "cluster.local")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1", ("10.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
)
def test_nameserver_forms(value: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(value) == expected


@pytest.mark.parametrize("value", ["", "127.0.0.1:0", "127.0.0.1:x", "[::1", "[::1]x", ":53"])
def test_bad_nameservers_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="nameserver"):
        parse_nameserver(value)
