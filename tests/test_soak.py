"""The soak in miniature: 16 s of constant GETs while pods churn every second and DNS blips
(SERVFAIL, silence, a stopped server): no failed GET, and nothing left open that should not be.

Leaks are counted once the run has settled (churn and blips over, the set fresh again), against
what must be open then: a pool per live pod and no other, and descriptors and tasks within what
the live pods' kept-alive connections account for. Counts taken during the churn swing with the
blips and with whatever a burst opened, so they show leaks only over the 10-minute soak.

Requests to removed pods after their grace are reported, not asserted: a pod removed during
a DNS blip cannot be seen to go until DNS is back, and the grace here is short.
"""

from __future__ import annotations

from benchmarks.soak import SoakConfig, soak

CONFIG = SoakConfig(
    seconds=16.0,
    clients=10,
    rate=20.0,
    grace=2.0,
    linger=1.0,
    blip_every=3.5,
    blip_length=1.5,
    keepalive=2,
)


async def test_sixteen_seconds_of_churn_and_dns_blips() -> None:
    report = await soak(CONFIG)
    assert report.failures == 0, report.failure_examples
    assert report.requests >= 0.8 * CONFIG.clients * CONFIG.rate * CONFIG.seconds
    assert report.churns >= 14
    assert report.blips == 3  # one of each kind
    assert report.stale_served > 0  # the blips were felt, and ridden out
    assert report.stray_pools == []
    assert report.settled_fds <= report.settled_fd_bound(), [s.fds for s in report.samples]
    assert report.settled_tasks <= report.settled_task_bound(), [s.tasks for s in report.samples]
    assert report.fds_after <= report.fds_before
    assert report.tasks_after <= report.tasks_before
