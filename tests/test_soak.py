"""The soak in miniature: 20 s of constant GETs while pods churn every second and DNS blips
(SERVFAIL, silence, a stopped server): no failed GET, no growth in descriptors or tasks.

Requests to removed pods after their grace are reported, not asserted: a pod removed during
a DNS blip cannot be seen to go until DNS is back, and the grace here is short. Two connections
are kept alive per pod: with httpx's 20, the pools keep whatever a burst on a busy machine
opened, and in 20 s that plateau can still be rising when the run ends, which is not a leak.
"""

from __future__ import annotations

from benchmarks.soak import SoakConfig, soak

CONFIG = SoakConfig(
    seconds=20.0,
    clients=10,
    rate=20.0,
    grace=2.0,
    linger=1.0,
    blip_every=5.0,
    blip_length=1.5,
    keepalive=2,
)


async def test_twenty_seconds_of_churn_and_dns_blips() -> None:
    report = await soak(CONFIG)
    assert report.failures == 0, report.failure_examples
    assert report.requests >= 0.8 * CONFIG.clients * CONFIG.rate * CONFIG.seconds
    assert report.churns >= 18
    assert report.blips == 3  # one of each kind
    assert report.stale_served > 0  # the blips were felt, and ridden out
    assert report.growth("fds") <= 3, [s.fds for s in report.samples]
    assert report.growth("tasks") <= 2, [s.tasks for s in report.samples]
    assert report.fds_after <= report.fds_before
    assert report.tasks_after <= report.tasks_before
