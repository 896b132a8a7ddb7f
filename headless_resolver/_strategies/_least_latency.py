"""Least latency: latency and load judged apart (hot-cold), bounded exploration, slow start."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence

from headless_resolver._endpoints import Endpoint
from headless_resolver._errors import InvalidArgument
from headless_resolver._health import PassiveHealth
from headless_resolver._strategies._base import ATTEMPTS, Accept, BaseStrategy, SetTable
from headless_resolver._strategies._slow_start import SlowStart

TIE_FLOOR = 0.0005
"""Seconds of latency difference that never decide a pick: below a loopback's jitter."""
TYPICAL_STEP = 0.05
"""How far one sample moves a set's typical latency, as a fraction of it at most."""
LOAD_STEP = 0.05
"""How far one candidate's in-flight count moves the set's running median of them."""
MAX_SAMPLE_WEIGHT = 0.5
"""The most one sample moves an estimate, however long since the last: one answer that was
fast by chance does not make a slow pod look fast."""
MAX_PROBE_BACKOFF = 2
"""A pod whose probes keep finding it slow is probed every 2, then 4 ``probe_interval``."""
_NO_PROBES: tuple[()] = ()


class SetStats:
    """Running statistics of one endpoint set, shared by its endpoints' estimates.

    ``typical`` is the set's typical latency: a running median-like estimate of every
    successful sample (one sample moves it by at most ``TYPICAL_STEP`` of its value, so a slow
    pod's samples barely move it), ``0.0`` before the first. ``load`` is a running median of
    the in-flight counts of the candidates picks draw, which are uniform over the set.
    Both are single floats written without a lock: a lost update is one lost step.
    """

    __slots__ = ("load", "typical")

    def __init__(self, typical: float = 0.0, load: float = 0.0) -> None:
        self.typical = typical
        self.load = load


class RttEstimate:
    """Latency estimate, in-flight count and probe schedule of one endpoint.

    ``state`` is ``(estimate_s, updated_at)``, or ``None`` before the first sample; it is
    replaced as one tuple, so a reader never sees half an update. ``in_flight`` is a list used
    as a counter because ``append`` and ``del [-1:]`` are atomic in CPython. ``sent_at`` is when
    a pick last chose the endpoint and ``backoff`` how many times in a row its samples were
    slow (``LeastLatency`` probes it less often then); ``samples`` counts samples up to 2.
    ``stats`` are its set's.
    """

    __slots__ = ("backoff", "in_flight", "samples", "sent_at", "state", "stats")

    def __init__(self, stats: SetStats | None = None) -> None:
        self.state: tuple[float, float] | None = None
        self.in_flight: list[None] = []
        self.samples = 0
        self.sent_at = -math.inf
        self.backoff = 0
        self.stats = stats if stats is not None else SetStats()

    def update(self, sample: float, now: float, decay: float) -> None:
        """Peak EWMA: jumps up to a slower sample; moves toward a faster one by
        ``1 - exp(-dt / decay)`` (``PeakEwma``'s estimate)."""
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


class LatencyPool(SetTable):
    __slots__ = ("estimates", "stats")

    def __init__(
        self, endpoints: tuple[Endpoint, ...], estimates: tuple[RttEstimate, ...], stats: SetStats
    ) -> None:
        super().__init__(endpoints)
        self.estimates = estimates
        self.stats = stats


