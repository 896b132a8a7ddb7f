"""Peak EWMA: one cost of latency x load, power of two random choices (Finagle, Linkerd)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

from headless_resolver._endpoints import Endpoint
from headless_resolver._errors import InvalidArgument
from headless_resolver._health import PassiveHealth
from headless_resolver._strategies._base import ATTEMPTS, Accept
from headless_resolver._strategies._least_latency import LatencyPool, LatencyTracking, RttEstimate


class PeakEwma(LatencyTracking):
    """The cheaper of two random endpoints, cost = RTT estimate x (in-flight + 1).

    The RTT estimate is a peak EWMA as in Finagle and Linkerd: a slower sample replaces it at
    once, faster samples pull it down with time constant ``decay``. Between samples the
    estimate read at pick time decays toward zero at the same rate, so an endpoint that was
    slow once is probed again later. An endpoint without samples costs nothing while it has no
    request in flight and ``default_rtt`` x (in-flight + 1) after that. A failure counts as a
    sample of at least ``failure_penalty`` seconds.

    This was ``LeastLatency`` before it judged latency and load apart; it is kept for clients
    that are never CPU-bound and want its behaviour. When the client is busy, its own delay
    lands in every sample and in-flight count, the product counts it twice against busy fast
    pods, and an idle slow pod's estimate decays toward zero until it takes requests again
    (see the README's strategy guide).

    Thread safety: as ``LeastLatency``, no lock is taken.

    Parameters:
        decay: seconds, time constant of the peak EWMA and of its decay toward zero.
        default_rtt: cost of an endpoint with no samples yet once it has a request in flight.
        failure_penalty: seconds a failure counts as, at least.
        health: the ``PassiveHealth`` that ejects failing pods (default: a new one).
        rng: randomness for the two choices.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        decay: float = 10.0,
        default_rtt: float = 0.03,
        failure_penalty: float = 1.0,
        health: PassiveHealth | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not decay > 0:
            raise InvalidArgument(f"decay must be > 0 seconds, got {decay!r}")
        if not default_rtt > 0 or not failure_penalty >= 0:
            raise InvalidArgument("default_rtt must be > 0 and failure_penalty >= 0")
        super().__init__(health=health, rng=rng, clock=clock)
        self.decay = decay
        self.default_rtt = default_rtt
        self.failure_penalty = failure_penalty

    def __repr__(self) -> str:
        return f"PeakEwma(decay={self.decay!r}, default_rtt={self.default_rtt!r})"

    def cost(self, estimate: RttEstimate, now: float) -> float:
        pending = len(estimate.in_flight)
        state = estimate.state
        if state is None:
            return self.default_rtt * (pending + 1) if pending else 0.0
        rtt, updated_at = state
        if now > updated_at:
            rtt *= math.exp((updated_at - now) / self.decay)
        return rtt * (pending + 1)

    def _select(
        self, table: LatencyPool, key: str | None, accept: Accept | None
    ) -> Endpoint | None:
        endpoints, estimates = table.endpoints, table.estimates
        count = len(endpoints)
        if count == 1:
            only = endpoints[0]
            return only if accept is None or accept(only) else None
        randrange = self._rng.randrange
        for _ in range(ATTEMPTS):
            first = randrange(count)
            second = randrange(count - 1)
            if second >= first:
                second += 1
            if accept is not None:
                first_ok, second_ok = accept(endpoints[first]), accept(endpoints[second])
                if not (first_ok and second_ok):
                    if first_ok:
                        return endpoints[first]
                    if second_ok:
                        return endpoints[second]
                    continue
            now = self._clock()
            if self.cost(estimates[second], now) < self.cost(estimates[first], now):
                return endpoints[second]
            return endpoints[first]
        return None

    def _select_among(self, candidates: Sequence[Endpoint], key: str | None) -> Endpoint:
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._rng.sample(candidates, 2)
        now = self._clock()
        known = self._estimates
        first_cost = self.cost(known.get(first) or RttEstimate(), now)
        second_cost = self.cost(known.get(second) or RttEstimate(), now)
        return second if second_cost < first_cost else first

    def _finish(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        self._release(endpoint)
        estimate = self._estimates.get(endpoint)
        if estimate is None:
            return
        sample = latency_s if ok else max(latency_s, self.failure_penalty)
        estimate.update(sample, self._clock(), self.decay)
