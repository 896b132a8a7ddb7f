"""Slow start: a pod that joins a set under traffic takes its share gradually.

A new pod has cold caches, an unwarmed JIT and empty connection pools; sending it a full share
at once makes its first requests the slowest the service serves. Envoy's slow start ramps the
pod's weight instead, and so does this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from headless_resolver._errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class SlowStart:
    """How a pod that joined a set ramps up to its full share (Envoy's formula).

    Within ``window`` seconds of joining, a pod takes ``max(min_weight_percent / 100,
    (age / window) ** (1 / aggression))`` of its share: linear with ``aggression=1``, faster at
    first with a larger one. Pods in the first set a strategy sees are not slowed: to this
    client they are all new, and slowing all of them slows none.

    Parameters:
        window: seconds the ramp lasts (> 0).
        aggression: the ramp's curvature (> 0); ``1.0`` is linear.
        min_weight_percent: the share a pod takes at least, from its first moment (0..100).
    """

    window: float
    aggression: float = 1.0
    min_weight_percent: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window) and self.window > 0):
            raise InvalidArgument(f"SlowStart(window=...) must be > 0 seconds, got {self.window!r}")
        if not (math.isfinite(self.aggression) and self.aggression > 0):
            raise InvalidArgument(f"SlowStart(aggression=...) must be > 0, got {self.aggression!r}")
        if not 0 <= self.min_weight_percent <= 100:
            raise InvalidArgument(
                f"SlowStart(min_weight_percent=...) must be within 0..100, "
                f"got {self.min_weight_percent!r}"
            )

    def factor(self, age: float) -> float:
        """The fraction of its share a pod ``age`` seconds after joining takes (1 once ramped)."""
        if age >= self.window:
            return 1.0
        ramp: float = (max(age, 0.0) / self.window) ** (1.0 / self.aggression)
        return max(self.min_weight_percent / 100.0, ramp)
