"""Waiting for an effect that has no event to await: a pod's counters, a background refresh, a
close the other end sees a moment later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Return once ``condition()`` holds; ``TimeoutError`` if it does not within ``within`` s.

    Looks about a thousand times within the bound, so a longer bound polls less often.
    """
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - there is no event to await
            await asyncio.sleep(within / 1000)


def eventually_blocking(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """``eventually`` for a thread without an event loop: sleeps between looks."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {within} s")
        time.sleep(within / 1000)
