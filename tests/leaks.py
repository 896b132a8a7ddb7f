"""What a closed resolver or transport must not leave behind: running tasks, open descriptors."""

from __future__ import annotations

import asyncio
import os
from typing import Any


def pending_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of the running loop that have not finished, other than the caller's."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


def open_fds() -> int:
    """Descriptors this process holds open (sockets included)."""
    return len(os.listdir("/proc/self/fd"))
