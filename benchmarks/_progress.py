"""A progress bar on stderr: one updating line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts finished steps of a known total; ``step(label)`` names the one starting next."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._width = width
        self._started = time.monotonic()

    def step(self, label: str) -> None:
        """Report ``label`` as the step now running (the previous one is done)."""
        self._show(label)
        self.done = min(self.done + 1, self.total)

    def finish(self) -> None:
        self.done = self.total
        self._show("done")
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()

    def _show(self, label: str) -> None:
        elapsed = time.monotonic() - self._started
        filled = self._width * self.done // self.total
        bar = "#" * filled + "-" * (self._width - filled)
        line = f"[{bar}] {self.done}/{self.total} {elapsed:5.0f}s {label}"
        if self._tty:
            self._stream.write("\r\x1b[2K" + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
