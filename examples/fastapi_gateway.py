"""A small API gateway: a FastAPI service that calls a headless backend through its pods.

One resolver and one client live for the app's lifetime (cache, pools and pod health are
shared by every request). Needs ``pip install 'headless-resolver[examples]'``; run with
``python fastapi_gateway.py`` (listens on :8000) and try ``curl localhost:8000/hello``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException, Request

from headless_resolver import HeadlessResolver, HeadlessTransport, LeastLatency

BACKEND = "http://web.default.svc.cluster.local:8080"


def create_app(nameserver: str | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            HeadlessResolver([nameserver] if nameserver else None) as resolver,
            httpx.AsyncClient(
                base_url=BACKEND, transport=HeadlessTransport(resolver, LeastLatency())
            ) as client,
        ):
            app.state.backend = client
            yield

    app = FastAPI(title="gateway", lifespan=lifespan)

    @app.get("/hello")
    async def hello(request: Request) -> dict[str, Any]:
        client: httpx.AsyncClient = request.app.state.backend
        try:
            response = await client.get("/hello")
        except httpx.HTTPError as exc:
            # Every pod refused or the service is gone: say so instead of a bare 500.
            raise HTTPException(status_code=503, detail=f"backend unavailable: {exc}") from exc
        return {"gateway": "ok", "backend": response.json()}

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(os.environ.get("HEADLESS_NAMESERVER")), host="0.0.0.0", port=8000)
