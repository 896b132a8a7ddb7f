"""HeadlessAiohttpResolver: pod selection for aiohttp through its resolver hook.

aiohttp asks its resolver for addresses only when it opens a connection, so balancing here is
per new connection, not per request: a kept-alive connection keeps going to the pod it was
opened to, and the strategy hears no latencies or outcomes (so no failure judgement applies:
give the strategy a health shared with a ``HeadlessTransport`` for its pick to skip the pods
that one ejects). Use
``aiohttp.TCPConnector(resolver=HeadlessAiohttpResolver(...), use_dns_cache=False)``; with
aiohttp's DNS cache on, aiohttp asks once per ``ttl_dns_cache`` (10 s) and rotates through
that one answer itself, so the strategy, ejections and set changes are bypassed meanwhile.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from headless_resolver._endpoints import Endpoint
from headless_resolver._errors import HeadlessResolverError, InvalidServiceName
from headless_resolver._hosts import HostMatch, host_matcher, port_rules
from headless_resolver._resolver import HeadlessResolver
from headless_resolver._strategies import RoundRobin, Strategy

_FAMILIES: dict[int, Callable[[Endpoint], bool]] = {
    socket.AF_INET: lambda e: not e.is_ipv6,
    socket.AF_INET6: lambda e: e.is_ipv6,
}


class HeadlessAiohttpResolver(AbstractResolver):
    """Answer aiohttp's lookups for cluster services with the picked pod first.

    The rest of the pods follow, so aiohttp's own fallback to the next address still works
    when the picked pod refuses. Hosts that do not match (see ``HeadlessTransport``) go to
    ``fallback``, by default aiohttp's ``DefaultResolver``. ``ports={"web": "http"}`` makes
    every connection to ``web`` use the port of the SRV record ``_http._tcp`` (aiohttp cannot
    tell whether the URL had a port). Resolution failures are raised as ``OSError`` with our
    exception as the cause, so aiohttp reports them as ``ClientConnectorDNSError``.
    """

    def __init__(
        self,
        resolver: HeadlessResolver | None = None,
        strategy: Strategy | None = None,
        *,
        match: HostMatch | None = None,
        ports: Mapping[str, str] | None = None,
        fallback: AbstractResolver | None = None,
    ) -> None:
        self._owns_resolver = resolver is None
        self._resolver = HeadlessResolver() if resolver is None else resolver
        self._strategy: Strategy = RoundRobin() if strategy is None else strategy
        self._ports = port_rules(ports)
        self._matches = host_matcher(self._resolver, match, self._ports)
        self._fallback = fallback

    @property
    def resolver(self) -> HeadlessResolver:
        return self._resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        host = host.lower().rstrip(".")
        if not self._matches(host):
            if self._fallback is None:
                self._fallback = DefaultResolver()
            return await self._fallback.resolve(host, port, family)
        try:
            endpoints = await self._resolver.resolve(host, port=self._ports.get(host))
            wanted = _FAMILIES.get(family)
            unwanted = () if wanted is None else [e for e in endpoints if not wanted(e)]
            # Picked for a connection, not a request: no outcome will follow, so release it.
            first = self._strategy.pick(endpoints, exclude=unwanted)
            self._strategy.release(first)
        except InvalidServiceName:
            raise
        except HeadlessResolverError as exc:
            raise OSError(f"{host}: {exc}") from exc
        rest = (e for e in endpoints if e != first and e not in unwanted)
        return [_result(host, e, port) for e in (first, *rest)]

    async def close(self) -> None:
        if self._fallback is not None:
            await self._fallback.close()
        if self._owns_resolver:
            await self._resolver.aclose()


def _result(host: str, endpoint: Endpoint, port: int) -> ResolveResult:
    return ResolveResult(
        hostname=host,
        host=endpoint.ip,
        port=endpoint.port if endpoint.port is not None else port,
        family=socket.AF_INET6 if endpoint.is_ipv6 else socket.AF_INET,
        proto=0,
        flags=socket.AI_NUMERICHOST,
    )
