"""The library's loggers, one per layer, and warnings that repeat at most once per interval.

``headless_resolver.resolver`` (DNS answers, failures, stale sets), ``.transport`` (retries,
pools) and ``.health`` (ejections, readmissions) are children of ``headless_resolver``, so
configuring that one logger configures all three.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

resolver_log = logging.getLogger("headless_resolver.resolver")
transport_log = logging.getLogger("headless_resolver.transport")
health_log = logging.getLogger("headless_resolver.health")

WARNING_INTERVAL = 60.0
"""Seconds between two warnings about the same thing (a name, a pod) while it persists."""


class RateLimitedLog:
    """Logs each ``key`` at most once per ``interval``; the next line says how many were held.

    A DNS outage fails every refresh of every name in use; one line per name per minute says
    as much as thousands. Keys are bounded (least recently logged forgotten first), so a stream
    of distinct keys cannot grow memory.
    """

    __slots__ = ("_clock", "_interval", "_last", "_logger", "_max_keys")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = WARNING_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._last: OrderedDict[Hashable, list[float]] = OrderedDict()
        """key -> [when last logged, lines held back since]."""

    def log(self, level: int, key: Hashable, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged less than ``interval`` ago."""
        if not self._logger.isEnabledFor(level):
            return False
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval:
            last[1] += 1
            return False
        held, since = (0, 0.0) if last is None else (int(last[1]), now - last[0])
        self._last[key] = [now, 0]
        self._last.move_to_end(key)
        while len(self._last) > self._max_keys:
            self._last.popitem(last=False)
        if held:
            message += " (%d similar lines held back in the last %.0f s)"
            args = (*args, held, since)
        self._logger.log(level, message, *args)
        return True

    def warning(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)

    def forget(self, key: Hashable) -> None:
        """The condition ended: its next occurrence logs at once."""
        self._last.pop(key, None)
