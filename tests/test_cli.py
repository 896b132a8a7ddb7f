"""The ``headless-resolver`` command, run as a user runs it, against a LocalCluster."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import headless_resolver
from headless_resolver import cli
from headless_resolver._demo import ClientTally, DemoReport, ProgressDisplay
from headless_resolver.testing import LocalCluster
from tests.loopback import needs_ipv6_loopback

COMMAND = Path(sys.executable).with_name("headless-resolver")
FQDN = "web.default.svc.cluster.local"


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    async with LocalCluster(ttl=1) as local:
        await local.add_service("web", pods=3, port=8080, port_name="http")
        yield local


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the installed command in a subprocess; returns (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(COMMAND),
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=25)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def assert_one_clear_line(stderr: str, words: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert words in stderr


@pytest.fixture
def silent_nameserver() -> Iterator[str]:
    """A UDP socket on loopback that reads queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sink.getsockname()[1]}"


async def test_resolve_prints_a_table_of_pods_with_ports_and_hostnames(
    cluster: LocalCluster,
) -> None:
    code, out, err = await run(
        "resolve", FQDN, "--port", "http", "--nameserver", cluster.nameserver
    )

    assert code == 0, err
    header, *rows = out.strip().splitlines()
    assert header.split() == ["ADDRESS", "PORT", "POD", "TTL", "STALE"]
    table = {tuple(row.split()[:3]) for row in rows}
    assert table == {(pod.ip, "8080", pod.hostname) for pod in cluster.pods("web")}
    for row in rows:
        ttl, stale = row.split()[3:]
        assert 0 <= float(ttl.rstrip("s")) <= 1
        assert stale == "no"


async def test_resolve_json_without_port_gives_addresses_only(cluster: LocalCluster) -> None:
    code, out, err = await run("resolve", FQDN, "--json", "--nameserver", cluster.nameserver)

    assert code == 0, err
    document = json.loads(out)
    assert document["stale"] is False
    assert document["name"].rstrip(".") == FQDN
    assert {e["ip"] for e in document["endpoints"]} == {p.ip for p in cluster.pods("web")}
    assert {e["port"] for e in document["endpoints"]} == {None}


async def test_resolve_short_name_with_nameserver_from_environment(cluster: LocalCluster) -> None:
    env = {"HEADLESS_NAMESERVER": cluster.nameserver}
    code, out, err = await run(
        "resolve", "web", "--namespace", "default", "--cluster-domain", "cluster.local",
        "--port", "http", "--json", env=env,
    )  # fmt: skip

    assert code == 0, err
    hostnames = {e["hostname"] for e in json.loads(out)["endpoints"]}
    assert hostnames == {"web-0", "web-1", "web-2"}


async def test_resolve_per_pod_name_gives_that_pod_only(cluster: LocalCluster) -> None:
    code, out, err = await run(
        "resolve", f"web-1.{FQDN}", "--json", "--nameserver", cluster.nameserver
    )

    assert code == 0, err
    assert [e["ip"] for e in json.loads(out)["endpoints"]] == [cluster.pods("web")[1].ip]


async def test_python_dash_m_is_the_same_command(cluster: LocalCluster) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "headless_resolver", "resolve", FQDN, "--json",
        "--nameserver", cluster.nameserver,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=25)

    assert process.returncode == 0
    assert len(json.loads(stdout)["endpoints"]) == 3


async def test_missing_service_is_one_line_and_exit_3(cluster: LocalCluster) -> None:
    code, out, err = await run(
        "resolve", "nosuch.default.svc.cluster.local", "--nameserver", cluster.nameserver
    )

    assert code == cli.EXIT_NOT_FOUND == 3
    assert out == ""
    assert_one_clear_line(err, "not found")


async def test_missing_named_port_is_not_found(cluster: LocalCluster) -> None:
    code, _, err = await run("resolve", FQDN, "--port", "grpc", "--nameserver", cluster.nameserver)

    assert code == cli.EXIT_NOT_FOUND
    assert_one_clear_line(err, "not found")


