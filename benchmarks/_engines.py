"""Candidate pod engines, each as an httpx transport over the same pods, for ``bench_engine``.

How the engine under ``HeadlessTransport`` was chosen: every candidate serves
``httpx.AsyncClient`` requests sent to the pods' addresses in turn, so the front end is the
same and only the connection engine differs. ``httpx-aiohttp`` and ``httpcore2`` are measured
when installed (``pip install httpx-aiohttp httpcore2``); they are not dependencies.
"""

from __future__ import annotations

import importlib.util
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from headless_resolver._transports._engine import PodConnectionPool

WIDE = httpx.Limits(max_connections=100, max_keepalive_connections=100)


class PerPod(httpx.AsyncBaseTransport):
    """One ``PodConnectionPool`` per (host, port), as ``HeadlessTransport`` keeps them."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, int | None], PodConnectionPool] = {}
        self._tls = ssl.create_default_context()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.url.host, request.url.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = PodConnectionPool(verify=self._tls, limits=WIDE)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()


class _Httpcore2Stream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class Httpcore2Transport(httpx.AsyncBaseTransport):
    """httpx's ``AsyncHTTPTransport`` mapping, over the ``httpcore2`` fork's pool."""

    def __init__(self) -> None:
        import httpcore2

        self._httpcore2 = httpcore2
        self._pool = httpcore2.AsyncConnectionPool(
            max_connections=WIDE.max_connections,
            max_keepalive_connections=WIDE.max_keepalive_connections,
            keepalive_expiry=WIDE.keepalive_expiry,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        pod_request = self._httpcore2.Request(
            request.method,
            self._httpcore2.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        response = await self._pool.handle_async_request(pod_request)
        return httpx.Response(
            response.status,
            headers=response.headers,
            stream=_Httpcore2Stream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def _aiohttp_transport() -> httpx.AsyncBaseTransport:
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(limits=WIDE)


def candidates() -> dict[str, Callable[[], httpx.AsyncBaseTransport]]:
    """The engines installed here, by name."""
    found: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
        "httpcore (httpx.AsyncHTTPTransport)": lambda: httpx.AsyncHTTPTransport(limits=WIDE),
        "asyncio + llhttp (PodConnectionPool)": PerPod,
    }
    if importlib.util.find_spec("httpcore2") is not None:
        found["httpcore2 2.x fork"] = Httpcore2Transport
    if importlib.util.find_spec("httpx_aiohttp") is not None:
        found["aiohttp connector (httpx-aiohttp)"] = _aiohttp_transport
    return found
