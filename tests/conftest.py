"""Shared fixtures. Real DNS servers (Knot DNS, BIND 9) come from ``tests.servers``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator

import pytest

from headless_resolver import HeadlessResolver, HeadlessTransport
from headless_resolver.testing import LocalCluster
from headless_resolver.testing._model import ServiceSpec
from tests.clocks import FakeClock
from tests.servers import (
    AuthoritativeServer,
    BindServer,
    KnotServer,
    ServerFactory,
    ServerUnavailable,
    skip_or_fail,
)


def _server_factory(kind: type[AuthoritativeServer]) -> Iterator[ServerFactory]:
    """Start servers of ``kind`` on demand; all are stopped when the test ends."""
    started: list[AuthoritativeServer] = []

    def make(
        services: Iterable[ServiceSpec] = (), *, ttl: int = 5, domain: str = "cluster.local"
    ) -> AuthoritativeServer:
        try:
            server = kind(services, ttl=ttl, domain=domain)
        except ServerUnavailable as missing:
            skip_or_fail(missing)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.close()


@pytest.fixture
def make_knot_dns() -> Iterator[ServerFactory]:
    """``make_knot_dns(services=..., ttl=..., domain=...)`` -> a running ``KnotServer``."""
    yield from _server_factory(KnotServer)


@pytest.fixture
def make_bind_dns() -> Iterator[ServerFactory]:
    """``make_bind_dns(services=..., ttl=..., domain=...)`` -> a running ``BindServer``."""
    yield from _server_factory(BindServer)


@pytest.fixture
def knot_dns(make_knot_dns: ServerFactory) -> AuthoritativeServer:
    """Knot DNS serving an empty ``cluster.local`` with TTL 5."""
    return make_knot_dns()


@pytest.fixture
def bind_dns(make_bind_dns: ServerFactory) -> AuthoritativeServer:
    """BIND 9 serving an empty ``cluster.local`` with TTL 5."""
    return make_bind_dns()


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    """An empty LocalCluster (DNS TTL 5 s); tests add the services they need. Test modules
    that need another TTL or ready-made services define their own ``cluster``."""
    async with LocalCluster(ttl=5) as local:
        yield local


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def resolver(cluster: LocalCluster, clock: FakeClock) -> AsyncIterator[HeadlessResolver]:
    """A resolver of the ``cluster``'s DNS on the fake ``clock``."""
    async with HeadlessResolver([cluster.nameserver], clock=clock) as resolver:
        yield resolver


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for a synchronous test that drives async code step by step (hypothesis
    runs its examples synchronously)."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(params=["auto", "httpcore"])
def pod_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the test once per pod engine: ``HeadlessTransport``'s default ``engine`` is set to
    ``auto`` (llhttp over HTTP/1.1, httpcore for HTTP/2) and then to ``httpcore``."""
    defaults = HeadlessTransport.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "engine", request.param)
    return str(request.param)