async def test_invalid_name_is_one_line_and_exit_2(cluster: LocalCluster) -> None:
    code, _, err = await run("resolve", "Not_A Service!", "--nameserver", cluster.nameserver)

    assert code == cli.EXIT_USAGE == 2
    assert_one_clear_line(err, "invalid name")


async def test_a_unicode_name_is_invalid_and_sends_nothing(silent_nameserver: str) -> None:
    code, _, err = await run("resolve", "wéb", "--nameserver", silent_nameserver)

    assert code == cli.EXIT_USAGE
    assert_one_clear_line(err, "invalid name")


@pytest.mark.parametrize("port", ["70000", "0", "not_a_port!"])
def test_a_bad_port_is_a_usage_error_that_names_the_port(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["resolve", "web", "--port", port, "--nameserver", "127.0.0.1"])

    assert exited.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--port: port {port!r}" in err or f"--port: port {port}" in err
    assert "invalid name" not in err


@needs_ipv6_loopback
async def test_an_ipv6_nameserver_is_written_in_brackets() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sink:
        sink.bind(("::1", 0))
        nameserver = f"[::1]:{sink.getsockname()[1]}"
        code, _, err = await run(
            "resolve", FQDN, "--nameserver", nameserver, "--timeout", "0.2", "--attempts", "1"
        )

    assert code == cli.EXIT_RESOLUTION
    assert_one_clear_line(err, f"from {nameserver} within")


async def test_timeout_is_one_line_and_exit_4(silent_nameserver: str) -> None:
    code, _, err = await run(
        "resolve", FQDN, "--nameserver", silent_nameserver, "--timeout", "0.2", "--attempts", "1"
    )

    assert code == cli.EXIT_RESOLUTION == 4
    assert_one_clear_line(err, "resolution failed")


@pytest.mark.parametrize("nameserver", ["dns.example:53", "127.0.0.1:99999", "[::1"])
def test_malformed_nameserver_is_a_usage_error(
    nameserver: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["resolve", FQDN, "--nameserver", nameserver])

    assert exited.value.code == cli.EXIT_USAGE
    assert "--nameserver" in capsys.readouterr().err


def test_malformed_nameserver_in_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEADLESS_NAMESERVER", "not-an-address")

    assert cli.main(["resolve", FQDN]) == cli.EXIT_USAGE
    assert_one_clear_line(capsys.readouterr().err, "HEADLESS_NAMESERVER")


@pytest.mark.parametrize("command", [[], ["resolve"], ["watch"], ["demo"]])
def test_help_of_every_command_shows_an_example_and_the_exit_codes(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])

    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "examples:\n  headless-resolver " in text
    for code, _ in cli.EXIT_CODES:
        assert f"\n  {code} " in text


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out == f"headless-resolver {headless_resolver.__version__}\n"


def test_demo_refuses_too_few_pods(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["demo", "--pods", "2"])

    assert exited.value.code == cli.EXIT_USAGE
    assert "--pods" in capsys.readouterr().err


