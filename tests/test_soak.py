"""The soak in miniature: 20 s of constant GETs while pods churn every second and DNS blips
(SERVFAIL, silence, a stopped server): no failed GET, and no growth in descriptors or tasks.

Growth is measured between two quiet moments with the same service, pod count and traffic:
one sequential client before the churn starts and again after it ends, once the set is fresh
and connections a burst opened have expired. Counts taken during the churn swing with the
blips and with whatever the last burst opened, so they say little over 20 s.

Requests to removed pods after their grace are reported, not asserted: a pod removed during
a DNS blip cannot be seen to go until DNS is back, and the grace here is short.
"""

from __future__ import annotations

import pytest

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
    keepalive_expiry=1.0,
)


@pytest.mark.slow
async def test_twenty_seconds_of_churn_and_dns_blips() -> None:
    report = await soak(CONFIG)
    assert report.failures == 0, report.failure_examples
    assert report.requests >= 0.8 * CONFIG.clients * CONFIG.rate * CONFIG.seconds
    assert report.churns >= 18
    assert report.blips == 3  # one of each kind
    assert report.stale_served > 0  # the blips were felt, and ridden out
    assert report.stray_pools == []
    assert report.settled_fds <= report.warm_fds, [s.fds for s in report.samples]
    assert report.settled_tasks <= report.warm_tasks, [s.tasks for s in report.samples]
    assert report.fds_after <= report.fds_before
    assert report.tasks_after <= report.tasks_before
