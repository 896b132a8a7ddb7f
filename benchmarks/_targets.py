"""Where the benchmark sends its traffic: a LocalCluster in a child process, or a real cluster.

``local``: pods and cluster DNS run in a child process (so the clients measured share no CPU
time with the servers), driven over a pipe: add services, scale, slow a pod, stop DNS.
``cluster``: existing Services (the ``benchmarks/kind`` StatefulSets), reached through the
pod's own DNS; nothing can be scaled or stopped from here, so the scenarios that need it are
skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import multiprocessing
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from headless_resolver.testing import LocalCluster, system_resolution_via
from headless_resolver.testing._system_dns import HOW

NAMES = {"small": "echo", "wide": "echo-wide", "slow": "echo-slow"}
"""Service names by role: 3 pods, 10 pods, 3 pods of which the first is slow."""


def cpu_seconds() -> float:
    """User + system CPU time of this process: the clients' alone, with the pods in another."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Service:
    """A service the clients can reach: its FQDN, port and pod hostnames."""

    name: str
    namespace: str
    domain: str
    port: int
    pods: tuple[str, ...]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{self.domain}"

    @property
    def url(self) -> str:
        return f"http://{self.fqdn}:{self.port}/"

    def pod_url(self, hostname: str) -> str:
        """URL of one pod by its per-pod DNS name (``echo-0.echo.default.svc...``)."""
        return f"http://{hostname}.{self.fqdn}:{self.port}/"


class LocalTarget:
    """A LocalCluster in a child process; ``close()`` stops it."""

    name = "local"
    can_control = True

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.domain = "cluster.local"
        self.namespace = "default"
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_child, args=(child, ttl), daemon=True)
        self._process.start()
        self.nameserver: str = self._conn.recv()
        self._services: dict[str, Service] = {}
        self._lock = asyncio.Lock()

    @property
    def how(self) -> str:
        return f"{HOW}; cluster: LocalCluster in a child process, DNS TTL {self.ttl} s"

    def system_dns(self) -> contextlib.AbstractContextManager[None]:
        return system_resolution_via(self.nameserver, self.domain)

    async def service(self, role: str, pods: int) -> Service:
        """The service for ``role`` with ``pods`` pods, started on first use."""
        if role not in self._services:
            name = NAMES.get(role, role)
            port = await self.call("add_service", name, pods)
            hostnames = tuple(f"{name}-{i}" for i in range(pods))
            self._services[role] = Service(name, self.namespace, self.domain, port, hostnames)
        return self._services[role]

    async def call(self, command: str, *args: Any) -> Any:
        """Run ``command`` in the child; the event loop here keeps running meanwhile."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            self._conn.send((command, args))
            status, result = await loop.run_in_executor(None, self._conn.recv)
        if status != "ok":
            raise RuntimeError(f"cluster process: {command}{args!r} failed: {result}")
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self._conn.send(("stop", ()))
            self._conn.recv()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


class ClusterTarget:
    """Services already running in a cluster: ``echo`` (3 pods), ``echo-wide`` (10) and
    ``echo-slow`` (3, the first slowed by its own configuration)."""

    name = "cluster"
    can_control = False

    def __init__(
        self,
        nameserver: str | None,
        namespace: str,
        domain: str,
        port: int,
        replicas: dict[str, int],
    ) -> None:
        self.nameserver = nameserver
        self.namespace = namespace
        self.domain = domain
        self.port = port
        self.replicas = replicas

    @property
    def how(self) -> str:
        if self.nameserver is None:
            return "system resolution: the pod's own glibc and /etc/resolv.conf (no emulation)"
        return f"{HOW}; cluster DNS given as {self.nameserver}"

    def system_dns(self) -> contextlib.AbstractContextManager[None]:
        if self.nameserver is None:
            return contextlib.nullcontext()
        return system_resolution_via(self.nameserver, self.domain)

    async def service(self, role: str, pods: int) -> Service:
        name = NAMES.get(role, role)
        count = self.replicas.get(role, pods)
        hostnames = tuple(f"{name}-{i}" for i in range(count))
        return Service(name, self.namespace, self.domain, self.port, hostnames)

    def close(self) -> None:
        """Nothing to stop: the cluster is not ours."""


Target = LocalTarget | ClusterTarget


# -- the child process ---------------------------------------------------------------------


def _child(conn: Connection, ttl: int) -> None:
    asyncio.run(_serve(conn, ttl))


async def _serve(conn: Connection, ttl: int) -> None:
    loop = asyncio.get_running_loop()
    async with LocalCluster(ttl=ttl) as cluster:
        conn.send(cluster.nameserver)
        port = 0
        while True:
            command, args = await loop.run_in_executor(None, conn.recv)
            if command == "stop":
                conn.send(("ok", None))
                return
            try:
                if command == "add_service":
                    name, pods = args
                    started = await cluster.add_service(name, pods=pods, port=port)
                    port = started[0].port
                    result: Any = port
                else:
                    result = await _COMMANDS[command](cluster, *args)
            except Exception as error:  # reported to the parent, which raises it
                conn.send(("error", repr(error)))
            else:
                conn.send(("ok", result))


async def _scale(cluster: LocalCluster, name: str, replicas: int, grace: float) -> None:
    await cluster.scale(name, replicas, grace=grace)


async def _latency(cluster: LocalCluster, name: str, ordinal: int, seconds: float) -> None:
    cluster.pods(name)[ordinal].latency = seconds


async def _served(cluster: LocalCluster, name: str) -> dict[str, int]:
    return {pod.hostname: pod.requests for pod in cluster.pods(name)}


async def _dns_down(cluster: LocalCluster) -> None:
    await cluster.dns.stop()


async def _dns_up(cluster: LocalCluster) -> None:
    await cluster.dns.start()


async def _dns_only(cluster: LocalCluster, name: str, pods: int) -> None:
    """A service of ``pods`` addresses in DNS only (nothing listens): for refresh costs."""
    cluster.dns.add_service(name, endpoints=[(ip, None) for ip in _addresses(pods)])


def _addresses(count: int) -> Iterator[str]:
    first = int(ipaddress.IPv4Address("10.64.0.1"))
    return (str(ipaddress.IPv4Address(first + i)) for i in range(count))


_COMMANDS: dict[str, Any] = {
    "scale": _scale,
    "latency": _latency,
    "served": _served,
    "dns_down": _dns_down,
    "dns_up": _dns_up,
    "dns_only": _dns_only,
}
