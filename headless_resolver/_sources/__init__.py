"""Sources of endpoint sets: cluster DNS (polled) and the Kubernetes API (watched)."""

from __future__ import annotations

from headless_resolver._sources._base import (
    Found,
    Listener,
    Missing,
    Outcome,
    Source,
    Target,
    Update,
)
from headless_resolver._sources._dns import DnsSource

__all__ = [
    "DnsSource",
    "Found",
    "Listener",
    "Missing",
    "Outcome",
    "Source",
    "Target",
    "Update",
]
