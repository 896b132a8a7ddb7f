"""DNS through c-ares (aiodns / pycares 5), with c-ares' own answer cache switched off.

c-ares keeps a query cache by default (up to an hour) and, in the versions we have seen,
holds NOERROR/no-data answers for its maximum TTL because it ignores the SOA when computing
their lifetime. Kubernetes DNS changes every few seconds and the resolver owns caching, so
the channel is created with ``qcache_max_ttl = 0`` (c-ares' documented way to disable it),
an option pycares 5.2 does not expose: ``_UncachedChannel`` sets it when it creates the
channel.

Negative answers carry ``negative_ttl=None``: c-ares reports NXDOMAIN and NODATA as status
codes, and pycares drops the response (and its SOA) in that case. The resolver applies its
own negative TTL policy then. c-ares also hides the TC bit of a TCP answer, so ``truncated``
is always False here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import aiodns
import pycares
from pycares import _ffi, _lib, _shutdown_manager  # type: ignore[attr-defined]

from headless_resolver._dns._base import DnsAnswer, RecordType, SrvRecord
from headless_resolver._dns._dnspython import EDNS_PAYLOAD, check_nameservers, check_query
from headless_resolver._errors import InvalidServiceName, ResolutionError

_ARES_OPT_QUERY_CACHE = 1 << 21
"""``ARES_OPT_QUERY_CACHE`` from ares.h (c-ares >= 1.23); pycares does not export it."""

_NEGATIVE = {pycares.errno.ARES_ENOTFOUND: "NXDOMAIN", pycares.errno.ARES_ENODATA: "NOERROR"}
_FAILURES = {
    pycares.errno.ARES_ETIMEOUT: "TIMEOUT",
    pycares.errno.ARES_ESERVFAIL: "SERVFAIL",
    pycares.errno.ARES_EREFUSED: "REFUSED",
    pycares.errno.ARES_EFORMERR: "FORMERR",
    pycares.errno.ARES_ENOTIMP: "NOTIMP",
    pycares.errno.ARES_EBADRESP: "MALFORMED",
    pycares.errno.ARES_ECONNREFUSED: "NETWORK",
    pycares.errno.ARES_ECANCELLED: "CANCELLED",
    pycares.errno.ARES_EDESTRUCTION: "CANCELLED",
}
_TYPE_A = pycares.QUERY_TYPE_A
_TYPE_AAAA = pycares.QUERY_TYPE_AAAA
_TYPE_SRV = pycares.QUERY_TYPE_SRV
_WANTED = {"A": _TYPE_A, "AAAA": _TYPE_AAAA, "SRV": _TYPE_SRV}


class AiodnsBackend:
    """One c-ares channel to the given nameservers; one attempt per server, no c-ares cache."""

    def __init__(self, nameservers: Sequence[tuple[str, int]], *, timeout: float) -> None:
        checked = check_nameservers(nameservers)
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self._timeout = timeout
        self._servers = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in checked]
        self._resolver: _UncachedResolver | None = None

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        name = check_query(name, rdtype)
        resolver = self._resolver
        if resolver is None:
            # Created lazily: aiodns binds the channel to the running loop.
            resolver = self._resolver = _UncachedResolver(
                self._servers, timeout=self._timeout, tries=1, flags=pycares.ARES_FLAG_EDNS
            )
        try:
            async with asyncio.timeout(self._timeout):
                result = await resolver.query_dns(name, rdtype)
        except TimeoutError:
            raise ResolutionError(
                f"{name} {rdtype}: no answer within {self._timeout} s", name=name, rcode="TIMEOUT"
            ) from None
        except aiodns.error.DNSError as exc:
            code = exc.args[0] if exc.args else None
            if code in _NEGATIVE:
                return DnsAnswer(name=name, rdtype=rdtype, rcode=_NEGATIVE[code])  # type: ignore[arg-type]
            if code == pycares.errno.ARES_EBADNAME:
                raise InvalidServiceName(f"{name!r} cannot be sent as a DNS name") from None
            rcode = _FAILURES.get(code, f"ARES{code}")
            raise ResolutionError(
                f"{name} {rdtype}: c-ares failed: {rcode} ({exc.args[-1]})", name=name, rcode=rcode
            ) from None
        return _answer(name, rdtype, result)

    async def aclose(self) -> None:
        resolver, self._resolver = self._resolver, None
        if resolver is not None:
            await resolver.close()


def _answer(name: str, rdtype: RecordType, result: Any) -> DnsAnswer:
    """Keep records owned by ``name`` of type ``rdtype`` (CNAMEs are not followed)."""
    wanted = _WANTED[rdtype]
    addresses: list[str] = []
    srv: list[SrvRecord] = []
    min_ttl: int | None = None
    for record in result.answer:
        if record.type != wanted or record.name.lower().rstrip(".") + "." != name:
            continue
        if wanted == _TYPE_SRV:
            data = record.data
            target = data.target.lower().rstrip(".") + "."
            srv.append(SrvRecord(data.priority, data.weight, data.port, target))
        else:
            addresses.append(record.data.addr)
        min_ttl = record.ttl if min_ttl is None else min(min_ttl, record.ttl)
    glue: dict[str, tuple[str, ...]] = {}
    if srv:
        targets = {record.target for record in srv}
        found: dict[str, list[str]] = {}
        for record in result.additional:
            if record.type not in (_TYPE_A, _TYPE_AAAA):
                continue
            owner = record.name.lower().rstrip(".") + "."
            if owner in targets:
                found.setdefault(owner, []).append(record.data.addr)
                min_ttl = record.ttl if min_ttl is None else min(min_ttl, record.ttl)
        glue = {owner: tuple(addrs) for owner, addrs in found.items()}
    positive = bool(addresses or srv)
    return DnsAnswer(
        name=name,
        rdtype=rdtype,
        rcode="NOERROR",
        addresses=tuple(addresses),
        srv=tuple(srv),
        glue=glue,
        ttl=float(min_ttl) if positive and min_ttl is not None else None,
    )


class _UncachedChannel(pycares.Channel):
    """A pycares channel created with c-ares' query cache disabled.

    Mirrors the event-thread branch of ``pycares.Channel.__init__`` for the few options we
    use, adding ``ARES_OPT_QUERY_CACHE`` with ``qcache_max_ttl = 0``; servers are set after.
    """

    def __init__(self, *, timeout: float, tries: int, flags: int) -> None:
        self._channel = None
        self._lock = threading.RLock()
        self._flags = flags
        self._sock_state_cb_handle = None
        ffi, lib = _ffi, _lib
        options = ffi.new("struct ares_options *")
        options.flags = flags
        options.timeout = int(timeout * 1000)
        options.tries = tries
        options.ednspsz = EDNS_PAYLOAD
        options.qcache_max_ttl = 0
        options.evsys = lib.ARES_EVSYS_DEFAULT
        optmask = (
            lib.ARES_OPT_FLAGS
            | lib.ARES_OPT_TIMEOUTMS
            | lib.ARES_OPT_TRIES
            | lib.ARES_OPT_EDNSPSZ
            | lib.ARES_OPT_EVENT_THREAD
            | _ARES_OPT_QUERY_CACHE
        )
        channel = ffi.new("ares_channel *")
        status = lib.ares_init_options(channel, options, optmask)
        if status != lib.ARES_SUCCESS:
            raise ResolutionError(
                f"cannot create a c-ares channel (c-ares status {status})",
                rcode="CHANNEL",
            )
        self._channel = channel
        _shutdown_manager.start()


class _UncachedResolver(aiodns.DNSResolver):
    """aiodns on an ``_UncachedChannel`` (always the event-thread flavour)."""

    def _make_channel(self, **kwargs: Any) -> tuple[bool, pycares.Channel]:
        return True, _UncachedChannel(timeout=self._timeout, **kwargs)
