"""Every script in examples/ runs, unchanged, against a LocalCluster and does what it says."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import uvicorn

from headless_resolver.testing import LocalCluster

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def web(cluster: LocalCluster) -> LocalCluster:
    """The examples' default backend: web.default.svc.cluster.local, 3 pods on port 8080."""
    await cluster.add_service("web", pods=3, port=8080, port_name="http")
    return cluster


def served_by_pod(cluster: LocalCluster, service: str) -> dict[str, int]:
    return {pod.hostname: pod.requests for pod in cluster.pods(service)}


async def test_basic_async_spreads_requests_evenly_and_lists_the_pods(
    web: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    served = await load_example("basic_async").main(web.nameserver, requests=6)

    assert served == {"web-0": 2, "web-1": 2, "web-2": 2}
    assert served_by_pod(web, "web") == served
    listing = capsys.readouterr().out
    for pod in web.pods("web"):
        assert f"{pod.hostname}  {pod.ip}:8080" in listing


async def test_statefulset_primary_takes_every_write_and_reads_are_spread(
    cluster: LocalCluster,
) -> None:
    await cluster.add_service("db", pods=3, port=8080, port_name="http")

    written, read = await load_example("statefulset_primary").main(
        cluster.nameserver, writes=3, reads=9
    )

    assert written == {"db-0": 3}
    assert sum(read.values()) == 9
    assert len(read) >= 2, f"reads all went to one pod: {read}"
    served = served_by_pod(cluster, "db")
    assert served == {pod: written[pod] + read[pod] for pod in served}


async def test_sticky_sessions_keep_each_user_on_one_pod(web: LocalCluster) -> None:
    pods_by_user = await load_example("sticky_sessions").main(web.nameserver, rounds=3)

    assert all(len(pods) == 1 for pods in pods_by_user.values()), pods_by_user
    assert len(set().union(*pods_by_user.values())) >= 2, "every user hashed to one pod"
    assert sum(served_by_pod(web, "web").values()) == 3 * len(pods_by_user)


async def test_aiohttp_client_spreads_connections_over_the_pods(web: LocalCluster) -> None:
    served = await load_example("aiohttp_client").main(web.nameserver, requests=6)

    assert served == {"web-0": 2, "web-1": 2, "web-2": 2}
    assert served_by_pod(web, "web") == served


async def test_sync_client_spreads_requests_from_plain_threads(web: LocalCluster) -> None:
    example = load_example("sync_client")

    served = await asyncio.to_thread(example.main, web.nameserver, requests=6)

    assert served == {"web-0": 2, "web-1": 2, "web-2": 2}
    assert served_by_pod(web, "web") == served


@pytest.fixture
async def gateway(web: LocalCluster) -> AsyncIterator[str]:
    """The FastAPI example served by uvicorn on 127.0.0.1; yields its base URL."""
    app = load_example("fastapi_gateway").create_app(web.nameserver)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_fastapi_gateway_answers_from_the_backend_pods(
    web: LocalCluster, gateway: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        answers = [(await client.get("/hello")) for _ in range(6)]

    assert [a.status_code for a in answers] == [200] * 6
    backends = {a.json()["backend"]["pod"] for a in answers}
    assert backends <= {"web-0", "web-1", "web-2"}
    assert all(a.json()["backend"]["host"].startswith("web.default.svc") for a in answers)
    assert sum(served_by_pod(web, "web").values()) == 6


async def test_fastapi_gateway_routes_around_a_refusing_pod(
    web: LocalCluster, gateway: str
) -> None:
    down = web.pods("web")[0]
    down.refuse = True
    async with httpx.AsyncClient(base_url=gateway) as client:
        answers = [(await client.get("/hello")) for _ in range(6)]

    assert [a.status_code for a in answers] == [200] * 6
    assert {a.json()["backend"]["pod"] for a in answers} <= {"web-1", "web-2"}
    assert down.requests == 0


async def test_fastapi_gateway_says_503_when_the_backend_is_gone(
    web: LocalCluster, gateway: str
) -> None:
    await web.remove_service("web")
    async with httpx.AsyncClient(base_url=gateway) as client:
        answer = await client.get("/hello")

    assert answer.status_code == 503
    assert "backend unavailable" in answer.json()["detail"]


@pytest.mark.parametrize(
    "script",
    ["basic_async", "statefulset_primary", "sticky_sessions", "aiohttp_client", "sync_client"],
)
async def test_example_runs_as_a_script_with_the_nameserver_from_the_environment(
    cluster: LocalCluster, script: str
) -> None:
    await cluster.add_service("web", pods=3, port=8080, port_name="http")
    await cluster.add_service("db", pods=3, port=8080, port_name="http")
    env = {**os.environ, "HEADLESS_NAMESERVER": cluster.nameserver}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / f"{script}.py"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)

    assert process.returncode == 0, stderr.decode()
    assert "-0" in stdout.decode()
    served = sum(pod.requests for name in ("web", "db") for pod in cluster.pods(name))
    assert served > 0
