"""Load-balancing strategies: how a client picks the pod for each request."""

from headless_resolver._strategies._base import BaseStrategy, Strategy
from headless_resolver._strategies._least_latency import LeastLatency
from headless_resolver._strategies._peak_ewma import PeakEwma
from headless_resolver._strategies._round_robin import RoundRobin
from headless_resolver._strategies._slow_start import SlowStart
from headless_resolver._strategies._sticky import Sticky

__all__ = [
    "BaseStrategy",
    "LeastLatency",
    "PeakEwma",
    "RoundRobin",
    "SlowStart",
    "Sticky",
    "Strategy",
]