class LatencyTracking(BaseStrategy[LatencyPool]):
    """Per-endpoint estimates and in-flight counts, kept across set versions."""

    def __init__(
        self,
        *,
        health: PassiveHealth | None = None,
        rng: random.Random | None = None,
        slow_start: SlowStart | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(health=health, rng=rng, slow_start=slow_start, clock=clock)
        self._estimates: dict[Endpoint, RttEstimate] = {}

    def estimate(self, endpoint: Endpoint) -> RttEstimate | None:
        """The endpoint's latency state, ``None`` when it is in no current set."""
        return self._estimates.get(endpoint)

    def _build(self, endpoints: tuple[Endpoint, ...], previous: LatencyPool | None) -> LatencyPool:
        self._note_arrivals(endpoints, previous)
        stats = SetStats() if previous is None else previous.stats
        known = self._estimates
        estimates = []
        for endpoint in endpoints:
            estimate = known.get(endpoint)
            if estimate is None:
                estimate = known[endpoint] = RttEstimate(stats)
            estimate.stats = stats
            estimates.append(estimate)
        return LatencyPool(endpoints, tuple(estimates), stats)

    def _forget(self, gone: frozenset[Endpoint]) -> None:
        for endpoint in gone:
            self._estimates.pop(endpoint, None)

    def _acquire(self, endpoint: Endpoint) -> None:
        estimate = self._estimates.get(endpoint)
        if estimate is not None:
            estimate.in_flight.append(None)

    def _release(self, endpoint: Endpoint) -> None:
        estimate = self._estimates.get(endpoint)
        if estimate is not None:
            del estimate.in_flight[-1:]  # atomic, and a no-op when already empty


class LeastLatency(LatencyTracking):
    """Of ``choices`` random endpoints, a cold one with the lowest latency (hot-cold rule).

    Latency and load are judged apart, as in Prequal (Wydrowski et al., NSDI 2024), from what
    a client sees without server support. A candidate is *hot* when its requests in flight from
    this client exceed ``hot_factor`` x the set's running median in-flight count (at least 1),
    or ``max_in_flight``. Among cold candidates the lowest latency estimate wins; estimates
    within ``tolerance`` (or 0.5 ms) of each other tie, and a tie goes to fewer requests in
    flight, then to chance. Only when every candidate is hot does the fewest in flight win.
    Judging them apart matters when the client is busy: its own event-loop delay lands in every
    sample and every in-flight count alike, and a cost of latency x load counts it twice
    against the busy fast pods, while the idle slow one looks cheap.

    A cold candidate holding more of this client's requests than the median candidate has its
    estimate stretched by one request's worth at most, x ``1 + min(in flight - median, 1) /
    (median + 1)``: a pod twice as fast as the rest that already holds one request (median
    none) ties with an idle one, so it does not win every pick it is drawn in, while a pod
    many times slower stays out. The cap keeps the client's own queueing, which lands in every
    sample alike, from being counted twice; larger excesses are the hot rule's to judge.

    The estimate is an EWMA of samples with time constant ``smoothing``, in which one sample
    moves it at most halfway (a probe answer that was fast by chance does not make a slow pod
    look fast). Without samples it returns toward the set's typical latency (a running median of
    the set's samples) with time constant ``decay``, never toward zero, so an idle slow pod does
    not come to look fast.

    Exploration is bounded and explicit: an endpoint no pick chose for ``probe_interval``
    seconds takes the next request that draws it as a candidate (one request, when it has none
    in flight); while its answers stay slow it is probed every 2, then 4 intervals, one request
    in 800 at 200 req/s. An endpoint being measured (no sample for ``probe_interval``, a request
    in flight) waits for that answer behind even the hot ones, so one request, not a burst,
    finds out whether it is still slow, and a pod that recovered is trusted again within
    seconds. A new endpoint is probed the same way; its second answer replaces the first (which
    paid for opening the connection), and until then it is probed whenever a pick draws it idle.

    With ``probe`` set (a path such as ``"/healthz"``), no user request is spent on exploring:
    an endpoint due for a probe competes on its estimate like any candidate (one without a
    sample waits behind measured ones, as while its first answer is pending); when it loses,
    it is queued for an active probe, once per due period (``take_probes``), and the
    transport sends it ``GET probe``, judged like any attempt. A pick with no other candidate
    still takes it: probing never fails a request.

    A failure counts as a sample of at least ``failure_penalty`` seconds, so a pod that fails
    fast does not look fast. Random candidates, never the global minimum, keep independent
    clients from herding onto the same fastest pod: with ``choices=2`` a pod faster than every
    other takes at most 2 / N of the requests, and, by the stretch above, less whenever a
    client has more than one request in flight.

    Thread safety: no lock is taken. In-flight counts use atomic list operations and estimates
    are replaced as whole tuples; concurrent observations of one endpoint may drop one of the
    samples, never corrupt the estimate.

    Parameters:
        choices: candidates drawn per pick, 2 or 3.
        smoothing: seconds, time constant of the latency EWMA.
        decay: seconds, time constant of an idle estimate's return to the typical latency.
        tolerance: latency estimates within this fraction of each other tie.
        hot_factor: a candidate is hot above this multiple of the set's median in-flight count.
        max_in_flight: a candidate with this many requests in flight is hot; default no bound.
        probe_interval: seconds after which an endpoint no pick chose is tried again.
        probe: a path (``"/healthz"``) to measure endpoints with active probe requests
            instead of user requests; default None: user requests explore.
        default_rtt: the latency assumed for an endpoint before this set has any sample.
        failure_penalty: seconds a failure counts as, at least.
        slow_start: ``SlowStart(window=...)`` to ramp up pods that join; default off.
        health: the ``PassiveHealth`` that ejects failing pods (default: a new one).
        rng: randomness for the candidates; seed it for reproducible picks.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        choices: int = 2,
        smoothing: float = 0.3,
        decay: float = 10.0,
        tolerance: float = 0.2,
        hot_factor: float = 3.0,
        max_in_flight: int | None = None,
        probe_interval: float = 1.0,
        default_rtt: float = 0.03,
        failure_penalty: float = 1.0,
        probe: str | None = None,
        slow_start: SlowStart | None = None,
        health: PassiveHealth | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if choices not in (2, 3):
            raise InvalidArgument(f"choices must be 2 or 3, got {choices!r}")
        for name, value in (
            ("smoothing", smoothing),
            ("decay", decay),
            ("probe_interval", probe_interval),
            ("default_rtt", default_rtt),
            ("hot_factor", hot_factor),
        ):
            if not (math.isfinite(value) and value > 0):
                raise InvalidArgument(f"{name} must be > 0, got {value!r}")
        if not (math.isfinite(tolerance) and tolerance >= 0) or not failure_penalty >= 0:
            raise InvalidArgument("tolerance and failure_penalty must be >= 0")
        if max_in_flight is not None and max_in_flight < 1:
            raise InvalidArgument(f"max_in_flight must be at least 1, got {max_in_flight!r}")
        if probe is not None and not (
            isinstance(probe, str) and probe.startswith("/") and not probe.startswith("//")
        ):
            # "//host/path" would be another host's URL, not a path of the pod's
            raise InvalidArgument(f"probe must be a path starting with one '/', got {probe!r}")
        super().__init__(health=health, rng=rng, slow_start=slow_start, clock=clock)
        self.choices = choices
        self.smoothing = smoothing
        self.decay = decay
        self.tolerance = tolerance
        self.hot_factor = hot_factor
        self.max_in_flight = max_in_flight
        self.probe_interval = probe_interval
        self.default_rtt = default_rtt
        self.failure_penalty = failure_penalty
        self.probe = probe
        self._probes: list[Endpoint] = []
        """Endpoints queued for an active probe, each counted in flight until its answer."""
        self._probes_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"LeastLatency(choices={self.choices!r}, probe_interval={self.probe_interval!r}, "
            f"probe={self.probe!r}, slow_start={self.slow_start!r})"
        )

    def take_probes(self) -> Sequence[Endpoint]:
        """The endpoints due for an active probe since the last call (only with ``probe``).

        Each is counted in flight already: the caller sends it one ``GET probe`` and reports
        the outcome with ``observe``, or ``release`` when it sends none. Cheap when there is
        nothing to probe: no lock, no allocation.
        """
        if not self._probes:
            return _NO_PROBES
        with self._probes_lock:
            probes, self._probes = self._probes, []
        return probes

    def latency(self, estimate: RttEstimate, now: float) -> float:
        """The endpoint's latency estimate at ``now``: its EWMA, drawn toward the set's typical
        latency the longer it has had no sample; the typical latency itself before any sample."""
        typical = estimate.stats.typical
        state = estimate.state
        if state is None:
            return typical or self.default_rtt
        value, updated_at = state
        if typical and now > updated_at:
            value = typical + (value - typical) * math.exp((updated_at - now) / self.decay)
        return value

    def _select(
        self, table: LatencyPool, key: str | None, accept: Accept | None
    ) -> Endpoint | None:
        endpoints = table.endpoints
        count = len(endpoints)
        if count == 1:
            only = endpoints[0]
            return only if accept is None or accept(only) else None
        # random() scaled, not randrange(): one C call per draw instead of three Python ones.
        random = self._rng.random
        estimates = table.estimates
        three = self.choices == 3 and count > 2
        wanted = 3 if three else 2
        chosen: list[Endpoint] = []
        measured: list[RttEstimate] = []
        for _ in range(ATTEMPTS):
            first = int(random() * count)
            second = int(random() * (count - 1))
            second += second >= first
            if not three:
                if accept is None:
                    return self._choose(
                        (endpoints[first], endpoints[second]),
                        (estimates[first], estimates[second]),
                        table.stats,
                    )
                drawn: tuple[int, ...] = (first, second)
            else:
                low, high = (first, second) if first < second else (second, first)
                third = int(random() * (count - 2))
                third += third >= low
                third += third >= high
                if accept is None:
                    return self._choose(
                        (endpoints[first], endpoints[second], endpoints[third]),
                        (estimates[first], estimates[second], estimates[third]),
                        table.stats,
                    )
                drawn = (first, second, third)
            # A rejected candidate (ejected, tried, warming) is replaced by another draw: the
            # one left alone would otherwise win however slow it is.
            for i in drawn:
                endpoint = endpoints[i]
                if accept(endpoint) and all(endpoint is not e for e in chosen):
                    chosen.append(endpoint)
                    measured.append(estimates[i])
            if len(chosen) >= wanted:
                break
        if not chosen:
            return None
        return self._choose(chosen[:wanted], measured[:wanted], table.stats)

    def _select_among(self, candidates: Sequence[Endpoint], key: str | None) -> Endpoint:
        drawn = (
            candidates
            if len(candidates) <= self.choices
            else self._rng.sample(candidates, self.choices)
        )
        known = self._estimates
        estimates = [known.get(endpoint) or RttEstimate() for endpoint in drawn]
        return self._choose(drawn, estimates, estimates[0].stats)

    def _choose(
        self, endpoints: Sequence[Endpoint], estimates: Sequence[RttEstimate], stats: SetStats
    ) -> Endpoint:
        """The hot-cold rule over drawn candidates (the first of equals: they come in random
        order), after a due probe; notes the winner's choice time. With ``probe``, a candidate due
        for a probe competes on its estimate, and is queued for a probe when it loses."""
        now = self._clock()
        load = median = stats.load
        typical = stats.typical
        threshold = self.hot_factor * (median if median > 1.0 else 1.0)
        per_request = 1.0 / (median + 1.0)
        bound = self.max_in_flight
        slack = 1.0 + self.tolerance
        probe_interval = self.probe_interval
        best: RttEstimate | None = None
        best_endpoint = endpoints[0]
        best_hot = 2
        best_latency = best_pending = 0.0
        due: list[tuple[Endpoint, RttEstimate]] | None = None
        for endpoint, estimate in zip(endpoints, estimates, strict=False):  # equal lengths
            pending = len(estimate.in_flight)
            load += LOAD_STEP if pending > load else -LOAD_STEP if pending < load else 0.0
            if pending == 0 and (
                estimate.samples < 2
                or now - estimate.sent_at >= probe_interval * (1 << estimate.backoff)
            ):
                if self.probe is None:
                    best, best_endpoint = estimate, endpoint  # due for a probe: this request
                    break
                if due is None:
                    due = []
                due.append((endpoint, estimate))  # probed unless it wins on its estimate
            state = estimate.state
            if state is None:
                hot = 2  # first measured: wait for the answer
                latency = typical or self.default_rtt
            else:
                latency, updated_at = state
                if pending and now - updated_at >= probe_interval:
                    hot = 2  # measured again after a while: wait for the answer
                else:
                    over = pending > threshold or (bound is not None and pending >= bound)
                    hot = 1 if over else 0
                if typical and now > updated_at:  # self.latency(), inlined: read on every pick
                    latency = typical + (latency - typical) * math.exp(
                        (updated_at - now) / self.decay
                    )
                if pending > median:
                    # holds more of this client's requests than the median candidate: at most
                    # one request's worth (more is the hot rule's to judge)
                    excess = pending - median
                    latency *= 1.0 + (excess if excess < 1.0 else 1.0) * per_request
            if best is None:
                better = True
            elif hot != best_hot:
                better = hot < best_hot
            elif hot:
                better = pending < best_pending
            elif latency * slack + TIE_FLOOR < best_latency:
                better = True
            elif best_latency * slack + TIE_FLOOR < latency:
                better = False
            else:
                better = pending < best_pending
            if better:
                best, best_endpoint = estimate, endpoint
                best_hot, best_latency, best_pending = hot, latency, pending
        stats.load = load if load > 0.0 else 0.0
        if due is not None:
            for endpoint, estimate in due:
                if estimate is not best:
                    self._queue_probe(endpoint, estimate, now)
        if best is not None:
            best.sent_at = now
        return best_endpoint

    def _queue_probe(self, endpoint: Endpoint, estimate: RttEstimate, now: float) -> None:
        """Queue an active probe of ``endpoint``, counted in flight from now on: until its
        answer it is being measured (picks pass it by) and is not queued again."""
        estimate.sent_at = now
        estimate.in_flight.append(None)
        with self._probes_lock:
            self._probes.append(endpoint)

    def _forget(self, gone: frozenset[Endpoint]) -> None:
        super()._forget(gone)
        if self._probes:
            with self._probes_lock:
                self._probes = [endpoint for endpoint in self._probes if endpoint not in gone]

    def _finish(self, endpoint: Endpoint, latency_s: float, ok: bool) -> None:
        estimate = self._estimates.get(endpoint)
        if estimate is None:
            return
        del estimate.in_flight[-1:]  # _release(), inlined: atomic, a no-op when already empty
        now = self._clock()
        sample = latency_s if ok else max(latency_s, self.failure_penalty)
        state = estimate.state
        stats = estimate.stats
        typical = stats.typical
        if estimate.samples < 2:
            # The first request to a pod also opened its connection (and TLS): the second
            # sample replaces the first.
            estimate.samples += 1
            estimate.state = (sample, now)
        elif state is not None:
            current, updated_at = state
            elapsed = now - updated_at
            if elapsed < 0.0:
                elapsed = 0.0
            elif typical:  # self.latency(), inlined
                current = typical + (current - typical) * math.exp(-elapsed / self.decay)
            weight = -math.expm1(-elapsed / self.smoothing)
            weight = 0.01 if weight < 0.01 else min(weight, MAX_SAMPLE_WEIGHT)
            estimate.state = (current + (sample - current) * weight, now)
        if ok:
            if typical:
                step = min(max(sample - typical, -typical), typical)
                stats.typical = typical + TYPICAL_STEP * step
            else:
                stats.typical = sample
        slow = typical and sample > typical * (1.0 + self.tolerance) + TIE_FLOOR
        estimate.backoff = min(estimate.backoff + 1, MAX_PROBE_BACKOFF) if slow else 0
