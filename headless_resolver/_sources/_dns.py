"""The DNS source: A/AAAA or SRV queries for a target, with retries and TCP fallback below.

Each query is one attempt of the backend, retried (tenacity) on ResolutionError up to
``attempts`` times with jittered exponential backoff within the timeout; A and AAAA go out
together; SRV targets without glue are looked up, at most ``TARGET_LOOKUPS`` at once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from headless_resolver._dns import BackendKind, DnsAnswer, DnsBackend, RecordType, make_backend
from headless_resolver._endpoints import Endpoint
from headless_resolver._errors import InvalidArgument, ResolutionError
from headless_resolver._logs import RateLimitedLog
from headless_resolver._logs import resolver_log as logger
from headless_resolver._names import ResolvConf, parse_nameserver
from headless_resolver._sources._base import Found, Listener, Missing, Outcome, Target, smallest

TARGET_LOOKUPS = 32
"""SRV targets without glue resolved at once."""


class DnsSource:
    """Endpoints from cluster DNS (CoreDNS's ``kubernetes`` plugin): a pull source.

    Parameters: ``backend`` (a name or a ``DnsBackend``), ``nameservers`` (``None``: from
    ``resolv_conf``), ``timeout`` per query attempt, ``attempts`` per lookup, ``on_query``
    called once per query sent (the resolver's counter).
    """

    kind = "dns"

    def __init__(
        self,
        backend: BackendKind | DnsBackend,
        nameservers: Iterable[str] | None,
        *,
        resolv_conf: ResolvConf,
        resolv_conf_path: str | os.PathLike[str] = "/etc/resolv.conf",
        timeout: float,
        attempts: int,
        on_query: Callable[[], None] = lambda: None,
    ) -> None:
        self._backend = _make_backend(backend, nameservers, timeout, resolv_conf, resolv_conf_path)
        self._timeout = timeout
        self._on_query = on_query
        self._truncations = RateLimitedLog(logger)  # a service too big for TCP stays so
        self._query_with_retries = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=0.02, max=timeout / 4),
            retry=retry_if_exception_type(ResolutionError),
            reraise=True,
        ).wraps(self._query)

    def __repr__(self) -> str:
        return f"<DnsSource {self._backend!r}>"

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return lambda: None  # DNS is polled: nothing is pushed

    async def aclose(self) -> None:
        await self._backend.aclose()

    async def fetch(self, target: Target) -> Outcome:
        if isinstance(target.port, str):
            return await self._fetch_srv(target, target.port)
        a, aaaa = await self._addresses(target.name)
        if a.negative and aaaa.negative:
            what = (
                "no such name (NXDOMAIN)" if "NXDOMAIN" in (a.rcode, aaaa.rcode) else "no addresses"
            )
            return Missing(f"{target.name}: {what}", smallest(a.negative_ttl, aaaa.negative_ttl))
        port = target.port if isinstance(target.port, int) else None
        hostname = target.service.pod
        endpoints = [Endpoint(ip, port, hostname) for ip in (*a.addresses, *aaaa.addresses)]
        ttl = smallest(*(answer.ttl for answer in (a, aaaa) if not answer.negative))
        return Found(endpoints, ttl)

    async def _query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        """One attempt; the backend bounds it by ``timeout``, and so do we, in case it does not."""
        self._on_query()
        try:
            async with asyncio.timeout(self._timeout * 1.25):
                answer = await self._backend.query(name, rdtype)
        except TimeoutError:
            raise ResolutionError(
                f"{name} {rdtype}: no answer within {self._timeout} s", name=name, reason="TIMEOUT"
            ) from None
        except ResolutionError as exc:
            logger.debug("query %s %s failed: %s", name, rdtype, exc)
            raise
        logger.debug(
            "query %s %s -> %s, %d records, ttl %s",
            name,
            rdtype,
            answer.rcode,
            len(answer.addresses) + len(answer.srv),
            answer.ttl if answer.ttl is not None else answer.negative_ttl,
        )
        if answer.truncated and not (answer.addresses or answer.srv):
            raise ResolutionError(
                f"{name} {rdtype}: answer too large even over TCP, and no record arrived",
                name=name,
                reason="TRUNCATED",
            )
        if answer.truncated:
            self._truncations.warning(
                (name, rdtype),
                "%s %s: answer truncated even over TCP; using the %d records that arrived",
                name,
                rdtype,
                len(answer.addresses) + len(answer.srv),
            )
        return answer

    async def _addresses(self, name: str) -> tuple[DnsAnswer, DnsAnswer]:
        """A and AAAA at once; NODATA for one family is a normal answer."""
        try:
            async with asyncio.TaskGroup() as group:
                a = group.create_task(self._query_with_retries(name, "A"))
                aaaa = group.create_task(self._query_with_retries(name, "AAAA"))
        except* ResolutionError as failed:
            raise failed.exceptions[0] from None
        return a.result(), aaaa.result()

    async def _fetch_srv(self, target: Target, port: str) -> Outcome:
        answer = await self._query_with_retries(target.name, "SRV")
        service = target.service
        if answer.negative:
            return Missing(
                f"{service.fqdn}: no SRV records for port {port!r} ({target.proto})"
                f" at {target.name} ({answer.rcode})",
                answer.negative_ttl,
            )
        targets = {srv.target for srv in answer.srv}
        addresses = {t: answer.glue[t] for t in targets if answer.glue.get(t)}
        missing = [t for t in targets if t not in addresses]
        ttls: list[float | None] = [answer.ttl]
        if missing:
            limit = asyncio.Semaphore(TARGET_LOOKUPS)

            async def lookup(srv_target: str) -> None:
                async with limit:
                    a, aaaa = await self._addresses(srv_target)
                addresses[srv_target] = (*a.addresses, *aaaa.addresses)
                ttls.extend(x.ttl for x in (a, aaaa) if not x.negative)

            try:
                async with asyncio.TaskGroup() as group:
                    for srv_target in missing:
                        group.create_task(lookup(srv_target))
            except* ResolutionError as failed:
                raise failed.exceptions[0] from None
        own = service.fqdn
        endpoints = [
            Endpoint(
                ip,
                srv.port,
                None if srv.target == own else srv.target.split(".", 1)[0],
                srv.priority,
                srv.weight,
            )
            for srv in answer.srv
            for ip in addresses.get(srv.target, ())
        ]
        if not endpoints:
            return Missing(f"{target.name}: no SRV target has an address", answer.ttl)
        return Found(endpoints, smallest(*ttls))


def _make_backend(
    backend: BackendKind | DnsBackend,
    nameservers: Iterable[str] | None,
    timeout: float,
    resolv_conf: ResolvConf,
    resolv_conf_path: str | os.PathLike[str],
) -> DnsBackend:
    if not isinstance(backend, str):
        return backend
    if isinstance(nameservers, str):
        nameservers = [nameservers]
    listed = list(resolv_conf.nameservers if nameservers is None else nameservers)
    if not listed:
        raise InvalidArgument(f"no nameservers given and none in {os.fspath(resolv_conf_path)}")
    return make_backend(backend, [parse_nameserver(n) for n in listed], timeout=timeout)
