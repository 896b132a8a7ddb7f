"""Metrics, stats snapshots and logs, read through the real OpenTelemetry SDK.

Every test talks to a real cluster DNS and real pods; the SDK's ``InMemoryMetricReader``
collects exactly what an exporter would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from headless_resolver import (
    HeadlessResolver,
    HeadlessTransport,
    LeastLatency,
    PassiveHealth,
    RoundRobin,
    ServiceNotFound,
    SlowStart,
    SyncHeadlessTransport,
)
from headless_resolver._logs import RateLimitedLog
from headless_resolver._metrics import INSTRUMENTS
from headless_resolver.testing import LocalCluster
from tests.clocks import FakeClock
from tests.test_sync_transport import ClusterThread
from tests.waiting import eventually

WEB = "web.default.svc.cluster.local"
URL = f"http://{WEB}:8080/"
PREFIX = "headless_resolver"

Attributes = dict[str, Any]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


@pytest.fixture
async def resolver(
    cluster: LocalCluster, clock: FakeClock, provider: MeterProvider
) -> AsyncIterator[HeadlessResolver]:
    async with HeadlessResolver(
        [cluster.nameserver], clock=clock, meter_provider=provider, failure_backoff=0.05
    ) as resolver:
        yield resolver


def collect(reader: InMemoryMetricReader) -> dict[str, list[tuple[Attributes, Any]]]:
    """metric name -> [(attributes, value)], a histogram's value being its data point."""
    found: dict[str, list[tuple[Attributes, Any]]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = found.setdefault(metric.name, [])
                for point in metric.data.data_points:
                    value = getattr(point, "value", point)
                    points.append((dict(point.attributes or {}), value))
    return found


def by_pod(points: list[tuple[Attributes, Any]], outcome: str | None = None) -> dict[str, Any]:
    """Values keyed by pod address (of one ``outcome`` only, if given)."""
    return {
        attrs["network.peer.address"]: value
        for attrs, value in points
        if outcome is None or attrs[f"{PREFIX}.outcome"] == outcome
    }


def client(transport: HeadlessTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, trust_env=False, timeout=5.0)


# -- transport ------------------------------------------------------------------------------


async def test_per_pod_request_counts_sum_to_n_and_match_what_the_pods_saw(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    pods = await cluster.add_service("web", pods=3, port=8080)
    transport = HeadlessTransport(resolver, RoundRobin(), meter_provider=provider)
    async with client(transport) as http:
        for _ in range(30):
            assert (await http.get(URL)).status_code == 200
        metrics = collect(reader)

    requests = by_pod(metrics[f"{PREFIX}.endpoint.requests"])
    assert requests == {pod.ip: pod.requests for pod in pods}
    assert sum(requests.values()) == 30
    assert by_pod(metrics[f"{PREFIX}.endpoint.outcomes"], outcome="ok") == {
        pod.ip: pod.requests for pod in pods
    }
    assert set(by_pod(metrics[f"{PREFIX}.endpoint.in_flight"]).values()) == {0}
    ((attrs, histogram),) = metrics["http.client.request.duration"]
    assert attrs == {
        "server.address": WEB,
        "server.port": 8080,
        "http.request.method": "GET",
        "http.response.status_code": 200,
    }
    assert histogram.count == 30
    stats = transport.stats()[WEB]
    assert (stats.requests, stats.outcomes, stats.in_flight) == (30, {"ok": 30}, 0)
    assert {p.endpoint.ip: p.requests for p in stats.pods} == requests
    assert all(p.mean_latency_s is not None and p.mean_latency_s > 0 for p in stats.pods)


async def test_a_refusing_pod_shows_an_ejection_with_its_reason_then_its_readmission(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pods = await cluster.add_service("web", pods=3, port=8080)
    health_clock = FakeClock()
    health = PassiveHealth(base_ejection=30.0, clock=health_clock)
    transport = HeadlessTransport(resolver, RoundRobin(health=health), meter_provider=provider)
    pods[1].refuse = True
    with caplog.at_level(logging.DEBUG, logger="headless_resolver"):
        async with client(transport) as http:
            for _ in range(9):
                assert (await http.get(URL)).status_code == 200  # retried on another pod
            metrics = collect(reader)
            served = {pod.ip: pod.requests for pod in pods}
            pods[1].refuse = False
            health_clock.advance(31)
            for _ in range(3):
                await http.get(URL)
            after = collect(reader)

    refused = pods[1].ip
    assert by_pod(metrics[f"{PREFIX}.endpoint.ejections"]) == {refused: 1}
    ((attrs, _),) = metrics[f"{PREFIX}.endpoint.ejections"]
    assert attrs[f"{PREFIX}.reason"] == "connect_failures"
    assert by_pod(metrics[f"{PREFIX}.endpoint.ejected"]) == {
        pods[0].ip: 0,
        refused: 1,
        pods[2].ip: 0,
    }
    outcomes = by_pod(metrics[f"{PREFIX}.endpoint.outcomes"], outcome="ok")
    assert outcomes == {pods[0].ip: served[pods[0].ip], pods[2].ip: served[pods[2].ip]}
    failed = by_pod(metrics[f"{PREFIX}.endpoint.outcomes"], outcome="connect_failure")
    assert failed == {refused: 1}
    assert [v for _, v in metrics[f"{PREFIX}.retries"]] == [1]
    errors = [a for a, _ in metrics["http.client.request.duration"] if "error.type" in a]
    assert errors == [
        {
            "server.address": WEB,
            "server.port": 8080,
            "http.request.method": "GET",
            "error.type": "ConnectError",
        }
    ]

    readmitted = metrics_of(after, "endpoint.readmissions")
    assert readmitted == [({"reason": "ejection_expired", "pod": refused}, 1)]
    assert by_pod(after[f"{PREFIX}.endpoint.ejected"])[refused] == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "headless_resolver.health"]
    assert [m.split(":")[1].split()[0] for m in messages] == ["ejected", "readmitted"]
    assert "connect failures" in messages[0]
    attempts = [r.getMessage() for r in caplog.records if r.name == "headless_resolver.transport"]
    assert attempts == [
        f"{WEB}: attempt on {refused}:8080: connect failure after"
        f" {attempts[0].split(' after ')[1].split()[0]} ms (ConnectError)"
    ]


def metrics_of(
    metrics: dict[str, list[tuple[Attributes, Any]]], name: str
) -> list[tuple[dict[str, Any], Any]]:
    """The reason and pod of each point of ``name``, for short comparisons."""
    return [
        ({"reason": a[f"{PREFIX}.reason"], "pod": a["network.peer.address"]}, v)
        for a, v in metrics.get(f"{PREFIX}.{name}", [])
    ]


async def test_a_pod_removed_from_dns_is_gone_from_the_next_collection(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    clock: FakeClock,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    pods = await cluster.add_service("web", pods=3, port=8080)
    transport = HeadlessTransport(resolver, RoundRobin(), meter_provider=provider)
    async with client(transport) as http:
        for _ in range(6):
            await http.get(URL)
        before = collect(reader)
        await cluster.scale("web", 2)
        clock.advance(5)
        await resolver.resolve(WEB)
        await eventually(lambda: len(resolver.peek(WEB) or ()) == 2)
        for _ in range(4):
            assert (await http.get(URL)).status_code == 200
        after = collect(reader)

    gone = pods[2].ip
    assert gone in by_pod(before[f"{PREFIX}.endpoint.requests"])
    for name in ("requests", "outcomes", "in_flight", "request_time", "ejected"):
        assert gone not in by_pod(after[f"{PREFIX}.endpoint.{name}"]), name
    assert by_pod(after[f"{PREFIX}.endpoint.requests"]) == {
        pods[0].ip: pods[0].requests,
        pods[1].ip: pods[1].requests,
    }
    service = transport.stats()[WEB]
    assert service.requests == 10  # the departed pod's requests stay in the service's total
    assert [p.endpoint.ip for p in service.pods if p.endpoint.ip == gone] == []

    named = {f"{PREFIX}.name": WEB}
    assert after[f"{PREFIX}.endpoints"] == [(named, 2)]
    changes = {a[f"{PREFIX}.change"]: v for a, v in after[f"{PREFIX}.endpoint_changes"]}
    assert changes == {"added": 0, "removed": 1}
    stats = resolver.name_stats("web")
    assert stats is not None
    assert [(c.added, [e.ip for e in c.removed]) for c in stats.recent_changes] == [((), [gone])]
    assert sorted(e.ip for e in stats.joined) == sorted(p.ip for p in pods[:2])


async def test_per_pod_attributes_off_leaves_only_per_service_series(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    pods = await cluster.add_service("web", pods=3, port=8080)
    pods[0].refuse = True
    transport = HeadlessTransport(
        resolver, LeastLatency(), meter_provider=provider, per_pod_metrics=False
    )
    async with client(transport) as http:
        for _ in range(12):
            await http.get(URL)
        metrics = collect(reader)

    pod_keys = {"network.peer.address", "network.peer.port", f"{PREFIX}.pod"}
    for name, points in metrics.items():
        for attrs, _ in points:
            assert not pod_keys & attrs.keys(), name
    service = {"server.address": WEB, "server.port": 8080, f"{PREFIX}.strategy": "LeastLatency"}
    assert metrics[f"{PREFIX}.endpoint.requests"] == [(service, 13)]
    assert metrics[f"{PREFIX}.endpoint.ejected"] == [(service, 1)]
    assert f"{PREFIX}.endpoint.latency_estimate" not in metrics
    outcomes = {a[f"{PREFIX}.outcome"]: v for a, v in metrics[f"{PREFIX}.endpoint.outcomes"]}
    assert outcomes == {"ok": 12, "connect_failure": 1}
    assert len(transport.stats()[WEB].pods) == 3  # the snapshot still lists the pods


async def test_a_timeout_is_its_own_outcome_retried_on_another_pod(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    pods = await cluster.add_service("web", pods=3, port=8080)
    pods[0].latency = 2.0
    transport = HeadlessTransport(resolver, RoundRobin(), meter_provider=provider)
    async with httpx.AsyncClient(
        transport=transport, trust_env=False, timeout=httpx.Timeout(5.0, read=0.2)
    ) as http:
        for _ in range(3):
            assert (await http.get(URL)).status_code == 200
        metrics = collect(reader)

    points = metrics[f"{PREFIX}.endpoint.outcomes"]
    timeouts = pods[0].requests  # each one it got, it answered too late
    assert timeouts >= 1
    assert by_pod(points, outcome="timeout") == {pods[0].ip: timeouts}
    assert by_pod(points, outcome="ok") == {
        pods[1].ip: pods[1].requests,
        pods[2].ip: pods[2].requests,
    }
    assert pods[1].requests + pods[2].requests == 3
    assert [v for _, v in metrics[f"{PREFIX}.retries"]] == [timeouts]
    assert f"{PREFIX}.endpoint.ejections" not in metrics  # not five timeouts in a row
    timed_out = [p for a, p in metrics["http.client.request.duration"] if "error.type" in a]
    assert [(p.attributes["error.type"], p.count) for p in timed_out] == [("ReadTimeout", timeouts)]
    assert timed_out[0].sum >= 0.2 * timeouts


async def test_the_clients_own_cancellation_is_counted_against_no_pod(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    (pod,) = await cluster.add_service("web", pods=1, port=8080)
    transport = HeadlessTransport(resolver, RoundRobin(), meter_provider=provider)
    async with client(transport) as http:
        assert (await http.get(URL)).status_code == 200
        pod.latency = 2.0
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await http.get(URL)
        metrics = collect(reader)

    outcomes = {a[f"{PREFIX}.outcome"]: v for a, v in metrics[f"{PREFIX}.endpoint.outcomes"]}
    assert outcomes == {"ok": 1, "client": 1}
    assert by_pod(metrics[f"{PREFIX}.endpoint.in_flight"]) == {pod.ip: 0}
    ((_, histogram),) = metrics["http.client.request.duration"]  # the cancelled one is not in
    assert histogram.count == 1
    assert transport.stats()[WEB].pods[0].ejections == {}


async def test_a_body_cut_short_is_the_outcome_the_caller_saw(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    pods = await cluster.add_service("web", pods=2, port=8080)
    for pod in pods:
        pod.reset = True  # half a response, then the connection is reset
    transport = HeadlessTransport(resolver, RoundRobin(), meter_provider=provider, retries=0)
    seen: list[int] = []

    async def read(http: httpx.AsyncClient) -> None:
        async with http.stream("GET", URL) as response:
            seen.append(response.status_code)
            await response.aread()

    async with client(transport) as http:
        with pytest.raises(httpx.TransportError) as failure:
            await read(http)
        metrics = collect(reader)

    headers_arrived = seen == [200]

    outcome = "body_cut_short" if headers_arrived else "connect_failure"
    outcomes = {a[f"{PREFIX}.outcome"]: v for a, v in metrics[f"{PREFIX}.endpoint.outcomes"]}
    assert outcomes == {outcome: 1}, failure.value
    ((attrs, _),) = metrics[f"{PREFIX}.endpoint.ejections"]
    assert attrs[f"{PREFIX}.reason"] == "connect_failures"
    ((attrs, _),) = metrics["http.client.request.duration"]
    assert attrs["error.type"] == type(failure.value).__name__
    assert ("http.response.status_code" in attrs) == headers_arrived


async def test_least_latency_reports_its_estimate_per_pod(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    pods = await cluster.add_service("web", pods=2, port=8080)
    pods[1].latency = 0.05
    transport = HeadlessTransport(resolver, LeastLatency(), meter_provider=provider)
    async with client(transport) as http:
        for _ in range(10):
            await http.get(URL)
        estimates = by_pod(collect(reader)[f"{PREFIX}.endpoint.latency_estimate"])
    assert estimates.keys() == {pod.ip for pod in pods}
    assert estimates[pods[1].ip] >= 0.05 > estimates[pods[0].ip]


async def test_a_pod_in_slow_start_is_reported_until_its_window_ends(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    clock: FakeClock,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    pods = await cluster.add_service("web", pods=2, port=8080)
    # A full share from the start (min_weight_percent=100): the ramp is not what is tested.
    ramp = SlowStart(window=30.0, min_weight_percent=100.0)
    transport = HeadlessTransport(
        resolver, RoundRobin(slow_start=ramp, clock=clock), meter_provider=provider
    )
    async with client(transport) as http:
        for _ in range(4):
            await http.get(URL)
        newcomer = (await cluster.scale("web", 3))[2]
        clock.advance(10)  # the DNS answer expires: the next requests see three pods
        await resolver.resolve(WEB)
        for _ in range(6):
            await http.get(URL)
        assert newcomer.requests > 0
        warming = by_pod(collect(reader)[f"{PREFIX}.endpoint.slow_start"])
        assert warming == {pods[0].ip: 0, pods[1].ip: 0, newcomer.ip: 1}
        clock.advance(30)
        warming = by_pod(collect(reader)[f"{PREFIX}.endpoint.slow_start"])
        assert warming[newcomer.ip] == 0


# -- resolver -------------------------------------------------------------------------------


async def test_a_dns_outage_shows_failures_and_stale_answers_served_logged_once(
    cluster: LocalCluster,
    resolver: HeadlessResolver,
    clock: FakeClock,
    reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await cluster.add_service("web", pods=3, port=8080)
    first = await resolver.resolve("web")
    cluster.dns.servfail = True
    with caplog.at_level(logging.WARNING, logger="headless_resolver.resolver"):
        for _ in range(3):
            clock.advance(5)
            assert (await resolver.resolve("web")).stale
            await eventually(lambda: resolver.stats.errors > 0)
    metrics = collect(reader)

    name = {f"{PREFIX}.name": WEB}
    failures = {a["error.type"]: v for a, v in metrics[f"{PREFIX}.dns.failures"]}
    assert failures == {"SERVFAIL": resolver.stats.errors}  # every failed lookup of the name
    assert metrics[f"{PREFIX}.stale_served"] == [(name, 3)]
    assert metrics[f"{PREFIX}.endpoints"] == [(name, 3)]
    ((attrs, age),) = metrics[f"{PREFIX}.dns.since_last_answer"]
    assert (attrs, age) == (name, 15.0)
    refreshes = metrics[f"{PREFIX}.dns.refresh.duration"]
    assert {a.get("error.type") for a, _ in refreshes} == {None, "SERVFAIL"}
    stats = resolver.name_stats("web")
    assert stats is not None
    assert (stats.stale, stats.stale_served, stats.since_last_answer) == (True, 3, 15.0)
    assert stats.queries == sum(v for _, v in metrics[f"{PREFIX}.dns.queries"])
    assert stats.version == first.version
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "serving the last good set (3 endpoints)" in warnings[0].getMessage()


async def test_negative_answers_are_counted_per_name(
    cluster: LocalCluster, resolver: HeadlessResolver, reader: InMemoryMetricReader
) -> None:
    await cluster.add_service("web", pods=1, port=8080)
    await cluster.remove_service("web")
    with pytest.raises(ServiceNotFound, match="NXDOMAIN"):
        await resolver.resolve(WEB)
    metrics = collect(reader)
    assert metrics[f"{PREFIX}.dns.negative_answers"] == [({f"{PREFIX}.name": WEB}, 1)]
    assert metrics[f"{PREFIX}.dns.queries"] == [({f"{PREFIX}.name": WEB}, 2)]  # A and AAAA


async def test_two_resolvers_on_one_provider_report_side_by_side(
    cluster: LocalCluster, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    await cluster.add_service("web", pods=2, port=8080)
    await cluster.add_service("api", pods=1, port=8080)
    async with (
        HeadlessResolver([cluster.nameserver], meter_provider=provider) as one,
        HeadlessResolver([cluster.nameserver], meter_provider=provider) as two,
    ):
        await one.resolve("web")
        await two.resolve("api")
        sizes = collect(reader)[f"{PREFIX}.endpoints"]
    assert sorted((a[f"{PREFIX}.name"], v) for a, v in sizes) == [
        ("api.default.svc.cluster.local", 1),
        (WEB, 2),
    ]


async def test_an_evicted_name_leaves_the_next_collection(
    cluster: LocalCluster, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    await cluster.add_service("web", pods=2, port=8080)
    await cluster.add_service("api", pods=1, port=8080)
    async with HeadlessResolver(
        [cluster.nameserver], meter_provider=provider, max_entries=1
    ) as resolver:
        await resolver.resolve("web")
        await resolver.resolve("api")
        sizes = collect(reader)[f"{PREFIX}.endpoints"]
    assert [a[f"{PREFIX}.name"] for a, _ in sizes] == ["api.default.svc.cluster.local"]


# -- logs -----------------------------------------------------------------------------------


def test_a_rate_limited_warning_repeats_once_per_interval_and_counts_what_it_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    log = RateLimitedLog(logging.getLogger("headless_resolver.resolver"), interval=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="headless_resolver"):
        assert log.warning("web", "%s: down", "web")
        for _ in range(5):
            clock.advance(10)
            assert not log.warning("web", "%s: down", "web")
        assert log.warning("api", "%s: down", "api")  # another key is not held back
        clock.advance(10)
        assert log.warning("web", "%s: down", "web")
        log.forget("web")
        assert log.warning("web", "%s: down", "web")
    assert [r.getMessage() for r in caplog.records] == [
        "web: down",
        "api: down",
        "web: down (5 similar lines held back in the last 60 s)",
        "web: down",
    ]


# -- README ---------------------------------------------------------------------------------


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readme_table_lists_every_instrument_as_it_is() -> None:
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in readme_section("Metrics").splitlines()
        if line.startswith("| `")
    ]
    assert [
        (name.strip("`"), kind, unit.strip("`"), attributes.replace("`", ""))
        for name, kind, unit, attributes, _ in rows
    ] == [(i.name, i.kind, i.unit, ", ".join(i.attributes)) for i in INSTRUMENTS]


async def test_the_readme_prometheus_example_exports_the_metrics(cluster: LocalCluster) -> None:
    await cluster.add_service("web", pods=2, port=8080)
    (example,) = re.findall(r"```python\n(.*?)```", readme_section("Metrics"), flags=re.DOTALL)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    resolver = f"HeadlessResolver([{cluster.nameserver!r}], meter_provider"
    plain = "httpx.AsyncClient(transport=transport, trust_env=False)"
    get = 'await client.get("http://web.default.svc.cluster.local:8080/")'
    scrape = f"{get}\n            print(urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    for old, new in (
        ("9464", str(port)),
        ("HeadlessResolver(meter_provider", resolver),
        ("httpx.AsyncClient(transport=transport)", plain),
        (get, scrape),  # while the client is open, as a scrape would come in a running app
    ):
        assert old in example
        example = example.replace(old, new)
    example = "from urllib.request import urlopen\n" + example
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", example, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0
    exported = stdout.decode()
    pods = {pod.ip: pod.requests for pod in cluster.pods("web")}
    assert sorted(pods.values()) == [0, 1]
    served = next(ip for ip, count in pods.items() if count)
    lines = [
        line
        for line in exported.splitlines()
        if line.startswith(f"{PREFIX}_endpoint_requests_total{{")
    ]
    assert len(lines) == 1, exported
    assert f'network_peer_address="{served}"' in lines[0]
    assert lines[0].endswith(" 1.0")
    for name in ("http_client_request_duration_seconds_bucket", f"{PREFIX}_dns_queries_total"):
        assert f"\n{name}{{" in exported


def test_the_sync_transport_counts_every_request_of_8_threads(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    cluster = ClusterThread()
    try:
        pods = cluster.run(cluster.cluster.add_service("web", pods=3))
        transport = SyncHeadlessTransport(
            HeadlessResolver([cluster.cluster.nameserver]), meter_provider=provider
        )
        with (
            httpx.Client(transport=transport, trust_env=False, timeout=5.0) as http,
            ThreadPoolExecutor(8) as threads,
        ):
            statuses = list(threads.map(lambda _: http.get(URL).status_code, range(240)))
            requests = by_pod(collect(reader)[f"{PREFIX}.endpoint.requests"])
    finally:
        cluster.close()
    assert statuses == [200] * 240
    assert requests == {pod.ip: pod.requests for pod in pods}
    assert sum(requests.values()) == 240


GLOBAL_PROVIDER_SET_LATE = """
import asyncio, json, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from headless_resolver import HeadlessResolver

def sizes(data):
    return {
        point.attributes["headless_resolver.name"]: point.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "headless_resolver.endpoints"
        for point in m.data.data_points
    }

async def main(nameserver):
    before = HeadlessResolver([nameserver])  # the global provider is still the API's proxy
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)
    after = HeadlessResolver([nameserver])
    explicit = HeadlessResolver([nameserver], meter_provider=provider)
    for resolver, name in ((before, "web"), (after, "api"), (explicit, "db")):
        await resolver.resolve(name)
    open_ = sizes(reader.get_metrics_data())
    for resolver in (before, after, explicit):
        await resolver.aclose()
    print(json.dumps([open_, sizes(reader.get_metrics_data())]))

asyncio.run(main(sys.argv[1]))
"""


async def test_the_global_provider_set_after_a_resolver_was_made_gets_every_resolver(
    cluster: LocalCluster,
) -> None:
    for name, pods in (("web", 3), ("api", 2), ("db", 1)):
        await cluster.add_service(name, pods=pods, port=8080)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        GLOBAL_PROVIDER_SET_LATE,
        cluster.nameserver,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert b"already" not in stderr  # no instrument registered twice
    assert json.loads(stdout) == [
        {
            "web.default.svc.cluster.local": 3,
            "api.default.svc.cluster.local": 2,
            "db.default.svc.cluster.local": 1,
        },
        {},  # closed resolvers report nothing
    ]
