"""``headless-resolver top``: the live view of one name, against a real cluster DNS."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from headless_resolver import HeadlessResolver, HeadlessTransport, RoundRobin, cli
from headless_resolver._top import CLEAR, render_traffic, run_top
from headless_resolver.testing import LocalCluster
from tests.waiting import eventually

COMMAND = Path(sys.executable).with_name("headless-resolver")
FQDN = "web.default.svc.cluster.local"


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    async with LocalCluster(ttl=1) as local:
        await local.add_service("web", pods=3, port=8080, port_name="http")
        yield local


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_on_a_terminal_the_view_is_redrawn_with_pods_and_recent_changes(
    cluster: LocalCluster,
) -> None:
    screen = Terminal()
    async with HeadlessResolver([cluster.nameserver]) as resolver:
        await resolver.resolve("web", port="http")
        await cluster.scale("web", 4)
        await eventually(lambda: len(resolver.peek("web", port="http") or ()) == 4)
        await run_top(
            resolver,
            "web",
            port="http",
            proto="tcp",
            out=screen,
            interval=0.01,
            iterations=2,
        )

    frames = screen.getvalue().split(CLEAR)
    assert frames[0] == ""
    assert len(frames) == 3
    lines = frames[-1].splitlines()
    assert lines[0].startswith("_http._tcp.web.default.svc.cluster.local  v2  4 endpoints")
    assert lines[0].endswith("fresh")
    assert lines[1].startswith("DNS: ")
    assert "failures 0" in lines[1]
    assert lines[3].split() == ["ADDRESS", "PORT", "POD", "JOINED"]
    pods = cluster.pods("web")
    table = [line.split() for line in lines[4:8]]
    assert [(row[0], row[1], row[2]) for row in table] == [
        (pod.ip, "8080", pod.hostname)
        for pod in sorted(pods, key=lambda p: int(p.ip.split(".")[-1]))
    ]
    assert lines[9] == "recent changes (+1 -0 in all):"
    assert lines[10].split()[2:] == ["+", f"{pods[3].ip}:8080", "web-3"]


async def test_when_not_a_terminal_it_prints_one_line_per_interval(
    cluster: LocalCluster,
) -> None:
    code, out, err = await run(
        "top", FQDN, "--nameserver", cluster.nameserver, "-n", "3", "--interval", "0.1"
    )
    assert (code, err) == (cli.EXIT_OK, "")
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(f"{FQDN}  3 endpoints  v1  ttl " in line for line in lines), lines
    assert CLEAR not in out


async def test_json_follows_a_scale_up_and_ctrl_c_exits_cleanly(cluster: LocalCluster) -> None:
    process = await asyncio.create_subprocess_exec(
        str(COMMAND),
        *("top", FQDN, "--port", "http", "--json", "--interval", "0.1"),
        *("--nameserver", cluster.nameserver),
        env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        first = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=10))
        await cluster.scale("web", 4)
        async with asyncio.timeout(10):
            while True:
                latest = json.loads(await process.stdout.readline())
                if latest["added"]:
                    break
    finally:
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), timeout=10)

    assert len(first["endpoints"]) == 3
    assert first["failures"] == {}
    assert first["queries"] >= 1
    new = cluster.pods("web")[3]
    # Pods take the first free loopback addresses, so their order need not be the view's.
    assert sorted(e["ip"] for e in latest["endpoints"]) == sorted(p.ip for p in cluster.pods("web"))
    assert latest["recent_changes"][-1]["added"] == [
        {"ip": new.ip, "port": 8080, "hostname": "web-3"}
    ]
    assert code == cli.EXIT_OK
    assert "Traceback" not in (await process.stderr.read()).decode()


async def test_a_missing_service_ends_top_with_exit_3(cluster: LocalCluster) -> None:
    code, out, err = await run("top", "nosuch", "--nameserver", cluster.nameserver, "-n", "1")
    assert (code, out) == (cli.EXIT_NOT_FOUND, "")
    assert "not found" in err
    assert len(err.strip().splitlines()) == 1


def test_help_shows_an_example_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["top", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "examples:\n  headless-resolver top web --port http" in text
    for code, _ in cli.EXIT_CODES:
        assert f"\n  {code} " in text


async def run(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(COMMAND),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=25)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_the_demo_ends_with_the_transport_view_of_each_pod() -> None:
    from headless_resolver._demo import run_demo

    out = io.StringIO()
    await run_demo(pods=3, seconds=3, out=out, progress=io.StringIO())

    text = out.getvalue()
    view = text[text.index("least-latency's own view") :].splitlines()
    assert view[1].startswith(f"{FQDN}: ")
    assert view[2].split() == [
        "POD",
        "ADDRESS",
        "REQUESTS",
        "IN",
        "FLIGHT",
        "FAILED",
        "MEAN",
        "MS",
        "EJECTED",
    ]
    rows = {line.split()[0]: line.split() for line in view[3:]}
    # The pods added mid-run are listed until the transport sees the set without them.
    assert {"web-0", "web-1", "web-2"} <= rows.keys() <= {f"web-{n}" for n in range(5)}
    assert all(int(row[2]) > 0 for row in rows.values())


async def test_the_transport_view_shows_each_pods_traffic_and_why_it_was_ejected(
    cluster: LocalCluster,
) -> None:
    pods = cluster.pods("web")
    pods[1].refuse = True
    async with HeadlessResolver([cluster.nameserver]) as resolver:
        transport = HeadlessTransport(resolver, RoundRobin(), srv_from_scheme=True)
        async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
            for _ in range(8):
                assert (await http.get(f"http://{FQDN}/")).status_code == 200
        view = render_traffic(transport.stats()[FQDN]).splitlines()

    assert view[0] == f"{FQDN}: 9 requests, 1 retried on another pod, 0 in flight"
    rows = [line.split() for line in view[2:]]
    assert [row[:3] for row in rows] == [
        [pod.hostname, f"{pod.ip}:8080", str(pod.requests + (pod is pods[1]))] for pod in pods
    ]
    assert [row[3:5] for row in rows] == [["0", "0"], ["0", "1"], ["0", "0"]]
    assert [row[6:] for row in rows] == [["-"], ["yes", "(connect_failures", "1)"], ["-"]]
