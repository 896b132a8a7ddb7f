"""Keep each user on one pod (session affinity) by consistent hashing of a request header.

When pods come or go, only the users of those pods move: the rest keep their pod and its
warm session cache.
"""

from __future__ import annotations

import asyncio
import os

import httpx

from headless_resolver import HeadlessResolver, HeadlessTransport, Sticky

SERVICE = "web.default.svc.cluster.local"
PORT = 8080
USERS = [f"user-{n}" for n in range(8)]


async def main(nameserver: str | None = None, rounds: int = 3) -> dict[str, set[str]]:
    """Each user sends ``rounds`` requests; return the pods that answered each user."""
    pods_by_user: dict[str, set[str]] = {user: set() for user in USERS}
    async with (
        HeadlessResolver([nameserver] if nameserver else None) as resolver,
        httpx.AsyncClient(transport=HeadlessTransport(resolver, Sticky(key="x-user"))) as client,
    ):
        for _ in range(rounds):
            for user in USERS:
                response = await client.get(f"http://{SERVICE}:{PORT}/", headers={"x-user": user})
                pods_by_user[user].add(response.json()["pod"])
    for user, pods in pods_by_user.items():
        print(f"{user} -> {', '.join(sorted(pods))}")
    return pods_by_user


if __name__ == "__main__":
    asyncio.run(main(os.environ.get("HEADLESS_NAMESERVER")))
