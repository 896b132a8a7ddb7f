"""The EndpointSlice source: slices read as the API defines them, configuration as kubectl
finds it, list/watch semantics against the KubernetesAPI stand-in over real sockets, and the
resolver and transport fed by it."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headless_resolver import (
    Endpoint,
    HeadlessResolver,
    HeadlessTransport,
    KubeConfig,
    KubeConfigError,
    KubernetesSource,
    ResolutionError,
    RoundRobin,
    ServiceNotFound,
)
from headless_resolver._kubernetes._client import Forbidden, Gone, KubeClient
from headless_resolver._kubernetes._slices import ParsedSlice, View, merge
from headless_resolver._kubernetes._watch import backoff_ceiling
from headless_resolver.testing import KubernetesAPI, LocalCluster, SliceEndpoint
from tests.waiting import eventually

SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"


def slice_(name: str, endpoints: list[dict[str, Any]], ports: Any = None) -> ParsedSlice:
    return ParsedSlice(
        {
            "metadata": {"name": name, "resourceVersion": "1"},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]
            if ports is None
            else ports,
        }
    )


def ep(ip: str, **conditions: bool | None) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": conditions}


def ips(endpoints: list[Endpoint]) -> set[str]:
    return {e.ip for e in endpoints}


# -- slices: conditions, merging, ports, zones (no I/O) ---------------------------------------


def test_nil_conditions_read_as_ready_serving_not_terminating() -> None:
    merged, _ = merge([slice_("a", [{"addresses": ["10.0.0.1"]}])], View("http"))
    assert merged == [Endpoint("10.0.0.1", 8080)]
    assert merged[0].terminating is False


def test_ready_endpoints_only_while_any_is_ready() -> None:
    slices = [
        slice_("a", [ep("10.0.0.1", ready=True), ep("10.0.0.2", ready=False, terminating=True)]),
        slice_("b", [ep("10.0.0.3", ready=False, serving=False)]),
    ]
    assert ips(merge(slices, View("http"))[0]) == {"10.0.0.1"}


def test_serving_terminating_endpoints_when_none_is_ready_never_not_serving() -> None:
    slices = [
        slice_(
            "a",
            [
                ep("10.0.0.1", ready=False, serving=True, terminating=True),
                ep("10.0.0.2", ready=False, serving=False, terminating=True),
                ep("10.0.0.3", ready=False, serving=True, terminating=False),  # starting up
            ],
        )
    ]
    merged, _ = merge(slices, View("http"))
    assert ips(merged) == {"10.0.0.1"}
    assert merged[0].terminating is True


def test_an_endpoint_in_two_slices_counts_once() -> None:
    slices = [slice_("a", [ep("10.0.0.1"), ep("10.0.0.2")]), slice_("b", [ep("10.0.0.2")])]
    merged, _ = merge(slices, View("http"))
    assert sorted(e.ip for e in merged) == ["10.0.0.1", "10.0.0.2"]


def test_named_port_comes_from_each_slice_and_a_missing_one_is_said() -> None:
    grpc = [{"name": "grpc", "protocol": "TCP", "port": 9090}]
    slices = [slice_("a", [ep("10.0.0.1")]), slice_("b", [ep("10.0.0.2")], ports=grpc)]
    assert merge(slices, View("http")) == ([Endpoint("10.0.0.1", 8080)], True)
    assert merge(slices, View("grpc")) == ([Endpoint("10.0.0.2", 9090)], True)
    assert merge(slices, View("http", proto="udp")) == ([], False)
    assert {e.port for e in merge(slices, View(None))[0]} == {None}
    assert {e.port for e in merge(slices, View(7000))[0]} == {7000}


def test_zone_hints_preferred_only_when_every_endpoint_has_them() -> None:
    def hinted(ip: str, zone: str) -> dict[str, Any]:
        return {**ep(ip), "zone": zone, "hints": {"forZones": [{"name": zone}]}}

    all_hinted = [slice_("a", [hinted("10.0.0.1", "a"), hinted("10.0.0.2", "b")])]
    assert ips(merge(all_hinted, View("http", zone="a"))[0]) == {"10.0.0.1"}
    assert ips(merge(all_hinted, View("http"))[0]) == {"10.0.0.1", "10.0.0.2"}
    # No endpoint hinted for the client's zone: all of them.
    assert ips(merge(all_hinted, View("http", zone="c"))[0]) == {"10.0.0.1", "10.0.0.2"}
    # One endpoint without hints (the controller is mid-update): all of them.
    partly = [slice_("a", [hinted("10.0.0.1", "a"), ep("10.0.0.2")])]
    assert ips(merge(partly, View("http", zone="a"))[0]) == {"10.0.0.1", "10.0.0.2"}
    assert merge(all_hinted, View("http", zone="a"))[0][0].zone == "a"


def test_an_address_that_is_not_an_ip_is_skipped() -> None:
    slices = [slice_("a", [ep("10.0.0.1"), ep("web.example.com"), ep("10.0.0.300")])]
    assert ips(merge(slices, View("http"))[0]) == {"10.0.0.1"}


def test_per_pod_view_matches_hostname_pod_name_or_dashed_address() -> None:
    slices = [slice_("a", [{**ep("10.0.0.1"), "hostname": "web-0"}, ep("10.0.0.2")])]
    assert ips(merge(slices, View("http", pod="web-0"))[0]) == {"10.0.0.1"}
    assert ips(merge(slices, View("http", pod="10-0-0-2"))[0]) == {"10.0.0.2"}


def test_terminating_is_a_change_of_the_set_but_not_of_the_endpoint() -> None:
    from headless_resolver import EndpointSet

    before = EndpointSet("web", [Endpoint("10.0.0.1", 80)])
    draining = Endpoint("10.0.0.1", 80, terminating=True)
    assert draining == before[0]
    assert hash(draining) == hash(before[0])
    assert not before.same_members([draining])


def test_backoff_is_short_after_one_drop_then_doubles_to_its_ceiling() -> None:
    ceilings = [backoff_ceiling(n, 0.2, 5.0) for n in range(1, 9)]
    assert ceilings == [0.05, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_an_endpoint_pickled_into_another_process_hashes_there_anew() -> None:
    endpoint = Endpoint("10.0.0.1", 80, "web-0", zone="a", terminating=True)
    check = (
        "import pickle, sys; from headless_resolver import Endpoint;"
        "e = pickle.loads(sys.stdin.buffer.read());"
        "print(e in {Endpoint('10.0.0.1', 80, 'web-0')}, e.zone, e.terminating)"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        input=pickle.dumps(endpoint),
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert done.stdout.split() == [b"True", b"a", b"True"]


# -- configuration ----------------------------------------------------------------------------


def test_in_cluster_config_rereads_a_rotated_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    (tmp_path / "namespace").write_text("shop")
    (tmp_path / "ca.crt").write_text("")
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    config = KubeConfig.in_cluster(environ, tmp_path)
    assert (config.server, config.namespace) == ("https://10.96.0.1:443", "shop")
    assert config.ca_file == str(tmp_path / "ca.crt")
    assert config.bearer() == "first"
    (tmp_path / "token").write_text("second, rotated\n")
    assert config.bearer() == "second, rotated"


def test_not_in_a_pod_without_the_service_account(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="not in a pod"):
        KubeConfig.in_cluster({}, tmp_path)


def test_kubeconfig_current_context_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "one").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: prod\n"
        "contexts:\n- name: prod\n  context: {cluster: c, user: u, namespace: shop}\n"
        "- name: dev\n  context: {cluster: d, user: u}\n"
    )
    (tmp_path / "two").write_text(
        "clusters:\n- name: c\n"
        "  cluster: {server: 'https://api:6443', certificate-authority: ca.pem}\n"
        "- name: d\n  cluster: {server: 'http://127.0.0.1:8001'}\n"
        "users:\n- name: u\n  user: {token: s3cret}\n"
    )
    paths = f"{tmp_path / 'one'}{os.pathsep}{tmp_path / 'two'}"
    config = KubeConfig.from_kubeconfig(paths)
    assert config.server == "https://api:6443"
    assert config.namespace == "shop"
    assert config.ca_file == str(tmp_path / "ca.pem")
    assert config.bearer() == "s3cret"
    dev = KubeConfig.from_kubeconfig(paths, context="dev")
    assert (dev.server, dev.namespace, dev.ssl_context()) == (
        "http://127.0.0.1:8001",
        "default",
        None,
    )
    with pytest.raises(KubeConfigError, match="no context 'qa'"):
        KubeConfig.from_kubeconfig(paths, context="qa")
    with pytest.raises(KubeConfigError, match="no current context"):
        KubeConfig.from_kubeconfig(str(tmp_path / "missing"))


# -- the stand-in's list and watch semantics, seen through the client --------------------------


@pytest.fixture
async def api() -> AsyncIterator[KubernetesAPI]:
    async with KubernetesAPI(
        bookmark_interval=0.05, tokens={"good": True, "norbac": False}
    ) as server:
        yield server


def client_for(api: KubernetesAPI, token: str = "good") -> KubeClient:
    return KubeClient(KubeConfig(api.server, token=token), timeout=5.0)


def pods(count: int, first: int = 1, **conditions: Any) -> list[SliceEndpoint]:
    return [
        SliceEndpoint(f"10.1.{n // 250}.{n % 250 + 1}", pod=f"web-{n}", **conditions)
        for n in range(first, first + count)
    ]


async def test_pages_come_from_one_snapshot_with_one_resource_version(
    api: KubernetesAPI,
) -> None:
    api.max_per_slice = 10
    api.set_endpoints("web", endpoints=pods(45))
    client = client_for(api)
    first = await client.list_slices("default", "web", limit=2)
    api.set_endpoints("web", endpoints=pods(60))  # changes between pages are not seen
    names, token, versions = (
        [s["metadata"]["name"] for s in first.items],
        first.continue_token,
        set(),
    )
    while token:
        page = await client.list_slices("default", "web", limit=2, continue_token=token)
        names += [s["metadata"]["name"] for s in page.items]
        versions.add(page.resource_version)
        token = page.continue_token
    assert len(names) == 5
    assert versions == {first.resource_version}
    api.compact()
    with pytest.raises(Gone):
        await client.list_slices("default", "web", limit=2, continue_token=first.continue_token)
    await client.aclose()


async def test_watch_resumes_from_a_version_and_bookmarks_move_it(api: KubernetesAPI) -> None:
    api.set_endpoints("web", endpoints=pods(2))
    client = client_for(api)
    listed = await client.list_slices("default", "web")
    api.set_endpoints("web", endpoints=pods(3))
    api.set_endpoints("other", endpoints=pods(1, first=9))
    seen = []
    async for event in client.watch_slices(
        "default", "web", listed.resource_version, timeout_seconds=1
    ):
        seen.append((event.type, int(event.resource_version)))
    kinds = [kind for kind, _ in seen]
    assert kinds[0] == "MODIFIED"
    assert set(kinds[1:]) == {"BOOKMARK"}
    versions = [version for _, version in seen]
    assert versions == sorted(versions)
    assert versions[-1] == api.resource_version
    await client.aclose()


async def test_a_compacted_version_gets_410_as_an_error_event(api: KubernetesAPI) -> None:
    api.set_endpoints("web", endpoints=pods(2))
    client = client_for(api)
    listed = await client.list_slices("default", "web")
    api.set_endpoints("web", endpoints=pods(3))
    api.compact()
    with pytest.raises(Gone, match="too old resource version"):
        async for _ in client.watch_slices("default", "web", listed.resource_version):
            pass
    await client.aclose()


async def test_set_endpoints_changes_only_the_slice_that_changed(api: KubernetesAPI) -> None:
    api.max_per_slice = 10
    api.set_endpoints("web", endpoints=[*pods(25), SliceEndpoint("fd00::1")])
    before = {s["metadata"]["name"]: s for s in api.slices("web")}
    assert sorted(s["addressType"] for s in before.values()) == ["IPv4"] * 3 + ["IPv6"]
    replaced = [*pods(25)]
    replaced[12] = SliceEndpoint("10.9.9.9", pod="new")  # one endpoint of the second slice
    version = api.resource_version
    api.set_endpoints("web", endpoints=[*replaced, SliceEndpoint("fd00::1")])
    after = {s["metadata"]["name"]: s for s in api.slices("web")}
    changed = [
        n
        for n in after
        if after[n]["metadata"]["resourceVersion"] != before[n]["metadata"]["resourceVersion"]
    ]
    assert len(changed) == 1
    assert after[changed[0]]["metadata"]["resourceVersion"] == str(version + 1)
    assert "10.9.9.9" in [e["addresses"][0] for e in after[changed[0]]["endpoints"]]


async def test_no_token_is_401_and_a_token_without_rbac_is_403(api: KubernetesAPI) -> None:
    for token, status in (("", 401), ("wrong", 401), ("norbac", 403)):
        client = client_for(api, token)
        with pytest.raises(Forbidden) as caught:
            await client.list_slices("default", "web")
        assert caught.value.status == status
        await client.aclose()


# -- real clients nobody here wrote --------------------------------------------------------------


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_kubectl_lists_and_watches_the_stand_in(tmp_path: Path) -> None:
    async with KubernetesAPI(tls=True, bookmark_interval=0.2) as server:  # tokens only over TLS
        server.set_endpoints("web", endpoints=pods(3))
        env = {**os.environ, "KUBECONFIG": str(server.kubeconfig(tmp_path / "config"))}
        listed = await asyncio.to_thread(
            subprocess.run,
            ["kubectl", "get", "endpointslices", "-o", "json"],
            env=env,
            capture_output=True,
            check=True,
        )
        document = json.loads(listed.stdout)
        assert [item["endpoints"] for item in document["items"]] == [
            s["endpoints"] for s in server.slices()
        ]
        watcher = await asyncio.create_subprocess_exec(
            "kubectl", "get", "endpointslices", "--watch", "-o", "json",
            "-l", "kubernetes.io/service-name=web",
            env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert watcher.stdout is not None
        first = json.loads(await asyncio.wait_for(watcher.stdout.readuntil(b"\n}\n"), 20))
        server.set_endpoints("web", endpoints=pods(1))
        changed = json.loads(await asyncio.wait_for(watcher.stdout.readuntil(b"\n}\n"), 20))
        watcher.terminate()
        await watcher.wait()
        assert len(first["endpoints"]) == 3
        assert [e["addresses"] for e in changed["endpoints"]] == [["10.1.0.2"]]
        assert int(changed["metadata"]["resourceVersion"]) > int(
            first["metadata"]["resourceVersion"]
        )
        server.tokens = {"norbac": False}
        denied = await asyncio.to_thread(
            subprocess.run,
            ["kubectl", "get", "endpointslices", "--token", "norbac"],
            env=env,
            capture_output=True,
        )
        assert denied.returncode != 0
        assert b"Forbidden" in denied.stderr


# -- the resolver fed by the API ---------------------------------------------------------------


@pytest.fixture
async def kube_cluster() -> AsyncIterator[LocalCluster]:
    async with LocalCluster(kubernetes=True) as cluster:
        assert cluster.api is not None
        cluster.api.bookmark_interval = 0.1
        yield cluster


def source_for(cluster: LocalCluster, tmp_path: Path, **options: Any) -> KubernetesSource:
    config = KubeConfig.from_kubeconfig(str(cluster.kubeconfig(tmp_path / "config")))
    return KubernetesSource(config, backoff=(0.05, 0.2), **options)


async def test_resolve_and_watch_follow_the_slices(
    kube_cluster: LocalCluster, tmp_path: Path
) -> None:
    await kube_cluster.add_service("web", pods=3, port=0)
    source = source_for(kube_cluster, tmp_path)
    async with HeadlessResolver(kube_cluster.nameserver, source=source) as resolver:
        found = await resolver.resolve("web", port="http")
        assert resolver.source_kind == "kubernetes"
        assert {(e.ip, e.port, e.hostname) for e in found} == {
            (p.ip, p.port, p.hostname) for p in kube_cluster.pods("web")
        }
        updates = resolver.watch("web", port="http")
        assert len(await anext(updates)) == 3
        await kube_cluster.scale("web", 5)
        assert len(await asyncio.wait_for(anext(updates), 5)) == 5
        assert len(await resolver.resolve("web", port="http")) == 5
        await updates.aclose()
        with pytest.raises(ServiceNotFound, match="no port named 'grpc'"):
            await resolver.resolve("web", port="grpc")
    await source.aclose()


async def test_a_terminating_pod_gets_no_request_after_the_event(
    kube_cluster: LocalCluster, tmp_path: Path
) -> None:
    await kube_cluster.add_service("web", pods=3, port=0)
    leaving = kube_cluster.pods("web")[2]
    source = source_for(kube_cluster, tmp_path)
    resolver = HeadlessResolver(kube_cluster.nameserver, source=source)
    transport = HeadlessTransport(resolver, RoundRobin())
    async with resolver, httpx.AsyncClient(transport=transport) as client:
        for _ in range(6):
            (
                await client.get(f"http://web.default.svc.cluster.local:{leaving.port}/")
            ).raise_for_status()
        assert leaving.requests > 0
        scaling = asyncio.create_task(kube_cluster.scale("web", 2, grace=1.0))
        await eventually(lambda: len(resolver.peek("web.default.svc.cluster.local") or ()) == 2)
        served = leaving.requests
        for _ in range(20):
            (
                await client.get(f"http://web.default.svc.cluster.local:{leaving.port}/")
            ).raise_for_status()
        assert leaving.requests == served
        await scaling
    await source.aclose()


async def test_410_dropped_watches_and_an_outage_keep_the_set_right(
    kube_cluster: LocalCluster, tmp_path: Path
) -> None:
    await kube_cluster.add_service("web", pods=3, port=0)
    api = kube_cluster.api
    assert api is not None
    source = source_for(kube_cluster, tmp_path)
    # max_ttl=1: the resolver re-reads the source every second, which must not make a set
    # that the API can no longer vouch for look fresh.
    async with HeadlessResolver(kube_cluster.nameserver, source=source, max_ttl=1.0) as resolver:
        await resolver.resolve("web")
        watch = source.watches["default", "web"]

        def matches_the_api() -> bool:
            served = resolver.peek("web.default.svc.cluster.local")
            return (
                served is not None
                and not served.stale
                and {e.ip for e in served}
                == {e["addresses"][0] for s in api.slices("web") for e in s["endpoints"]}
            )

        def served_stale() -> bool:
            served = resolver.peek("web.default.svc.cluster.local")
            return served is not None and served.stale

        # A dropped connection: resumed from the last version, no list.
        api.drop_watches()
        await kube_cluster.scale("web", 4)
        await eventually(matches_the_api)
        assert watch.stats.lists == 1
        # Dropped while the history moves past the client's version: 410, re-list.
        await api.stop()
        await kube_cluster.scale("web", 2)
        api.compact()
        await api.start()
        await eventually(lambda: watch.stats.gone >= 1 and matches_the_api())
        assert watch.stats.lists == 2
        # An outage: the last good set is served stale, then replaced when the API is back.
        await api.stop()
        await eventually(served_stale)
        await asyncio.sleep(2.5)
        assert served_stale()
        assert len(await resolver.resolve("web")) == 2
        await kube_cluster.scale("web", 3)
        await api.start()
        await eventually(matches_the_api)
    await source.aclose()


async def test_paging_and_many_slices_reach_resolve(api: KubernetesAPI, tmp_path: Path) -> None:
    api.max_per_slice = 7
    api.set_endpoints("web", endpoints=pods(100))
    config = KubeConfig.from_kubeconfig(str(api.kubeconfig(tmp_path / "config", token="good")))
    source = KubernetesSource(config, page_limit=3)
    async with HeadlessResolver("127.0.0.1:9", source=source) as resolver:
        assert len(await resolver.resolve("web", port="http")) == 100
        assert source.watches["default", "web"].stats.pages == 5  # 15 slices, 3 a page
    await source.aclose()


async def test_kubernetes_without_rbac_fails_and_auto_falls_back_to_dns(
    kube_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await kube_cluster.add_service("web", pods=2, port=0)
    api = kube_cluster.api
    assert api is not None
    assert api.tokens is not None
    api.tokens["norbac"] = False
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "config", token="norbac")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    async with HeadlessResolver(kube_cluster.nameserver, source="kubernetes") as resolver:
        with pytest.raises(ResolutionError, match="403"):
            await resolver.resolve("web")
    async with HeadlessResolver(kube_cluster.nameserver, source="auto") as resolver:
        assert len(await resolver.resolve("web")) == 2
        assert resolver.source_kind == "dns"
    api.kubeconfig(tmp_path / "config", token=api.token)
    async with HeadlessResolver(kube_cluster.nameserver, source="auto") as resolver:
        assert len(await resolver.resolve("web")) == 2
        assert resolver.source_kind == "kubernetes"


# -- command line -------------------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    command = Path(sys.executable).with_name("headless-resolver")
    process = await asyncio.create_subprocess_exec(
        str(command),
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=25)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_cli_resolve_with_the_api_source_says_so(
    kube_cluster: LocalCluster, tmp_path: Path
) -> None:
    await kube_cluster.add_service("web", pods=3, port=0)
    env = {"KUBECONFIG": str(kube_cluster.kubeconfig(tmp_path / "config"))}
    env["HEADLESS_NAMESERVER"] = kube_cluster.nameserver
    code, out, err = await run_cli(
        "resolve", "web", "--port", "http", "--source", "kubernetes", "--json", env=env
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["source"] == "kubernetes"
    assert {(e["ip"], e["hostname"], e["terminating"]) for e in document["endpoints"]} == {
        (p.ip, p.hostname, False) for p in kube_cluster.pods("web")
    }
    assert kube_cluster.api is not None
    kube_cluster.api.tokens = {"norbac": False}
    env["KUBECONFIG"] = str(kube_cluster.api.kubeconfig(tmp_path / "config", token="norbac"))
    code, out, err = await run_cli("resolve", "web", "--source", "auto", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["source"] == "dns"
    assert "source: DNS, the Kubernetes API is not usable: HTTP 403" in err


async def test_cli_watch_with_the_api_source_prints_a_scale_up(
    kube_cluster: LocalCluster, tmp_path: Path
) -> None:
    await kube_cluster.add_service("web", pods=2, port=0)
    env = {"KUBECONFIG": str(kube_cluster.kubeconfig(tmp_path / "config"))}
    command = Path(sys.executable).with_name("headless-resolver")
    process = await asyncio.create_subprocess_exec(
        str(command), "watch", "web", "--source", "kubernetes", "--json",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        first = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
        await kube_cluster.scale("web", 3)
        second = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
    finally:
        process.terminate()
        await process.wait()
    assert len(first["endpoints"]) == 2
    assert [e["ip"] for e in second["added"]] == [kube_cluster.pods("web")[2].ip]


async def test_in_cluster_client_follows_a_rotated_token_over_tls(tmp_path: Path) -> None:
    async with KubernetesAPI(tls=True, tokens={"first": True}) as server:
        server.set_endpoints("web", endpoints=pods(2))
        assert server.ca_cert is not None
        (tmp_path / "ca.crt").write_bytes(server.ca_cert.read_bytes())
        (tmp_path / "namespace").write_text("default")
        (tmp_path / "token").write_text("first")
        environ = {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(server.port),
        }
        client = KubeClient(KubeConfig.in_cluster(environ, tmp_path))
        assert len((await client.list_slices("default", "web")).items) == 1
        server.tokens = {"second": True}  # the old token is revoked...
        with pytest.raises(Forbidden):
            await client.list_slices("default", "web")
        (tmp_path / "token").write_text("second")  # ...and kubelet writes the new one
        assert len((await client.list_slices("default", "web")).items) == 1
        await client.aclose()


async def test_kubernetes_asyncio_watch_helper_against_the_stand_in(tmp_path: Path) -> None:
    """Another client's list and Watch helper read the stand-in as they read an API server,
    and show why this library does not use it: on 410 it re-watches once from the same
    refused version, then raises, leaving the re-list to its caller."""
    kubernetes_asyncio = pytest.importorskip("kubernetes_asyncio")
    from kubernetes_asyncio.client.rest import ApiException

    async with KubernetesAPI(bookmark_interval=0.1, watch_timeout=1.0) as server:
        server.set_endpoints("web", endpoints=pods(2))
        config = kubernetes_asyncio.client.Configuration()
        await kubernetes_asyncio.config.load_kube_config(
            config_file=str(server.kubeconfig(tmp_path / "config")), client_configuration=config
        )
        async with kubernetes_asyncio.client.ApiClient(config) as client:
            api = kubernetes_asyncio.client.DiscoveryV1Api(client)
            selector = "kubernetes.io/service-name=web"
            listed = await api.list_namespaced_endpoint_slice(
                "default", label_selector=selector, limit=1
            )
            assert [len(item.endpoints) for item in listed.items] == [2]
            server.set_endpoints("web", endpoints=pods(3))
            since = listed.metadata.resource_version

            async def watch(**options: Any) -> list[str]:
                seen: list[str] = []
                stream = kubernetes_asyncio.watch.Watch().stream(
                    api.list_namespaced_endpoint_slice,
                    "default",
                    label_selector=selector,
                    resource_version=since,
                    **options,
                )
                async for event in stream:
                    seen.append(event["type"])
                    if not options.get("allow_watch_bookmarks"):
                        # History moves past the version the watch holds.
                        server.set_endpoints("other", endpoints=pods(1, first=50))
                        server.compact()
                return seen

            seen = await watch(allow_watch_bookmarks=True, timeout_seconds=1)
            assert seen[0] == "MODIFIED"
            assert set(seen[1:]) == {"BOOKMARK"}
            with pytest.raises(ApiException) as gone:
                await watch()  # watches forever, resuming when the stream ends
            assert gone.value.status == 410
            watches = [query for _, query in server.requests if "watch=" in query]
            versions = [q.split("resourceVersion=")[1].split("&")[0] for q in watches]
            assert versions[2] == versions[3]  # the refused version, asked for again
