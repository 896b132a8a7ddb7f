"""Whether this host can bind the IPv6 loopback ``::1``, for tests that put pods there."""

from __future__ import annotations

import socket

import pytest


def _ipv6_loopback_unusable() -> str | None:
    """Why ``::1`` cannot be bound here (no IPv6, or disabled), or None when it can."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        return f"this host cannot bind the IPv6 loopback address ::1 ({error})"
    return None


_UNUSABLE = _ipv6_loopback_unusable()

needs_ipv6_loopback = pytest.mark.skipif(_UNUSABLE is not None, reason=_UNUSABLE or "")
"""Skip, saying why, where ``::1`` cannot be bound."""
