"""DNS through c-ares (pycares 5, the engine of aiodns), with c-ares' own answer cache off.

aiodns' ``query_dns`` cannot serve us: c-ares reports NXDOMAIN and NODATA as status codes, and
pycares then drops the response, and with it the SOA that gives a negative answer its TTL
(RFC 2308). So each query goes to ``ares_query_dnsrec`` with a callback of our own, which c-ares
calls with its parsed response whatever the rcode; the callback reads what a DnsAnswer needs
straight from that record, header flags included (TC on a TCP answer). Writing the record back
to wire form for the dnspython backend's reader would be simpler, but c-ares' writer does not
compress SRV targets and fails on a large SRV answer that arrived compressed.

c-ares keeps a query cache by default (up to an hour) and, in the versions we have seen, holds
NOERROR/no-data answers for its maximum TTL because it ignores the SOA when computing their
lifetime. Kubernetes DNS changes every few seconds and the resolver owns caching, so the
channel is created with ``qcache_max_ttl = 0`` (c-ares' documented way to disable it), an
option pycares 5.2 does not expose: ``_UncachedChannel`` sets it when it creates the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import socket
import threading
from collections.abc import Sequence
from typing import Any

import pycares
from pycares import _cares, _ffi, _lib, _shutdown_manager  # type: ignore[attr-defined]

from headless_resolver._dns._base import (
    EDNS_PAYLOAD,
    DnsAnswer,
    RecordType,
    SrvRecord,
    check_nameservers,
    check_query,
    check_timeout,
    rfc2181_ttl,
    server_text,
)
from headless_resolver._dns._wire import TYPE_CODES
from headless_resolver._errors import FailureReason, InvalidServiceName, ResolutionError

_ARES_OPT_QUERY_CACHE = 1 << 21
"""``ARES_OPT_QUERY_CACHE`` from ares.h (c-ares >= 1.23); pycares does not export it."""

_ANSWERED = {
    _lib.ARES_SUCCESS: "NOERROR",
    _lib.ARES_ENODATA: "NOERROR",
    _lib.ARES_ENOTFOUND: "NXDOMAIN",
}
"""Statuses c-ares gives a response it accepted, by the response's rcode."""
_RCODES = {
    pycares.errno.ARES_ESERVFAIL: "SERVFAIL",
    pycares.errno.ARES_EREFUSED: "REFUSED",
    pycares.errno.ARES_EFORMERR: "FORMERR",
    pycares.errno.ARES_ENOTIMP: "NOTIMP",
}
"""Statuses that stand for a server's failure rcode."""
_REASONS: dict[int, FailureReason] = {
    pycares.errno.ARES_ETIMEOUT: "TIMEOUT",
    pycares.errno.ARES_EBADRESP: "MALFORMED",
    pycares.errno.ARES_ECONNREFUSED: "NETWORK",
    pycares.errno.ARES_ECANCELLED: "CANCELLED",
    pycares.errno.ARES_EDESTRUCTION: "CANCELLED",
}
"""Why the other statuses failed, as ResolutionError.reason says it; unlisted ones are BACKEND."""


