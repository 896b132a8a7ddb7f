"""Per-name cache entries: fresh, refresh-due, stale, in grace, negative.

Everything here is synchronous and takes ``now`` from the caller's clock, so the freshness
rules can be exercised with a fake clock and no network.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from cachetools import LRUCache

from headless_resolver._endpoints import Endpoint, EndpointSet
from headless_resolver._errors import InvalidArgument, ResolutionError, ServiceNotFound

NEVER = -math.inf


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long answers live: the resolver's options of the same names (README, "Options",
    says why each default is what it is)."""

    min_ttl: float = 1.0
    max_ttl: float = 300.0
    negative_ttl_cap: float = 30.0
    stale_ttl: float = 300.0
    negative_grace: float = 10.0
    refresh_ahead: float | None = 0.8
    """Refresh at this fraction of the TTL; None: only when a caller finds the entry expired."""
    jitter: float = 0.1
    """Relative spread of the refresh point, so a fleet of clients does not refresh in step."""

    def __post_init__(self) -> None:
        for field_name in ("min_ttl", "max_ttl", "negative_ttl_cap", "stale_ttl"):
            value = getattr(self, field_name)
            if not isinstance(value, int | float) or value < 0:
                raise InvalidArgument(f"{field_name}: {value!r} must be a number >= 0")
        if self.min_ttl <= 0 or self.negative_ttl_cap <= 0:
            raise InvalidArgument(
                "min_ttl and negative_ttl_cap must be positive: a zero TTL requeries without pause"
            )
        if self.min_ttl > self.max_ttl:
            raise InvalidArgument(f"min_ttl {self.min_ttl} is above max_ttl {self.max_ttl}")
        if self.negative_grace < 0:
            raise InvalidArgument(f"negative_grace: {self.negative_grace!r} must be >= 0")
        if self.refresh_ahead is not None and not 0 < self.refresh_ahead < 1:
            raise InvalidArgument(
                f"refresh_ahead: {self.refresh_ahead!r} must be in (0, 1) or None"
            )
        if not 0 <= self.jitter < 1:
            raise InvalidArgument(f"jitter: {self.jitter!r} must be in [0, 1)")

    def positive_ttl(self, ttl: float | None) -> float:
        if ttl is None:
            return self.min_ttl
        return min(max(ttl, self.min_ttl), self.max_ttl)

    def negative_ttl(self, ttl: float | None) -> float:
        """The SOA-derived negative TTL, at least ``min_ttl``, capped; without an SOA,
        ``min_ttl`` (RFC 2308 §5)."""
        return min(self.min_ttl if ttl is None else max(ttl, self.min_ttl), self.negative_ttl_cap)

    def refresh_delay(self, ttl: float, rng: random.Random) -> float:
        if self.refresh_ahead is None:
            return ttl
        spread = 1.0 + rng.uniform(-self.jitter, self.jitter)
        return min(ttl * self.refresh_ahead * spread, ttl)


