"""A plain (threaded, no asyncio) program using httpx.Client: Flask, Django, scripts, workers.

The transport runs the resolver on a background thread, which stops when the client closes.
A transport closes only what it made: a resolver made here (to name the nameserver) is closed
here, once no client uses it. Many threads may share one client.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import httpx

from headless_resolver import HeadlessResolver, RoundRobin, SyncHeadlessTransport

SERVICE = "web.default.svc.cluster.local"
PORT = 8080


def main(nameserver: str | None = None, requests: int = 6) -> Counter[str]:
    """Send ``requests`` GETs from this thread; return answers per pod."""
    resolver = HeadlessResolver([nameserver] if nameserver else None)
    served: Counter[str] = Counter()
    try:
        transport = SyncHeadlessTransport(resolver, RoundRobin())
        with httpx.Client(transport=transport, timeout=5.0) as client:
            for _ in range(requests):
                response = client.get(f"http://{SERVICE}:{PORT}/")
                response.raise_for_status()
                served[response.json()["pod"]] += 1
    finally:
        asyncio.run(resolver.aclose())
    print(dict(sorted(served.items())))
    return served


if __name__ == "__main__":
    main(os.environ.get("HEADLESS_NAMESERVER"))
