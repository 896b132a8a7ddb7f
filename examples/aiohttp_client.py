"""aiohttp with pod selection: the resolver plug-in picks a pod for each new connection.

aiohttp balances per connection, not per request; ``force_close=True`` here opens one
connection per request so the spread is visible. Keep-alive clients see it per connection.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import aiohttp

from headless_resolver import HeadlessAiohttpResolver, HeadlessResolver, RoundRobin

SERVICE = "web.default.svc.cluster.local"
PORT = 8080


async def main(nameserver: str | None = None, requests: int = 6) -> Counter[str]:
    """Send ``requests`` GETs through aiohttp; return answers per pod."""
    served: Counter[str] = Counter()
    async with HeadlessResolver([nameserver] if nameserver else None) as resolver:
        connector = aiohttp.TCPConnector(
            resolver=HeadlessAiohttpResolver(resolver, RoundRobin()),
            use_dns_cache=False,
            force_close=True,
        )
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(requests):
                async with session.get(f"http://{SERVICE}:{PORT}/") as response:
                    response.raise_for_status()
                    served[(await response.json())["pod"]] += 1
    print(dict(sorted(served.items())))
    return served


if __name__ == "__main__":
    asyncio.run(main(os.environ.get("HEADLESS_NAMESERVER")))
