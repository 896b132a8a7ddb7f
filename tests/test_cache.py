"""Cache entry rules on a fake clock: TTL clamping, negative TTL, serve-stale, grace, versions."""

from __future__ import annotations

import random

import pytest

from headless_resolver import Endpoint, ResolutionError, ServiceNotFound
from headless_resolver._cache import CachePolicy, Entry, EntryStore

NAME = "web.default.svc.cluster.local."
A = Endpoint("10.0.0.1")
B = Endpoint("10.0.0.2")
POLICY = CachePolicy(min_ttl=1, max_ttl=60, negative_ttl_cap=10, stale_ttl=100, negative_grace=5)
NO_AHEAD = CachePolicy(min_ttl=1, max_ttl=60, refresh_ahead=None)


def entry_with(endpoints: list[Endpoint], ttl: float, policy: CachePolicy = POLICY) -> Entry:
    entry = Entry(NAME, now=0.0)
    entry.record_answer(endpoints, ttl, 0.0, policy, random.Random(1))
    return entry


def test_a_new_entry_needs_dns() -> None:
    assert Entry(NAME, now=0.0).read(0.0) is None


@pytest.mark.parametrize(("ttl", "lives"), [(5, 5), (0, 1), (0.2, 1), (3600, 60), (None, 1)])
def test_positive_ttl_is_clamped_to_min_and_max(ttl: float | None, lives: float) -> None:
    entry = entry_with([A], ttl, NO_AHEAD)  # type: ignore[arg-type]
    assert entry.read(lives - 0.001) is not None
    assert entry.read(lives) is None
    assert entry.endpoints.expires_at == lives


def test_refresh_is_due_at_eighty_percent_of_ttl_with_jitter() -> None:
    points = set()
    for seed in range(50):
        entry = Entry(NAME, now=0.0)
        entry.record_answer([A], 10, 0.0, POLICY, random.Random(seed))
        assert 7.2 <= entry.refresh_at <= 8.8
        assert entry.hot_until == entry.refresh_at
        points.add(round(entry.refresh_at, 3))
    assert len(points) > 10


def test_same_content_keeps_the_version_and_a_change_bumps_it() -> None:
    entry = entry_with([A, B], 5)
    first = entry.endpoints
    assert first.version == 1
    assert not entry.record_answer([B, A], 5, 4.0, POLICY, random.Random(2))
    assert entry.endpoints.version == 1
    assert entry.endpoints.endpoints is first.endpoints
    assert entry.endpoints.expires_at == 9.0
    assert entry.record_answer([A], 5, 8.0, POLICY, random.Random(3))
    assert entry.endpoints.version == 2


def test_negative_answer_lives_its_ttl_capped() -> None:
    entry = Entry(NAME, now=0.0)
    assert not entry.record_negative("no such service", 30, 0.0, POLICY)
    with pytest.raises(ServiceNotFound, match="no such service"):
        entry.read(9.9)
    assert entry.read(10.0) is None


def test_negative_answer_without_soa_lives_min_ttl() -> None:
    entry = Entry(NAME, now=0.0)
    entry.record_negative("gone", None, 0.0, POLICY)
    with pytest.raises(ServiceNotFound):
        entry.read(0.5)
    assert entry.read(1.0) is None


def test_failed_refresh_serves_the_last_good_set_as_stale_until_stale_ttl() -> None:
    entry = entry_with([A], 5)
    error = ResolutionError("timeout", reason="TIMEOUT")
    assert entry.record_failure(error, 4.5)
    fresh = entry.read(4.9)
    assert fresh is not None
    assert not fresh.stale
    stale = entry.read(5.0)
    assert stale is not None
    assert stale.stale
    assert list(stale) == [A]
    assert stale.version == 1
    assert entry.read(104.9) is stale
    assert entry.read(105.0) is None


def test_success_after_failure_is_fresh_again() -> None:
    entry = entry_with([A], 5)
    entry.record_failure(ResolutionError("timeout", reason="TIMEOUT"), 5.0)
    assert entry.read(6.0) is not None
    entry.record_answer([A], 5, 7.0, POLICY, random.Random(1))
    served = entry.read(7.5)
    assert served is not None
    assert not served.stale
    assert served.version == 1


def test_failure_with_no_good_set_serves_nothing() -> None:
    entry = Entry(NAME, now=0.0)
    assert not entry.record_failure(ResolutionError("timeout", reason="TIMEOUT"), 0.0)
    assert entry.read(0.0) is None


def test_negative_answer_after_a_good_set_waits_out_the_grace() -> None:
    entry = entry_with([A, B], 5)
    assert not entry.record_negative("gone", 2, 5.0, POLICY)
    during = entry.read(6.0)
    assert during is not None
    assert during.stale
    assert len(during) == 2
    assert entry.refresh_at == 7.0
    assert not entry.record_negative("gone", 2, 7.0, POLICY)
    assert entry.read(9.9) is not None
    assert entry.record_negative("gone", 2, 10.0, POLICY)
    assert len(entry.endpoints) == 0
    assert entry.endpoints.version == 2
    with pytest.raises(ServiceNotFound):
        entry.read(10.5)


def test_a_good_answer_inside_the_grace_resets_it() -> None:
    entry = entry_with([A], 5)
    entry.record_negative("gone", 2, 5.0, POLICY)
    entry.record_answer([A], 5, 7.0, POLICY, random.Random(1))
    assert entry.negative_since is None
    entry.record_negative("gone", 2, 11.0, POLICY)
    assert entry.read(15.9) is not None


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="min_ttl"):
        CachePolicy(min_ttl=10, max_ttl=1)
    with pytest.raises(ValueError, match="refresh_ahead"):
        CachePolicy(refresh_ahead=1.5)
    with pytest.raises(ValueError, match="stale_ttl"):
        CachePolicy(stale_ttl=-1)
    with pytest.raises(ValueError, match="must be positive"):
        CachePolicy(min_ttl=0)


def test_store_is_bounded_and_reports_evictions() -> None:
    evicted: list[Entry] = []
    store: EntryStore[Entry] = EntryStore(2, evicted.append)
    for name in ("a", "b"):
        store[name] = Entry(name, now=0.0)
    store["a"] = store["a"]
    store["c"] = Entry("c", now=0.0)
    assert [e.name for e in evicted] == ["b"]
    assert set(store) == {"a", "c"}
