"""LocalCluster: a cluster DNS plus real loopback pods, kept in step like Kubernetes keeps them.

Scaling up starts pods before DNS names them; scaling down removes them from DNS before they
stop, as endpoints controllers and kubelets do, so tests see the same races clients see.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from headless_resolver._errors import InvalidArgument
from headless_resolver.testing._clusterdns import ClusterDNS
from headless_resolver.testing._kubeapi import KubernetesAPI, SliceEndpoint
from headless_resolver.testing._model import PortSpec, ServiceSpec
from headless_resolver.testing._pods import CertificateAuthority, PodServer

__all__ = ["LocalCluster"]

_FIRST_POD_ADDRESS = int(ipaddress.IPv4Address("127.0.0.11"))
_LAST_POD_ADDRESS = int(ipaddress.IPv4Address("127.255.255.254"))
_MAX_ADDRESSES_TRIED = 512


class _AddressPool:
    """Pod addresses held by the LocalClusters of this process, handed out lowest first.

    Addresses taken by other processes are not known here: binding finds them and they are
    skipped.
    """

    def __init__(self) -> None:
        self._in_use: set[int] = set()
        self._lowest_free = _FIRST_POD_ADDRESS

    def candidates(self) -> Iterator[int]:
        for number in range(self._lowest_free, _LAST_POD_ADDRESS + 1):
            if number & 0xFF not in (0, 255) and number not in self._in_use:
                yield number

    def take(self, number: int) -> None:
        self._in_use.add(number)
        while self._lowest_free in self._in_use or self._lowest_free & 0xFF in (0, 255):
            self._lowest_free += 1

    def release(self, number: int) -> None:
        self._in_use.discard(number)
        self._lowest_free = min(self._lowest_free, number)


_addresses = _AddressPool()


@dataclass(eq=False)
class _Service:
    name: str
    namespace: str
    port: int
    port_name: str
    ssl_context: ssl.SSLContext | None
    pods: list[PodServer] = field(default_factory=list)
    leaving: list[PodServer] = field(default_factory=list)
    """Pods scaled away and still in their grace period: terminating, in the API only."""


class LocalCluster:
    """A ``ClusterDNS`` and one ``PodServer`` per endpoint, on distinct 127.0.0.x addresses.

    ``pods(name)`` returns the live pod handles, whose knobs (``latency``, ``status``,
    ``refuse``, ``reset``) change a pod without changing DNS: a refusing pod is still published,
    like a dying pod the endpoints controller has not noticed yet.

    Parameters (keyword-only):
        domain: the cluster domain (``cluster.local``).
        ttl: of the DNS records, in seconds (5).
        kubernetes: also publish every service as EndpointSlices through a
            ``KubernetesAPI`` stand-in (False).

    ``add_service(name, pods=, port=, port_name=, tls=)`` starts a service's pods; with
    ``tls=True`` they present certificates signed by the CA whose PEM file is at ``ca_cert``.
    With ``kubernetes=True`` the services are also published as EndpointSlices by a
    ``KubernetesAPI`` stand-in (``.api``; ``kubeconfig(path)`` writes a kubeconfig for it):
    a pod scaled away is shown terminating (not ready, serving) during its grace period.
    """

    def __init__(
        self, *, domain: str = "cluster.local", ttl: int = 5, kubernetes: bool = False
    ) -> None:
        self.domain = domain.strip(".")
        self.dns = ClusterDNS(domain=domain, ttl=ttl)
        self.api: KubernetesAPI | None = KubernetesAPI() if kubernetes else None
        self._services: dict[tuple[str, str], _Service] = {}
        self._certificates: CertificateAuthority | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    @property
    def nameserver(self) -> str:
        """``"127.0.0.1:PORT"`` of the cluster DNS."""
        return self.dns.nameserver

    @property
    def ca_cert(self) -> Path:
        """Path of the PEM file of the CA that signs every TLS service's certificate: trust it
        with ``ssl.create_default_context(cafile=cluster.ca_cert)``."""
        return self._authority().ca_cert

    async def __aenter__(self) -> LocalCluster:
        await self.dns.start()
        if self.api is not None:
            try:
                await self.api.start()
            except BaseException:
                await self.dns.stop()
                raise
        return self

    def kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig for the API stand-in (``kubernetes=True``) to ``path``."""
        if self.api is None:
            raise InvalidArgument("this LocalCluster has no Kubernetes API: pass kubernetes=True")
        return self.api.kubeconfig(path)

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            for key in list(self._services):
                await self._stop_pods(self._services.pop(key).pods)
        finally:
            await self.dns.stop()
            if self.api is not None:
                await self.api.stop()
            if self._directory is not None:
                self._directory.cleanup()
                self._directory = None

    async def add_service(
        self,
        name: str,
        *,
        namespace: str = "default",
        pods: int = 3,
        port: int = 8080,
        port_name: str = "http",
        tls: bool = False,
    ) -> list[PodServer]:
        """Start ``pods`` pods ``<name>-0 .. <name>-N-1`` and publish them as a headless Service.

        Every pod listens on ``port`` (``0``: one free port shared by the service's pods), which
        DNS publishes as the SRV port ``port_name``/tcp. With ``tls``, pods present a
        certificate for the service's names, signed by ``ca_cert``.
        """
        # Reject bad names and ports before any pod starts.
        ServiceSpec(name, namespace, ports=(PortSpec(port_name, "tcp", port or 1),))
        _check_replicas(pods)
        if (name, namespace) in self._services:
            raise InvalidArgument(f"service {name}.{namespace} already exists")
        ssl_context = None
        if tls:
            fqdn = f"{name}.{namespace}.svc.{self.domain}"
            names = [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", fqdn, f"*.{fqdn}"]
            ssl_context = self._authority().server_context_factory(names)()
        service = _Service(name, namespace, port, port_name, ssl_context)
        self._services[name, namespace] = service
        try:
            await self._start_pods(service, pods)
            self.dns.add_service(
                name,
                namespace,
                endpoints=_endpoints(service),
                ports=[(port_name, "tcp", service.port)],
            )
            self._publish(service)
        except BaseException:
            del self._services[name, namespace]
            await self._stop_pods(service.pods)
            raise
        return list(service.pods)

    async def scale(
        self, name: str, replicas: int, *, namespace: str = "default", grace: float = 0.0
    ) -> list[PodServer]:
        """Scale to ``replicas`` pods, like a StatefulSet: the highest ordinals go first.

        New pods are listening before DNS names them; removed pods leave DNS first and stop
        ``grace`` seconds later.
        """
        _check_replicas(replicas)
        service = self._service(name, namespace)
        if replicas >= len(service.pods):
            await self._start_pods(service, replicas)
            self.dns.set_endpoints(name, namespace, endpoints=_endpoints(service))
            self._publish(service)
        else:
            leaving = service.pods[replicas:]
            del service.pods[replicas:]
            service.leaving.extend(leaving)
            self.dns.set_endpoints(name, namespace, endpoints=_endpoints(service))
            self._publish(service)
            try:
                if grace > 0:
                    await asyncio.sleep(grace)
            finally:
                service.leaving = [p for p in service.leaving if p not in leaving]
                self._publish(service)
                await self._stop_pods(leaving)
        return list(service.pods)

    def pods(self, name: str, namespace: str = "default") -> list[PodServer]:
        """The service's running pods, by ordinal."""
        return list(self._service(name, namespace).pods)

    async def remove_service(self, name: str, namespace: str = "default") -> None:
        """Remove the service from DNS, then stop its pods."""
        service = self._service(name, namespace)
        del self._services[name, namespace]
        self.dns.remove_service(name, namespace)
        if self.api is not None:
            self.api.remove_service(name, namespace)
        await self._stop_pods(service.pods)

    def _publish(self, service: _Service) -> None:
        """Show the service's pods as EndpointSlices: running ones ready, leaving ones
        terminating, as the EndpointSlice controller does."""
        if self.api is None:
            return
        endpoints = [
            SliceEndpoint(pod.ip, hostname=pod.hostname, pod=pod.hostname, node_name="local")
            for pod in service.pods
        ] + [
            SliceEndpoint(
                pod.ip,
                hostname=pod.hostname,
                pod=pod.hostname,
                node_name="local",
                ready=False,
                serving=True,
                terminating=True,
            )
            for pod in service.leaving
        ]
        self.api.set_endpoints(
            service.name,
            service.namespace,
            endpoints=endpoints,
            ports=[(service.port_name, "TCP", service.port)],
        )

    def _service(self, name: str, namespace: str) -> _Service:
        try:
            return self._services[name, namespace]
        except KeyError:
            raise KeyError(f"no service {name}.{namespace} in this LocalCluster") from None

    def _authority(self) -> CertificateAuthority:
        if self._certificates is None:
            self._directory = tempfile.TemporaryDirectory(prefix="headless-resolver-cluster-")
            self._certificates = CertificateAuthority(self._directory.name)
        return self._certificates

    async def _start_pods(self, service: _Service, replicas: int) -> None:
        """Start ordinals ``len(pods) .. replicas-1``; on failure none of them stays up."""
        first = len(service.pods)
        if first == replicas:
            return
        if service.port == 0:
            # The first pod picks a free port; every other pod of the service listens on it.
            service.pods.append(await _start_pod(service, first))
            service.port = service.pods[0].port
            first += 1
        started = await asyncio.gather(
            *(_start_pod(service, ordinal) for ordinal in range(first, replicas)),
            return_exceptions=True,
        )
        pods = [pod for pod in started if isinstance(pod, PodServer)]
        failures = [error for error in started if isinstance(error, BaseException)]
        if failures:
            await self._stop_pods(pods)
            raise failures[0]
        service.pods.extend(pods)

    async def _stop_pods(self, pods: list[PodServer]) -> None:
        try:
            await asyncio.gather(*(pod.stop() for pod in pods))
        finally:
            for pod in pods:
                _addresses.release(int(ipaddress.IPv4Address(pod.ip)))


async def _start_pod(service: _Service, ordinal: int) -> PodServer:
    """Start one pod on the first loopback address where ``service.port`` is free."""
    hostname = f"{service.name}-{ordinal}"
    for tried, address in enumerate(_addresses.candidates()):
        if tried == _MAX_ADDRESSES_TRIED:
            break
        _addresses.take(address)
        ip = str(ipaddress.IPv4Address(address))
        pod = PodServer(ip, service.port, hostname=hostname, ssl_context=service.ssl_context)
        try:
            await pod.start()
        except OSError as exc:
            _addresses.release(address)
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return pod
    raise OSError(
        errno.EADDRINUSE,
        f"port {service.port} is taken on {_MAX_ADDRESSES_TRIED} loopback addresses; "
        "is something listening on 0.0.0.0? pass port=0 to pick a free port",
    )


def _check_replicas(replicas: int) -> None:
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise InvalidArgument(f"replicas: {replicas!r} is not a non-negative integer")


def _endpoints(service: _Service) -> list[tuple[str, str]]:
    return [(pod.ip, pod.hostname) for pod in service.pods]
