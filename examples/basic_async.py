"""Resolve a headless Service, then spread requests over its pods with httpx.

In a pod: ``python basic_async.py`` (nameserver from /etc/resolv.conf).
Elsewhere: ``HEADLESS_NAMESERVER=127.0.0.1:5353 python basic_async.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import httpx

from headless_resolver import HeadlessResolver, HeadlessTransport, RoundRobin

SERVICE = "web.default.svc.cluster.local"


async def main(nameserver: str | None = None, requests: int = 6) -> Counter[str]:
    """Print the pods behind SERVICE, send ``requests`` GETs; return answers per pod."""
    async with HeadlessResolver([nameserver] if nameserver else None) as resolver:
        endpoints = await resolver.resolve(SERVICE, port="http")
        for endpoint in endpoints:
            print(f"{endpoint.hostname}  {endpoint.netloc()}")

        # The URL keeps the service name; its port comes from the SRV record _http._tcp.
        transport = HeadlessTransport(resolver, RoundRobin(), ports={SERVICE: "http"})
        served: Counter[str] = Counter()
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(requests):
                response = await client.get(f"http://{SERVICE}/")
                served[response.json()["pod"]] += 1
    print(dict(sorted(served.items())))
    return served


if __name__ == "__main__":
    asyncio.run(main(os.environ.get("HEADLESS_NAMESERVER")))
