"""Passive health: ejection after consecutive failures, growing timeouts, readmission."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from headless_resolver import Endpoint, EndpointSet, NoEndpointsAvailable
from headless_resolver._health import LatencyEjection, PassiveHealth
from headless_resolver._strategies import BaseStrategy, LeastLatency, RoundRobin, Sticky
from headless_resolver._verdict import Verdict
from tests.clocks import FakeClock

MakeStrategy = Callable[[PassiveHealth], BaseStrategy[Any]]


def pods(count: int) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i + 1}", 8080, f"web-{i}") for i in range(count)]


def tracked(health: PassiveHealth, endpoints: list[Endpoint], name: str = "web") -> None:
    health.track(name, frozenset(endpoints))


def test_one_refused_connection_ejects_for_base_ejection_then_readmits(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock)
    a, b, c = pods(3)
    tracked(health, [a, b, c])
    health.record(a, Verdict.CONNECT_FAILURE)
    assert health.is_ejected(a)
    assert health.ejected() == {a}
    clock.advance(29.9)
    assert health.is_ejected(a)
    clock.advance(0.2)
    assert not health.is_ejected(a)
    assert not health.any_ejected


def test_five_consecutive_failing_statuses_eject(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock)
    a, *_ = endpoints = pods(3)
    tracked(health, endpoints)
    for _ in range(4):
        health.record(a, Verdict.FAILING_STATUS)
    assert not health.is_ejected(a)
    health.record(a, Verdict.FAILING_STATUS)
    assert health.is_ejected(a)


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock)
    a, *_ = endpoints = pods(3)
    tracked(health, endpoints)
    for _ in range(4):
        health.record(a, Verdict.FAILING_STATUS)
    health.record(a, Verdict.OK)
    for _ in range(4):
        health.record(a, Verdict.FAILING_STATUS)
    assert not health.is_ejected(a)


def test_timeouts_count_like_failing_statuses_in_a_row(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock, consecutive_status_failures=3)
    a, b, *_ = endpoints = pods(4)
    tracked(health, endpoints)
    health.record(a, Verdict.TIMEOUT)
    health.record(a, Verdict.FAILING_STATUS)
    assert not health.is_ejected(a)
    health.record(a, Verdict.TIMEOUT)
    assert health.is_ejected(a)
    health.record(b, Verdict.TIMEOUT)
    health.record(b, Verdict.OK)
    health.record(b, Verdict.TIMEOUT)
    health.record(b, Verdict.TIMEOUT)
    assert not health.is_ejected(b)


def test_a_body_cut_short_ejects_like_a_refused_connection(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock)
    a, *_ = endpoints = pods(3)
    tracked(health, endpoints)
    health.record(a, Verdict.BODY_CUT_SHORT)
    assert health.ejected() == {a}


def test_what_was_not_the_pods_doing_counts_for_nothing(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock, consecutive_status_failures=1)
    a, *_ = endpoints = pods(3)
    tracked(health, endpoints)
    for _ in range(10):
        health.record(a, Verdict.NOT_THE_PODS)
    assert not health.any_ejected


def test_ejection_time_grows_with_each_ejection_up_to_the_cap(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock, base_ejection=10.0, max_ejection=25.0)
    a, *_ = endpoints = pods(3)
    tracked(health, endpoints)
    durations = []
    for _ in range(4):
        health.record(a, Verdict.CONNECT_FAILURE)
        start = clock.now
        while health.is_ejected(a):
            clock.advance(1.0)
        durations.append(clock.now - start)
    assert durations == [10.0, 20.0, 25.0, 25.0]
    assert health.times_ejected(a) == 4


def test_time_spent_healthy_shrinks_the_next_ejection(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock, base_ejection=10.0)
    a, *_ = endpoints = pods(3)
    tracked(health, endpoints)
    for duration in (10.0, 20.0, 30.0):
        health.record(a, Verdict.CONNECT_FAILURE)
        clock.advance(duration)
        assert not health.is_ejected(a)
    clock.advance(25.0)  # two base ejections healthy: the multiplier drops from 3 to 1
    health.record(a, Verdict.CONNECT_FAILURE)
    assert health.times_ejected(a) == 2
    clock.advance(19.9)
    assert health.is_ejected(a)
    clock.advance(0.1)
    assert not health.is_ejected(a)


@pytest.mark.parametrize(
    ("size", "percent", "expected"),
    [(10, 50, 5), (3, 50, 1), (10, 10, 1), (4, 100, 3), (1, 100, 0), (2, 0, 1)],
)
def test_at_most_max_ejection_percent_is_ejected_and_one_is_always_kept(
    clock: FakeClock, size: int, percent: float, expected: int
) -> None:
    health = PassiveHealth(clock=clock, max_ejection_percent=percent)
    endpoints = pods(size)
    tracked(health, endpoints)
    for endpoint in endpoints:
        health.record(endpoint, Verdict.CONNECT_FAILURE)
    assert len(health.ejected()) == expected


def test_an_expired_ejection_does_not_use_up_the_budget(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock)
    a, b, c = pods(3)
    tracked(health, [a, b, c])
    health.record(a, Verdict.CONNECT_FAILURE)
    clock.advance(31)  # a's ejection has ended, though nobody has asked about a since
    health.record(b, Verdict.CONNECT_FAILURE)
    assert health.ejected() == {b}


def test_budget_is_per_set(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock, max_ejection_percent=50)
    web, api = pods(2), [Endpoint("10.0.1.1", 80), Endpoint("10.0.1.2", 80)]
    tracked(health, web, "web")
    tracked(health, api, "api")
    for endpoint in web + api:
        health.record(endpoint, Verdict.CONNECT_FAILURE)
    assert health.ejected() == {web[0], api[0]}


def test_endpoints_of_no_tracked_set_leave_no_state(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock)
    stranger = Endpoint("10.9.9.9", 80)
    health.record(stranger, Verdict.CONNECT_FAILURE)
    assert not health.is_ejected(stranger)
    assert health.times_ejected(stranger) == 0


def test_state_is_dropped_when_an_endpoint_leaves_every_set(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock)
    a, b, c = pods(3)
    tracked(health, [a, b, c])
    health.record(a, Verdict.CONNECT_FAILURE)
    health.record(b, Verdict.FAILING_STATUS)
    tracked(health, [a], "also-a")
    tracked(health, [c])
    assert health.is_ejected(a), "a is still a member of another set"
    tracked(health, [], "also-a")
    assert not health.is_ejected(a)
    assert health.times_ejected(a) == 0
    assert repr(health) == "<PassiveHealth ejected=0 tracked=1>"


def test_concurrent_failures_respect_the_budget(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock, max_ejection_percent=50)
    endpoints = pods(16)
    tracked(health, endpoints)
    barrier = threading.Barrier(16)

    def fail(endpoint: Endpoint) -> None:
        barrier.wait()
        for _ in range(50):
            health.record(endpoint, Verdict.CONNECT_FAILURE)

    threads = [threading.Thread(target=fail, args=(ep,)) for ep in endpoints]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(health.ejected()) == 8


@pytest.mark.parametrize(
    "options",
    [
        {"consecutive_connect_failures": 0},
        {"consecutive_status_failures": 0},
        {"base_ejection": 0},
        {"base_ejection": 400.0, "max_ejection": 300.0},
        {"max_ejection_percent": 101},
    ],
)
def test_nonsense_configuration_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        PassiveHealth(**options)  # type: ignore[arg-type]


STRATEGIES = [
    pytest.param(lambda h: RoundRobin(health=h, rng=random.Random(1)), id="round-robin"),
    pytest.param(lambda h: LeastLatency(health=h, rng=random.Random(1)), id="least-latency"),
    pytest.param(lambda h: Sticky("x-user", health=h, rng=random.Random(1)), id="sticky"),
]


@pytest.mark.parametrize("make", STRATEGIES)
def test_every_strategy_skips_ejected_endpoints(clock: FakeClock, make: MakeStrategy) -> None:
    strategy = make(PassiveHealth(clock=clock))
    endpoints = EndpointSet("web", pods(4), version=1)
    for endpoint in endpoints[:2]:
        strategy.pick(endpoints, "warm-up")
        strategy.observe(endpoint, 0.001, ok=False)
    assert strategy.health.ejected() == set(endpoints[:2])
    picked = {strategy.pick(endpoints, f"user-{i}") for i in range(200)}
    assert picked == set(endpoints[2:])
    clock.advance(31)
    picked = {strategy.pick(endpoints, f"user-{i}") for i in range(200)}
    assert picked == set(endpoints)


@pytest.mark.parametrize("make", STRATEGIES)
def test_panic_mode_picks_among_ejected_endpoints(clock: FakeClock, make: MakeStrategy) -> None:
    strategy = make(PassiveHealth(clock=clock))
    endpoints = EndpointSet("web", pods(2), version=1)
    strategy.pick(endpoints, "k")
    strategy.observe(endpoints[0], 0.001, ok=False)
    # The healthy pod leaves: the only pods left are ejected ones.
    survivors = EndpointSet("web", [endpoints[0]], version=2)
    assert strategy.health.is_ejected(endpoints[0])
    assert strategy.pick(survivors, "k") == endpoints[0]


@pytest.mark.parametrize("make", STRATEGIES)
def test_without_panic_mode_everything_ejected_is_an_error(
    clock: FakeClock, make: MakeStrategy
) -> None:
    strategy = make(PassiveHealth(clock=clock, panic=False))
    endpoints = EndpointSet("web", pods(2), version=1)
    strategy.pick(endpoints, "k")
    strategy.observe(endpoints[0], 0.001, ok=False)
    survivors = EndpointSet("web", [endpoints[0]], version=2)
    with pytest.raises(NoEndpointsAvailable, match="ejected"):
        strategy.pick(survivors, "k")


# Latency outliers


def answered(health: PassiveHealth, latencies: dict[Endpoint, float], times: int) -> None:
    for _ in range(times):
        for endpoint, latency in latencies.items():
            health.record_latency(endpoint, latency)


def test_a_pod_far_slower_than_its_set_is_ejected_like_a_failing_one(clock: FakeClock) -> None:
    health = PassiveHealth(latency_ejection=LatencyEjection(min_samples=20), clock=clock)
    slow, *fast = endpoints = pods(5)
    tracked(health, endpoints)
    latencies = {slow: 0.060, **{ep: 0.005 for ep in fast}}
    answered(health, latencies, 25)
    assert not health.any_ejected, "judged once per interval, not on every answer"
    clock.advance(1.0)
    answered(health, latencies, 1)
    assert health.ejected() == {slow}
    assert health.times_ejected(slow) == 1
    clock.advance(30.0)
    assert not health.is_ejected(slow), "readmitted after base_ejection, as a failing pod is"


def test_a_latency_outlier_must_exceed_both_the_factor_and_the_margin(clock: FakeClock) -> None:
    rule = LatencyEjection(factor=3.0, margin=0.010, min_samples=5)
    assert rule.limit(0.001) == pytest.approx(0.011), "3 x 1 ms is jitter, not an outlier"
    assert rule.limit(0.020) == pytest.approx(0.060)
    health = PassiveHealth(latency_ejection=rule, clock=clock)
    endpoints = pods(4)
    tracked(health, endpoints)
    answered(health, dict(zip(endpoints, [0.009, 0.001, 0.001, 0.001], strict=True)), 10)
    clock.advance(1.0)
    answered(health, {endpoints[1]: 0.001}, 1)
    assert not health.any_ejected


def test_pods_with_too_few_answers_are_not_judged(clock: FakeClock) -> None:
    health = PassiveHealth(latency_ejection=LatencyEjection(min_samples=20), clock=clock)
    slow, *fast = endpoints = pods(4)
    tracked(health, endpoints)
    answered(health, {ep: 0.005 for ep in fast}, 30)
    answered(health, {slow: 0.500}, 19)
    clock.advance(1.0)
    answered(health, {fast[0]: 0.005}, 1)
    assert not health.any_ejected
    answered(health, {slow: 0.500}, 1)  # its 20th answer, kept since the last judgement
    answered(health, {ep: 0.005 for ep in fast}, 20)
    clock.advance(1.0)
    answered(health, {fast[0]: 0.005}, 1)
    assert health.ejected() == {slow}


def test_latency_ejection_keeps_the_ejection_budget(clock: FakeClock) -> None:
    health = PassiveHealth(
        latency_ejection=LatencyEjection(min_samples=5), max_ejection_percent=25, clock=clock
    )
    endpoints = pods(8)
    tracked(health, endpoints)
    latencies = dict(
        zip(endpoints, [0.3, 0.2, 0.1, 0.005, 0.005, 0.005, 0.005, 0.005], strict=True)
    )
    answered(health, latencies, 5)
    clock.advance(1.0)
    answered(health, latencies, 5)
    assert health.ejected() == set(endpoints[:2]), "25 % of 8: the two slowest"


def test_latency_ejection_is_off_by_default(clock: FakeClock) -> None:
    health = PassiveHealth(clock=clock)
    slow, *fast = endpoints = pods(4)
    tracked(health, endpoints)
    answered(health, {slow: 1.0, **{ep: 0.001 for ep in fast}}, 50)
    clock.advance(10.0)
    answered(health, {slow: 1.0, **{ep: 0.001 for ep in fast}}, 50)
    assert not health.any_ejected


@pytest.mark.parametrize(
    "options",
    [{"factor": 1.0}, {"margin": -0.001}, {"min_samples": 0}, {"interval": 0}],
)
def test_nonsense_latency_ejection_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="LatencyEjection"):
        LatencyEjection(**options)


def test_round_robin_stops_sending_to_a_latency_outlier(clock: FakeClock) -> None:
    """Round-robin does not look at latency; health's latency ejection does it for it."""
    health = PassiveHealth(latency_ejection=LatencyEjection(min_samples=10), clock=clock)
    strategy = RoundRobin(health=health, rng=random.Random(1))
    endpoints = EndpointSet("web", pods(5), version=1)
    slow = endpoints[0]
    picked = []
    for _ in range(1000):
        endpoint = strategy.pick(endpoints)
        picked.append(endpoint)
        strategy.observe(endpoint, 0.060 if endpoint == slow else 0.005, ok=True)
        clock.advance(0.005)
    assert picked[:200].count(slow) == 40
    assert picked[300:].count(slow) == 0
