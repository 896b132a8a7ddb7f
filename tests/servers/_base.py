"""What Knot DNS and BIND have in common: a zone built from the service model, served by a
foreground process on a free loopback port, changed at runtime and verified by SOA serial."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar, NoReturn, Self

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from headless_resolver.testing._model import ServiceSpec, zone_records

STARTUP_TIMEOUT = 10.0
CHANGE_TIMEOUT = 10.0
START_ATTEMPTS = 5


class ServerUnavailable(RuntimeError):
    """The DNS server binary is not installed, so tests that need it cannot run."""

    def __init__(self, executable: str, package: str) -> None:
        super().__init__(
            f"{executable} not found: install the Debian package {package!r} "
            f"(sudo apt-get install {package})"
        )
        self.executable = executable
        self.package = package


def skip_or_fail(missing: ServerUnavailable) -> NoReturn:
    """Skip on a workstation without the server; fail in CI (``CI=true``), where a skip would
    silently drop the real-server coverage."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(str(missing))
    pytest.skip(str(missing))


class ServerFailed(RuntimeError):
    """The server did not start, or did not take a zone change; carries its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` right now (DNS listens on both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            candidate = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, candidate))
                except OSError:
                    continue
                return candidate
    raise OSError(f"no port free for both UDP and TCP on {host}")


def query(
    nameserver: str,
    name: str,
    rdtype: str | dns.rdatatype.RdataType,
    *,
    tcp: bool = False,
    edns: bool = True,
    timeout: float = 2.0,
) -> dns.message.Message:
    """One DNS query to ``"host:port"``; a truncated UDP answer is returned as is, TC set.

    ``edns=True`` advertises a 1232-byte payload, like the resolver does; ``edns=False`` sends
    a plain RFC 1035 query that must fit its answer in 512 bytes.
    """
    host, _, port = nameserver.rpartition(":")
    request = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, payload=1232)
    if tcp:
        return dns.query.tcp(request, host, timeout=timeout, port=int(port))
    return dns.query.udp(request, host, timeout=timeout, port=int(port))


_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def executable_path(name: str) -> str | None:
    """Where ``name`` lives; sbin directories count even when they are not on ``PATH``."""
    return shutil.which(name, path=_SBIN_PATH)


_running: set[AuthoritativeServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    """No server outlives the test run, even when a test errors before its teardown."""
    for server in list(_running):
        server.close()


def _service_key(spec: ServiceSpec) -> tuple[str, str]:
    if not isinstance(spec, ServiceSpec):
        raise TypeError(f"expected a ServiceSpec, got {spec!r}")
    return (spec.namespace, spec.name)


class AuthoritativeServer:
    """A real authoritative DNS server for ``<domain>.`` serving the Kubernetes DNS layout.

    Runs in the foreground as a child process with everything (config, zone file, sockets,
    pid file) under its own temp dir. Every change rewrites the zone with a higher SOA serial and
    returns only once the server answers with that serial, so the next query sees the change.
    """

    executable: ClassVar[str]
    package: ClassVar[str]

    def __init__(
        self,
        services: Iterable[ServiceSpec] = (),
        *,
        domain: str = "cluster.local",
        ttl: int = 5,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        found = executable_path(self.executable)
        if found is None:
            raise ServerUnavailable(self.executable, self.package)
        self._executable_path = found
        self._services = {_service_key(s): s for s in services}
        self._domain = domain.strip(".").lower()
        self._ttl = ttl
        self._host = host
        self._port = port
        self._serial = 1
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix=f"{self.executable}-"))

    # -- identity -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def nameserver(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def domain(self) -> str:
        return self._domain

    @property
    def ttl(self) -> int:
        return self._ttl

    @property
    def serial(self) -> int:
        """The SOA serial of the zone as last written (and, when running, as served)."""
        return self._serial

    @property
    def services(self) -> tuple[ServiceSpec, ...]:
        return tuple(self._services.values())

    @property
    def zone_file(self) -> Path:
        return self._workdir / f"{self._domain}.zone"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving; picks a free port unless one is fixed (a restart keeps its port)."""
        if self.running:
            return self
        self._write_zone()
        fixed_port = self._port != 0
        for _ in range(1 if fixed_port else START_ATTEMPTS):
            if not fixed_port:
                self._port = free_port(self._host)
            if self._launch():
                return self
        raise ServerFailed(
            f"{self.executable} did not answer on {self.nameserver}:\n{self._log_tail()}"
        )

    def stop(self) -> None:
        """Stop the process (an outage); ``start()`` brings it back on the same port."""
        process, self._process = self._process, None
        _running.discard(self)
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()

    def close(self) -> None:
        """Stop and delete the working directory."""
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- runtime changes ------------------------------------------------------------------

    def set_services(self, services: Iterable[ServiceSpec]) -> None:
        """Replace the whole model."""
        self._services = {_service_key(s): s for s in services}
        self._publish()

    def set_service(self, spec: ServiceSpec) -> None:
        """Add a service, or replace the one with the same name and namespace."""
        self._services[_service_key(spec)] = spec
        self._publish()

    def remove_service(self, name: str, namespace: str = "default") -> None:
        if self._services.pop((namespace, name), None) is None:
            raise KeyError(f"no service {name!r} in namespace {namespace!r}")
        self._publish()

    # -- for subclasses -------------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _write_config(self) -> None:
        raise NotImplementedError

    def _reload(self) -> None:
        """Make the running server load the zone file just written."""
        raise NotImplementedError

    # -- internals ------------------------------------------------------------------------

    def _publish(self) -> None:
        self._serial += 1
        self._write_zone()
        if not self.running:
            return
        self._reload()
        if not self._await_serial(CHANGE_TIMEOUT):
            raise ServerFailed(f"{self.executable} exited:\n{self._log_tail()}")

    def _write_zone(self) -> None:
        lines = []
        for owner, ttl, rdtype, rdata in zone_records(self.services, self._domain, self._ttl):
            if rdtype == "SOA":
                fields = rdata.split()
                fields[2] = str(self._serial)
                rdata = " ".join(fields)
            lines.append(f"{owner} {ttl} IN {rdtype} {rdata}\n")
        staging = self.zone_file.with_suffix(".tmp")
        staging.write_text("".join(lines))
        os.replace(staging, self.zone_file)

    def _launch(self) -> bool:
        self._write_config()
        log = (self._workdir / "server.log").open("ab")
        try:
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
            )
        finally:
            log.close()
        _running.add(self)
        if self._await_serial(STARTUP_TIMEOUT):
            return True
        self.stop()
        return False

    def _await_serial(self, timeout: float) -> bool:
        """Poll the SOA until it shows the current serial; False if the process exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return False
            try:
                answer = query(self.nameserver, f"{self._domain}.", "SOA", tcp=True, timeout=0.5)
            except (dns.exception.DNSException, OSError):
                time.sleep(0.01)
                continue
            if answer.rcode() != dns.rcode.NOERROR:
                raise ServerFailed(
                    f"{self.executable} on {self.nameserver} answers "
                    f"{dns.rcode.to_text(answer.rcode())} for {self._domain}. (zone not loaded):"
                    f"\n{self._log_tail()}"
                )
            if answer.answer and answer.answer[0][0].serial == self._serial:
                return True
            time.sleep(0.005)
        raise ServerFailed(
            f"{self.executable} on {self.nameserver} did not serve serial {self._serial} "
            f"within {timeout}s:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        log = self._workdir / "server.log"
        if not log.exists():
            return "(no log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


ServerFactory = Callable[..., AuthoritativeServer]
"""What ``make_knot_dns`` / ``make_bind_dns`` are: ``(services=(), *, ttl=5, domain=...)``."""
