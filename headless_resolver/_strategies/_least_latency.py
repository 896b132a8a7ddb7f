"""Least latency: peak-EWMA cost, power of two random choices."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

from headless_resolver._endpoints import Endpoint
from headless_resolver._errors import InvalidArgument
from headless_resolver._health import PassiveHealth
from headless_resolver._strategies._base import ATTEMPTS, Accept, BaseStrategy, SetTable


class RttEstimate:
    """Peak-EWMA round-trip estimate and in-flight count of one endpoint.

    ``state`` is ``(estimate_s, updated_at)``, or ``None`` before the first sample; it is
    replaced as one tuple, so a reader never sees half an update. ``in_flight`` is a list used
    as a counter because ``append`` and ``del [-1:]`` are atomic in CPython.
    """

    __slots__ = ("in_flight", "state")

    def __init__(self) -> None:
        self.state: tuple[float, float] | None = None
        self.in_flight: list[None] = []

    def update(self, sample: float, now: float, decay: float) -> None:
        """Jumps up to a slower sample; moves toward a faster one by ``1 - exp(-dt / decay)``."""
        state = self.state
        if state is None:
            self.state = (sample, now)
            return
        estimate, updated_at = state
        if sample > estimate:
            self.state = (sample, now)
        else:
            weight = math.exp(-max(now - updated_at, 0.0) / decay)
            self.state = (estimate * weight + sample * (1.0 - weight), now)


class _Pool(SetTable):
    __slots__ = ("estimates",)

    def __init__(self, endpoints: tuple[Endpoint, ...], estimates: tuple[RttEstimate, ...]) -> None:
        super().__init__(endpoints)
        self.estimates = estimates


class LeastLatency(BaseStrategy[_Pool]):
    """The cheaper of two random endpoints, cost = RTT estimate x (in-flight + 1).

    The RTT estimate is a peak EWMA as in Finagle and Linkerd: a slower sample replaces it at
    once, faster samples pull it down with time constant ``decay``. Between samples the
    estimate read at pick time decays toward zero at the same rate, so an endpoint that was
    slow once is probed again later. Two random choices, never the global minimum, keep every
    client from herding onto the same fastest pod. An endpoint without samples costs nothing
    while it has no request in flight (it is probed one request at a time) and
    ``default_rtt`` x (in-flight + 1) after that. A failure counts as a sample of at least
    ``failure_penalty`` seconds, so a pod that fails fast does not look fast.

    Thread safety: in-flight counts use atomic list operations and estimates are replaced as
    whole tuples, so no lock is taken; concurrent observations of one endpoint may drop one
    of the samples, never corrupt the estimate.

    Parameters (keyword-only):
        decay: time constant of the peak EWMA, in seconds (10).
        default_rtt: cost of an endpoint without samples once it has a request (0.03 s).
        failure_penalty: the least a failure counts as, in seconds (1).
        health, rng: as for every strategy (see ``RoundRobin``).
        clock: monotonic seconds, injectable for tests.
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
        super().__init__(health=health, rng=rng)
        self.decay = decay
        self.default_rtt = default_rtt
        self.failure_penalty = failure_penalty
        self._clock = clock
        self._estimates: dict[Endpoint, RttEstimate] = {}

    def __repr__(self) -> str:
        return f"LeastLatency(decay={self.decay!r}, default_rtt={self.default_rtt!r})"

    def estimate(self, endpoint: Endpoint) -> RttEstimate | None:
        """The endpoint's RTT state, ``None`` when it is in no current set."""
        return self._estimates.get(endpoint)

    def cost(self, estimate: RttEstimate, now: float) -> float:
        pending = len(estimate.in_flight)
        state = estimate.state
        if state is None:
            return self.default_rtt * (pending + 1) if pending else 0.0
        rtt, updated_at = state
        if now > updated_at:
            rtt *= math.exp((updated_at - now) / self.decay)
        return rtt * (pending + 1)

    def _build(self, endpoints: tuple[Endpoint, ...], previous: _Pool | None) -> _Pool:
        known = self._estimates
        estimates = []
        for endpoint in endpoints:
            estimate = known.get(endpoint)
            if estimate is None:
                estimate = known[endpoint] = RttEstimate()
            estimates.append(estimate)
        return _Pool(endpoints, tuple(estimates))

    def _forget(self, gone: frozenset[Endpoint]) -> None:
        for endpoint in gone:
            self._estimates.pop(endpoint, None)

    def _select(self, table: _Pool, key: str | None, accept: Accept | None) -> Endpoint | None:
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

    def _acquire(self, endpoint: Endpoint) -> None:
        estimate = self._estimates.get(endpoint)
        if estimate is not None:
            estimate.in_flight.append(None)

    def _release(self, endpoint: Endpoint) -> None:
        estimate = self._estimates.get(endpoint)
        if estimate is not None:
            del estimate.in_flight[-1:]  # atomic, and a no-op when already empty

    def _finish(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        self._release(endpoint)
        estimate = self._estimates.get(endpoint)
        if estimate is None:
            return
        sample = latency_s if ok else max(latency_s, self.failure_penalty)
        estimate.update(sample, self._clock(), self.decay)
