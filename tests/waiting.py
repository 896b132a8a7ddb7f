"""Waiting for an effect that has no event to await: a pod's counters, a background refresh, a
close the other end sees a moment later."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Return once ``condition()`` holds; ``TimeoutError`` if it does not within ``within`` s.

    Looks about a thousand times within the bound, so a longer bound polls less often.
    """
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - there is no event to await
            await asyncio.sleep(within / 1000)
