"""A clock the test moves: TTLs, ejections and latency estimates pass when a test says so."""

from __future__ import annotations


class FakeClock:
    """Stands in for ``time.monotonic``; starts at 1000 s so no instant is zero."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
