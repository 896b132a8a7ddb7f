"""The clients compared: HeadlessTransport with each strategy, plain httpx, aiohttp.

Each client is opened as a ``Send``: one GET that returns the pod that answered (its ``x-pod``
header) and raises on any failure. Every request carries an ``x-user`` header drawn from a
fixed population of users, the key ``Sticky`` hashes; the other clients send it too, so all
do the same work.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx

from headless_resolver import (
    HeadlessResolver,
    HeadlessTransport,
    LeastLatency,
    RoundRobin,
    Sticky,
    Strategy,
)

Send = Callable[[], Awaitable[str]]

WIDE = httpx.Limits(max_connections=100, max_keepalive_connections=100)
DEFAULT = httpx.Limits(max_connections=100, max_keepalive_connections=20)
USERS = 1000
AIOHTTP_DNS_TTL = 10
"""aiohttp's default ``ttl_dns_cache``, in seconds."""

STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "round-robin": RoundRobin,
    "least-latency": LeastLatency,
    "sticky": lambda: Sticky(key="x-user"),
}
HEADLESS = tuple(f"headless/{name}" for name in STRATEGIES)
ALTERNATIVES = ("httpx", "aiohttp")
CLIENTS = (*HEADLESS, *ALTERNATIVES)


def _headers(rng: random.Random, close: bool) -> dict[str, str]:
    headers = {"x-user": f"user-{rng.randrange(USERS)}"}
    if close:
        headers["connection"] = "close"
    return headers


def _httpx_send(
    client: httpx.AsyncClient, url: str, rng: random.Random, close_connections: bool
) -> Send:
    """The ``Send`` of an httpx client, with or without ``HeadlessTransport`` under it."""

    async def send() -> str:
        response = await client.get(url, headers=_headers(rng, close_connections))
        response.raise_for_status()
        return response.headers["x-pod"]

    return send


@contextlib.asynccontextmanager
async def open_client(
    kind: str,
    url: str,
    nameserver: str | None,
    *,
    limits: httpx.Limits = WIDE,
    close_connections: bool = False,
    resolver_options: dict[str, Any] | None = None,
    seed: int = 0,
) -> AsyncIterator[Send]:
    """A ``Send`` for ``url`` with client ``kind`` (one of ``CLIENTS``).

    ``close_connections`` sends ``Connection: close``, so every request needs a new connection
    (and, for the plain clients, a name lookup). Plain clients resolve through the system
    resolver; the caller decides what that is (see ``_targets``).
    """
    rng = random.Random(seed)
    if kind.startswith("headless/"):
        strategy = STRATEGIES[kind.removeprefix("headless/")]()
        nameservers = None if nameserver is None else [nameserver]
        async with (
            HeadlessResolver(nameservers, **(resolver_options or {})) as resolver,
            httpx.AsyncClient(
                transport=HeadlessTransport(resolver, strategy, limits=limits), trust_env=False
            ) as client,
        ):
            yield _httpx_send(client, url, rng, close_connections)
    elif kind == "httpx":
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
            yield _httpx_send(client, url, rng, close_connections)
    elif kind == "aiohttp":
        connector = aiohttp.TCPConnector(
            resolver=aiohttp.ThreadedResolver(),
            use_dns_cache=True,
            ttl_dns_cache=AIOHTTP_DNS_TTL,
            limit=limits.max_connections or 0,
            force_close=close_connections,
        )
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:

            async def send_aiohttp() -> str:
                async with session.get(url, headers=_headers(rng, False)) as response:
                    await response.read()
                    response.raise_for_status()
                    return response.headers["x-pod"]

            yield send_aiohttp
    else:
        raise ValueError(f"unknown client {kind!r}; expected one of {', '.join(CLIENTS)}")