@contextlib.asynccontextmanager
async def running(
    *args: str, stderr: int | None = asyncio.subprocess.PIPE
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The installed command, left running with its output piped; killed if it is still
    running when the block ends, so a failed assertion leaves no process behind."""
    process = await asyncio.create_subprocess_exec(
        str(COMMAND), *args, stdout=asyncio.subprocess.PIPE, stderr=stderr
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_until(stream: asyncio.StreamReader, marker: str) -> list[str]:
    lines: list[str] = []
    while not lines or marker not in lines[-1]:
        line = await asyncio.wait_for(stream.readline(), timeout=10)
        assert line, f"output ended before {marker!r}: {lines}"
        lines.append(line.decode())
    return lines


async def test_watch_prints_the_set_then_each_change_and_exits_cleanly_on_ctrl_c(
    cluster: LocalCluster,
) -> None:
    async with running(
        "watch", FQDN, "--port", "http", "--nameserver", cluster.nameserver
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = await read_until(process.stdout, "web-2")
        assert "3 endpoints" in first[0]
        assert sum(line.split()[1] == "+" for line in first) == 3

        await cluster.scale("web", 4)
        added = await read_until(process.stdout, "web-3")
        assert added[-1].split()[1:] == ["+", f"{cluster.pods('web')[3].ip}:8080", "web-3"]
        assert "4 endpoints" in added[0]

        await cluster.scale("web", 3)
        removed = await read_until(process.stdout, "web-3")
        assert removed[-1].split()[1] == "-"

        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), timeout=10)

    assert code == cli.EXIT_OK
    assert "Traceback" not in (await process.stderr.read()).decode()


async def test_watch_json_prints_one_object_per_change(cluster: LocalCluster) -> None:
    leaving = cluster.pods("web")[2].ip
    async with running(
        "watch", FQDN, "--json", "--nameserver", cluster.nameserver, stderr=None
    ) as process:
        assert process.stdout is not None
        first = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=10))
        await cluster.scale("web", 2)
        second = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=10))
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), timeout=10)

    staying = {pod.ip for pod in cluster.pods("web")}
    assert {e["ip"] for e in first["added"]} == {*staying, leaving}
    assert first["removed"] == []
    assert second["added"] == []
    assert [e["ip"] for e in second["removed"]] == [leaving]
    assert {e["ip"] for e in second["endpoints"]} == staying
    assert second["version"] > first["version"]
    assert code == cli.EXIT_OK


@pytest.mark.slow
async def test_ctrl_c_stops_the_demo_with_exit_130_and_no_traceback() -> None:
    async with running("demo", "--seconds", "30", "--pods", "3") as process:
        assert process.stderr is not None
        await read_until(process.stderr, "/30 s  pods")
        process.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=10)

    assert process.returncode == cli.EXIT_INTERRUPTED == 130
    assert stdout == b""
    assert "Traceback" not in stderr.decode()
    assert "demo interrupted" in stderr.decode()


def parse_table(lines: list[str], first_cell: str) -> dict[str, list[str]]:
    """Rows of the whitespace-aligned table whose header starts with ``first_cell``."""
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first_cell])
    rows: dict[str, list[str]] = {}
    for line in lines[start:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
async def test_short_demo_sends_traffic_to_every_pod_without_headless_errors() -> None:
    code, out, err = await run("demo", "--seconds", "3", "--pods", "3")

    assert code == 0, err
    lines = out.splitlines()
    clients = parse_table(lines, "client")
    per_pod = parse_table(lines, "pod")
    headless = ["round-robin", "least-latency", "sticky"]
    columns = per_pod.pop("pod")
    assert columns == [*headless, "plain-httpx", "note"]
    header = clients.pop("client")
    for name in headless:
        row = dict(zip(header, clients[name], strict=True))
        assert row["errors"] == "0", out
        assert int(row["requests"]) > 0
        assert row["new_pod_wait_s"] != "never", out
    # web-0..2 from the start, web-3 and web-4 added by the scale-up, then removed.
    assert set(per_pod) == {f"web-{n}" for n in range(5)}
    for pod, counts in per_pod.items():
        assert sum(int(c) for c in counts[:3]) > 0, f"{pod} got no headless traffic:\n{out}"
    progress = [line for line in err.splitlines() if "/3 s  pods " in line]
    assert progress, f"no progress lines on stderr: {err!r}"
    assert "Traceback" not in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "ends_with"), [(Terminal(), "\r\033[K"), (io.StringIO(), "\n")])
def test_demo_progress_is_one_updating_line_on_a_terminal_and_plain_lines_otherwise(
    stream: io.StringIO, ends_with: str
) -> None:
    report = DemoReport(
        pods=3, seconds=10, ttl=1, slow_pod="web-1", failing_pod="web-2",
        clients=[ClientTally("round-robin", per_pod=Counter({"web-0": 7}))],
    )  # fmt: skip
    display = ProgressDisplay(stream, seconds=10)
    display.show(report, elapsed=1.5, pods=3)
    display.show(report, elapsed=2.5, pods=4)
    display.done()

    text = stream.getvalue()
    assert text.endswith(ends_with)
    if isinstance(stream, Terminal):
        assert "\n" not in text
        assert text.count("\r\033[K") == 3
    else:
        assert text.splitlines() == [
            "  1.5/10 s  pods 3  requests 7  errors 0  [warming up]",
            "  2.5/10 s  pods 4  requests 7  errors 0  [warming up]",
        ]