class AiodnsBackend:
    """One c-ares channel to the given nameservers; one attempt per server, no c-ares cache."""

    def __init__(self, nameservers: Sequence[tuple[str, int]], *, timeout: float) -> None:
        self._servers = [server_text(h, p) for h, p in check_nameservers(nameservers)]
        self._timeout = check_timeout(timeout)
        self._channel: _UncachedChannel | None = None

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        name = check_query(name, rdtype)
        channel = self._channel
        if channel is None:
            # Created on first use: a channel starts c-ares' event thread.
            channel = self._channel = _UncachedChannel(
                timeout=self._timeout, tries=1, flags=pycares.ARES_FLAG_EDNS
            )
            channel.servers = self._servers
        query = _Query(name, rdtype, asyncio.get_running_loop().create_future())
        try:
            async with asyncio.timeout(self._timeout):
                _send(channel, query)
                outcome = await query.reply
        except TimeoutError:
            raise ResolutionError(
                f"{name} {rdtype}: no answer within {self._timeout} s", name=name, reason="TIMEOUT"
            ) from None
        if isinstance(outcome, DnsAnswer):
            return outcome
        raise _failure(f"{name} {rdtype}", name, outcome)

    async def aclose(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.cancel()  # queries still waiting end now, as CANCELLED
            channel.close()


class _Query:
    """One query in flight: what was asked, and where c-ares' event thread puts the outcome."""

    __slots__ = ("name", "rdtype", "reply")

    def __init__(
        self, name: str, rdtype: RecordType, reply: asyncio.Future[DnsAnswer | int]
    ) -> None:
        self.name = name
        self.rdtype = rdtype
        self.reply = reply
        """The answer, or the c-ares status of a query that got none."""


_in_flight: dict[Any, _Query] = {}
"""Queries c-ares has not called back yet, by the handle passed as the callback's argument.

Holding the handle here keeps it valid until c-ares calls back, even from a channel that is
being destroyed (it then calls back with ARES_EDESTRUCTION)."""


def _send(channel: _UncachedChannel, query: _Query) -> None:
    name = query.name
    try:
        encoded = name.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidServiceName(f"{name!r} cannot be sent as a DNS name") from None
    handle = _ffi.new_handle(query)
    _in_flight[handle] = query
    with channel._capture_channel() as ares_channel:
        status = _lib.ares_query_dnsrec(
            ares_channel,
            encoded,
            _lib.ARES_CLASS_IN,
            TYPE_CODES[query.rdtype],
            _ON_REPLY,
            handle,
            _ffi.NULL,
        )
    if status != _lib.ARES_SUCCESS:
        _in_flight.pop(handle, None)
        if status == _lib.ARES_EBADNAME:
            raise InvalidServiceName(f"{name!r} cannot be sent as a DNS name")
        raise _failure(f"{name} {query.rdtype}", name, status)


def _failure(what: str, name: str, status: int) -> ResolutionError:
    rcode = _RCODES.get(status)
    reason: FailureReason = "RCODE" if rcode is not None else _REASONS.get(status, "BACKEND")
    text = pycares.errno.strerror(status)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return ResolutionError(
        f"{what}: c-ares failed: {rcode or reason} ({text}, status {status})",
        name=name,
        reason=reason,
        rcode=rcode,
    )


def _on_reply(handle: Any, status: int, timeouts: int, dnsrec: Any) -> None:
    """Runs on c-ares' event thread: read the response while it exists, hand over the result."""
    query = _in_flight.pop(handle, None)
    if query is None:
        return
    outcome: DnsAnswer | int = status
    rcode = _ANSWERED.get(status)
    if rcode is not None and dnsrec != _ffi.NULL:
        try:
            outcome = _read(dnsrec, query.name, query.rdtype, rcode)
        except Exception:  # raised here it would be lost, and the query left waiting
            outcome = _lib.ARES_EBADRESP
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
        query.reply.get_loop().call_soon_threadsafe(_settle, query.reply, outcome)


def _settle(reply: asyncio.Future[DnsAnswer | int], outcome: DnsAnswer | int) -> None:
    if not reply.done():  # not timed out or cancelled meanwhile
        reply.set_result(outcome)


_ON_REPLY = _ffi.callback("ares_callback_dnsrec", _on_reply)


def _load_get_flags() -> Any:
    """``ares_dns_record_get_flags``, which pycares links but does not declare."""
    symbol = ctypes.CDLL(_cares.__file__).ares_dns_record_get_flags
    address = ctypes.cast(symbol, ctypes.c_void_p).value
    return _ffi.cast("unsigned short (*)(const ares_dns_record_t *)", address)


# Reading c-ares' parsed response: its C accessors, looked up once, since the reader calls
# them for every record of answers that can hold thousands.
_get_flags = _load_get_flags()
_rr_count = _lib.ares_dns_record_rr_cnt
_rr_at = _lib.ares_dns_record_rr_get_const
_rr_type = _lib.ares_dns_rr_get_type
_rr_class = _lib.ares_dns_rr_get_class
_rr_name = _lib.ares_dns_rr_get_name
_rr_ttl = _lib.ares_dns_rr_get_ttl
_rr_u16 = _lib.ares_dns_rr_get_u16
_rr_u32 = _lib.ares_dns_rr_get_u32
_rr_str = _lib.ares_dns_rr_get_str
_string = _ffi.string
_buffer = _ffi.buffer
_ANSWER, _AUTHORITY, _ADDITIONAL = (
    _lib.ARES_SECTION_ANSWER,
    _lib.ARES_SECTION_AUTHORITY,
    _lib.ARES_SECTION_ADDITIONAL,
)
_A, _AAAA, _SRV, _SOA = (
    _lib.ARES_REC_TYPE_A,
    _lib.ARES_REC_TYPE_AAAA,
    _lib.ARES_REC_TYPE_SRV,
    _lib.ARES_REC_TYPE_SOA,
)
_IN = _lib.ARES_CLASS_IN
_rr_addr, _A_ADDR = _lib.ares_dns_rr_get_addr, _lib.ARES_RR_A_ADDR
_rr_addr6, _AAAA_ADDR = _lib.ares_dns_rr_get_addr6, _lib.ARES_RR_AAAA_ADDR
_ntop, _AF_INET, _AF_INET6 = socket.inet_ntop, socket.AF_INET, socket.AF_INET6


def _address(rr: Any, rtype: int) -> str:
    if rtype == _A:
        return _ntop(_AF_INET, _buffer(_rr_addr(rr, _A_ADDR), 4)[:])
    return _ntop(_AF_INET6, _buffer(_rr_addr6(rr, _AAAA_ADDR), 16)[:])


def _read(dnsrec: Any, name: str, rdtype: RecordType, rcode: str) -> DnsAnswer:
    """The same reading as the wire reader's: records owned by ``name`` of type ``rdtype``,
    glue for SRV targets, negative TTL = min(SOA TTL, SOA MINIMUM); CNAMEs are not followed."""
    owner = name[:-1].encode()  # c-ares writes names without the trailing dot
    wanted = TYPE_CODES[rdtype]
    addresses: list[str] = []
    srv: list[SrvRecord] = []
    min_ttl: int | None = None
    for i in range(_rr_count(dnsrec, _ANSWER)):
        rr = _rr_at(dnsrec, _ANSWER, i)
        if _rr_type(rr) != wanted or _rr_class(rr) != _IN or _string(_rr_name(rr)).lower() != owner:
            continue
        if wanted == _SRV:
            target = _string(_rr_str(rr, _lib.ARES_RR_SRV_TARGET)).decode("latin-1").lower() + "."
            srv.append(
                SrvRecord(
                    _rr_u16(rr, _lib.ARES_RR_SRV_PRIORITY),
                    _rr_u16(rr, _lib.ARES_RR_SRV_WEIGHT),
                    _rr_u16(rr, _lib.ARES_RR_SRV_PORT),
                    target,
                )
            )
        else:
            addresses.append(_address(rr, wanted))
        ttl = rfc2181_ttl(_rr_ttl(rr))
        min_ttl = ttl if min_ttl is None or ttl < min_ttl else min_ttl
    glue: dict[str, list[str]] = {}
    if srv:
        targets = {record.target for record in srv}
        for i in range(_rr_count(dnsrec, _ADDITIONAL)):
            rr = _rr_at(dnsrec, _ADDITIONAL, i)
            rtype = _rr_type(rr)
            if rtype not in (_A, _AAAA) or _rr_class(rr) != _IN:
                continue
            target = _string(_rr_name(rr)).decode("latin-1").lower() + "."
            if target in targets:
                glue.setdefault(target, []).append(_address(rr, rtype))
                ttl = rfc2181_ttl(_rr_ttl(rr))
                min_ttl = ttl if min_ttl is None or ttl < min_ttl else min_ttl
    positive = rcode == "NOERROR" and bool(addresses or srv)
    negative_ttl: int | None = None
    if not positive:
        for i in range(_rr_count(dnsrec, _AUTHORITY)):
            rr = _rr_at(dnsrec, _AUTHORITY, i)
            if _rr_type(rr) == _SOA:
                negative_ttl = min(
                    rfc2181_ttl(_rr_ttl(rr)),
                    rfc2181_ttl(_rr_u32(rr, _lib.ARES_RR_SOA_MINIMUM)),
                )
                break
    return DnsAnswer(
        name=name,
        rdtype=rdtype,
        rcode="NXDOMAIN" if rcode == "NXDOMAIN" else "NOERROR",
        addresses=tuple(addresses),
        srv=tuple(srv),
        glue={target: tuple(found) for target, found in glue.items()},
        ttl=float(min_ttl) if positive and min_ttl is not None else None,
        negative_ttl=None if negative_ttl is None else float(negative_ttl),
        truncated=bool(_get_flags(dnsrec) & _lib.ARES_FLAG_TC),
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
                reason="BACKEND",
            )
        self._channel = channel
        _shutdown_manager.start()