class Entry:
    """What we know about one absolute name (and port): the set, its timers, its failures.

    ``hot_until`` is the only field ``resolve()`` reads on a hit: before it, ``endpoints`` is
    fresh and no refresh is due, so the answer needs no further thought.
    """

    __slots__ = (
        "endpoints",
        "error",
        "hot_until",
        "last_used",
        "name",
        "negative_since",
        "not_found",
        "refresh_at",
        "serve_until",
        "served",
        "stale_until",
        "ttl",
    )

    def __init__(self, name: str, now: float) -> None:
        self.name = name
        self.endpoints = EndpointSet(name)
        """The last published set; version 0 and empty until the first answer."""
        self.served: EndpointSet | None = None
        """What to answer while ``now < serve_until``; None with ``not_found``: negative."""
        self.serve_until = NEVER
        self.hot_until = NEVER
        self.refresh_at = NEVER
        self.stale_until = NEVER
        self.negative_since: float | None = None
        self.not_found: str | None = None
        self.error: ResolutionError | None = None
        self.last_used = now
        self.ttl: float | None = None
        """The clamped TTL of the last positive answer."""

    def __repr__(self) -> str:
        return f"<Entry {self.name} {self.endpoints!r} serve_until={self.serve_until}>"

    def read(self, now: float) -> EndpointSet | None:
        """The set to answer with at ``now``, or None when DNS must be asked.

        Raises ServiceNotFound while a negative answer is fresh.
        """
        if now < self.serve_until:
            if self.served is None:
                raise ServiceNotFound(self.not_found or f"{self.name}: not found", name=self.name)
            return self.served
        if self.error is not None and self.endpoints and now < self.stale_until:
            self.served = self.endpoints.replace(stale=True)
            self.serve_until = self.stale_until
            return self.served
        return None

    def stale(self, now: float) -> EndpointSet | None:
        """The last good set marked stale, while it may still be served (RFC 8767), else None.

        For callers that arrive after expiry while a refresh is still out: with refresh-ahead
        on, DNS has then been slow since the refresh point already (the default ``0.8`` leaves
        a fifth of the TTL), and the request should not wait for it too.
        """
        if self.endpoints and now < self.stale_until:
            return self.endpoints.replace(stale=True)
        return None

    def record_answer(
        self,
        endpoints: Iterable[Endpoint],
        ttl: float | None,
        now: float,
        policy: CachePolicy,
        rng: random.Random,
    ) -> bool:
        """Store a positive answer; True when the content (ignoring order) changed."""
        ttl = policy.positive_ttl(ttl)
        expires = now + ttl
        current = self.endpoints
        found = EndpointSet(self.name, endpoints, version=current.version + 1, expires_at=expires)
        changed = not (current and current.same_members(found))  # hashes each endpoint once
        current = found if changed else current.replace(expires_at=expires, stale=False)
        self.endpoints = self.served = current
        self.ttl = ttl
        self.serve_until = expires
        self.stale_until = expires + policy.stale_ttl
        self.refresh_at = now + policy.refresh_delay(ttl, rng)
        self.hot_until = self.refresh_at
        self.negative_since = None
        self.not_found = None
        self.error = None
        return changed

    def record_negative(
        self, message: str, negative_ttl: float | None, now: float, policy: CachePolicy
    ) -> bool:
        """Store NXDOMAIN / an empty answer; True when this empties a non-empty set.

        A non-empty set survives negative answers for ``policy.negative_grace``, served as
        stale, with a re-check every negative TTL.
        """
        ttl = policy.negative_ttl(negative_ttl)
        self.error = None
        self.hot_until = NEVER
        if self.endpoints:
            if self.negative_since is None:
                self.negative_since = now
            grace_end = self.negative_since + policy.negative_grace
            if now < grace_end:
                self.served = self.endpoints.replace(stale=True)
                self.serve_until = grace_end
                self.refresh_at = min(now + ttl, grace_end)
                return False
        changed = bool(self.endpoints)
        if changed:
            self.endpoints = EndpointSet(
                self.name, (), version=self.endpoints.version + 1, expires_at=now + ttl
            )
        self.served = None
        self.not_found = message
        self.negative_since = None
        self.serve_until = self.refresh_at = now + ttl
        return changed

    def expire(self) -> None:
        """Stop serving the current answer as fresh (its source says it can no longer vouch
        for it): from now on it is read as stale, or asked for again."""
        self.serve_until = self.hot_until = NEVER

    def record_failure(self, error: ResolutionError, now: float) -> bool:
        """Remember a failed refresh; True when the last good set can still be served."""
        self.error = error
        self.hot_until = NEVER
        return bool(self.endpoints) and now < self.stale_until


E = TypeVar("E", bound=Entry)


class EntryStore(LRUCache[Hashable, E]):
    """Bounded entries, least recently refreshed or missed evicted first.

    Hits do not touch the LRU order (that would cost the hot path); names in use are refreshed,
    and every refresh re-stores its entry, so idle names are the ones that fall out.
    """

    def __init__(self, maxsize: int, on_evict: Callable[[E], None]) -> None:
        super().__init__(maxsize)
        self._on_evict = on_evict

    def popitem(self) -> tuple[Hashable, E]:
        key, entry = super().popitem()
        self._on_evict(entry)
        return key, entry
