"""One service's EndpointSlices kept current: list, then watch, as the API defines it.

- List with ``labelSelector=kubernetes.io/service-name=NAME``, ``limit`` pages and
  ``continue``; a continue token that expired (410) restarts the list.
- Watch from the list's ``resourceVersion`` with ``allowWatchBookmarks=true``; every event and
  bookmark moves the resume point, so a dropped connection or a server-side timeout resumes
  from the last version seen, never replaying or missing an event.
- ``410 Gone`` (an HTTP status or an ERROR event): the resume point is too old; re-list
  (never re-watch from the same version: that only fails again).
- Other errors: retry with full-jitter exponential backoff. The first error of a run is retried
  after a short jittered pause without reporting it (a dropped connection is routine); from the
  second one on ``on_failure`` is told, so the last good set is served as stale.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from headless_resolver._kubernetes._client import ApiError, Gone, KubeClient, WatchEvent
from headless_resolver._kubernetes._slices import ParsedSlice

logger = logging.getLogger("headless_resolver")


@dataclass(slots=True)
class WatchStats:
    lists: int = 0
    """Complete lists (the first and every re-list)."""
    pages: int = 0
    watches: int = 0
    """Watch requests (the first and every resume)."""
    events: int = 0
    bookmarks: int = 0
    gone: int = 0
    """410 answers, each followed by a re-list."""
    errors: int = 0


class SliceWatch:
    """The slices of ``service`` in ``namespace``, by slice name, kept by ``run()``.

    Parameters: ``client``; ``on_change`` (called after the slices changed, or once they can
    be trusted again after a failure); ``on_failure`` (called with the error while the API
    cannot be read); ``page_limit``; ``watch_timeout`` (seconds the server keeps one watch
    open); ``backoff`` (first and longest pause between failed attempts); ``rng``.
    """

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        service: str,
        *,
        on_change: Callable[[SliceWatch], None],
        on_failure: Callable[[SliceWatch, ApiError], None],
        page_limit: int = 500,
        watch_timeout: int = 300,
        backoff: tuple[float, float] = (0.2, 5.0),
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.service = service
        self.slices: dict[str, ParsedSlice] = {}
        self.listed = asyncio.Event()
        """Set once the first list completed, or failed (then ``error`` says why)."""
        self.error: ApiError | None = None
        """The last error, while the slices cannot be trusted to be current."""
        self.resource_version: str | None = None
        self.stats = WatchStats()
        self._on_change = on_change
        self._on_failure = on_failure
        self._page_limit = page_limit
        self._watch_timeout = watch_timeout
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._failures = 0
        """Errors since the API last answered."""

    def __repr__(self) -> str:
        return f"<SliceWatch {self.service}.{self.namespace} rv={self.resource_version}>"

    async def run(self) -> None:
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                    self._failures = 0
                    if self.error is not None:
                        logger.warning("%s.%s: listed again", self.service, self.namespace)
                    self.error = None
                    self._on_change(self)
                await self._watch()
            except Gone as error:
                self.stats.gone += 1
                logger.info("%s.%s: %s; listing again", self.service, self.namespace, error)
                self.resource_version = None
            except ApiError as error:
                self.stats.errors += 1
                self._failures += 1
                failures = self._failures
                if failures > 1 or not self.listed.is_set():
                    self._failed(error)
                await asyncio.sleep(self._rng.uniform(0, backoff_ceiling(failures, *self._backoff)))

    async def _list(self) -> None:
        items: list[dict[str, object]] = []
        token: str | None = None
        while True:
            try:
                page = await self.client.list_slices(
                    self.namespace, self.service, limit=self._page_limit, continue_token=token
                )
            except Gone:
                if token is None:
                    raise
                items, token = [], None  # the continue token expired: list from the start
                continue
            self.stats.pages += 1
            items.extend(page.items)
            token = page.continue_token
            if token is None:
                break
        self.stats.lists += 1
        previous = self.slices
        slices: dict[str, ParsedSlice] = {}
        for item in items:
            parsed = ParsedSlice(item)
            old = previous.get(parsed.name)
            keep = old is not None and old.resource_version == parsed.resource_version
            slices[parsed.name] = old if keep and old is not None else parsed
        self.slices = slices
        self.resource_version = page.resource_version
        self.listed.set()

    async def _watch(self) -> None:
        assert self.resource_version is not None
        self.stats.watches += 1
        events = self.client.watch_slices(
            self.namespace,
            self.service,
            self.resource_version,
            timeout_seconds=self._watch_timeout,
            on_open=self._reopened,
        )
        async for event in events:
            self._apply(event)

    def _apply(self, event: WatchEvent) -> None:
        version = event.resource_version
        if event.type == "BOOKMARK":
            self.stats.bookmarks += 1
        else:
            self.stats.events += 1
            if event.type == "DELETED":
                name = (event.object.get("metadata") or {}).get("name", "")
                self.slices.pop(str(name), None)
            else:
                parsed = ParsedSlice(event.object)
                self.slices[parsed.name] = parsed
        if version:
            self.resource_version = version
        if event.type != "BOOKMARK":
            self._on_change(self)

    def _reopened(self) -> None:
        """A watch was accepted: the slices are current again, say so if they were not."""
        self._failures = 0
        if self.error is not None:
            logger.warning("%s.%s: watching again", self.service, self.namespace)
            self.error = None
            self._on_change(self)

    def _failed(self, error: ApiError) -> None:
        if self.error is None:
            logger.warning(
                "%s.%s: cannot watch EndpointSlices: %s", self.service, self.namespace, error
            )
        self.error = error
        self.listed.set()
        self._on_failure(self, error)


def backoff_ceiling(failures: int, first: float, longest: float) -> float:
    """The longest pause after ``failures`` errors in a row; the pause is drawn uniformly
    below it (full jitter). The first error is a routine drop: a short pause, a quarter of
    ``first``; then ``first``, doubling up to ``longest``."""
    if failures <= 1:
        return first / 4
    return min(longest, first * 2.0 ** (failures - 2))
