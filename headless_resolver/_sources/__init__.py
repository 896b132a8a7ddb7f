"""Sources of endpoint sets: cluster DNS (polled) and the Kubernetes API (watched)."""

from __future__ import annotations

from typing import Literal

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
from headless_resolver._sources._kubernetes import AutoSource, KubernetesSource

SourceKind = Literal["dns", "kubernetes", "auto"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("dns", "kubernetes", "auto")

__all__ = [
    "SOURCE_KINDS",
    "AutoSource",
    "DnsSource",
    "Found",
    "KubernetesSource",
    "Listener",
    "Missing",
    "Outcome",
    "Source",
    "SourceKind",
    "Target",
    "Update",
]
