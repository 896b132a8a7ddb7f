"""One DNS protocol, two backends: ``make_backend`` picks one by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from headless_resolver._dns._base import DnsAnswer, DnsBackend, RecordType, SrvRecord
from headless_resolver._errors import InvalidArgument

BackendKind = Literal["dnspython", "aiodns"]
BACKENDS: tuple[BackendKind, ...] = ("dnspython", "aiodns")


def make_backend(
    kind: BackendKind, nameservers: Sequence[tuple[str, int]], *, timeout: float
) -> DnsBackend:
    """A backend sending one attempt per query to ``nameservers`` (IP, port), within ``timeout``."""
    if kind == "dnspython":
        from headless_resolver._dns._dnspython import DnspythonBackend

        return DnspythonBackend(nameservers, timeout=timeout)
    if kind == "aiodns":
        from headless_resolver._dns._aiodns import AiodnsBackend

        return AiodnsBackend(nameservers, timeout=timeout)
    raise InvalidArgument(f"backend must be one of {BACKENDS}, not {kind!r}")


__all__ = [
    "BACKENDS",
    "BackendKind",
    "DnsAnswer",
    "DnsBackend",
    "RecordType",
    "SrvRecord",
    "make_backend",
]
