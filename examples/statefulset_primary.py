"""Writes go to the StatefulSet's primary ``db-0``; reads are balanced over every replica.

Each StatefulSet pod has a stable DNS name ``<pod>.<service>.<namespace>.svc.<zone>``, so the
primary is addressed by name and reaches exactly that pod, while the service name spreads reads.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import httpx

from headless_resolver import HeadlessResolver, HeadlessTransport, LeastLatency

SERVICE = "db.default.svc.cluster.local"
PRIMARY = f"db-0.{SERVICE}"
PORT = 8080


async def main(
    nameserver: str | None = None, writes: int = 3, reads: int = 9
) -> tuple[Counter[str], Counter[str]]:
    """Send writes to the primary and reads to the service; return (writes, reads) per pod."""
    written: Counter[str] = Counter()
    read: Counter[str] = Counter()
    async with (
        HeadlessResolver([nameserver] if nameserver else None) as resolver,
        httpx.AsyncClient(transport=HeadlessTransport(resolver, LeastLatency())) as client,
    ):
        for n in range(writes):
            response = await client.post(f"http://{PRIMARY}:{PORT}/items", json={"n": n})
            response.raise_for_status()
            written[response.json()["pod"]] += 1
        for _ in range(reads):
            response = await client.get(f"http://{SERVICE}:{PORT}/items")
            response.raise_for_status()
            read[response.json()["pod"]] += 1
    print("writes:", dict(sorted(written.items())))
    print("reads: ", dict(sorted(read.items())))
    return written, read


if __name__ == "__main__":
    asyncio.run(main(os.environ.get("HEADLESS_NAMESERVER")))
