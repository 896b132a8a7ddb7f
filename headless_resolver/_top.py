"""``headless-resolver top``: what the resolver knows about one name, refreshed in place.

The view is built from the plain snapshots (``NameStats``, ``ServiceStats``), so it shows the
same figures the metrics export. On a terminal the screen is redrawn each interval, as
``top`` does; otherwise one summary line per interval is printed, for logs and pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from headless_resolver._endpoints import Endpoint
from headless_resolver._metrics import CLIENT, NameStats, ServiceStats
from headless_resolver._names import PortRef
from headless_resolver._resolver import HeadlessResolver

CLEAR = "\x1b[H\x1b[2J"
"""Cursor home, clear screen: redraws in place on any ANSI terminal."""


def _order(endpoint: Endpoint) -> tuple[int, int, int]:
    address = ipaddress.ip_address(endpoint.ip)
    return address.version, int(address), endpoint.port or 0


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _failures(stats: NameStats) -> str:
    if not stats.failures:
        return "0"
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(stats.failures.items()))
    return f"{sum(stats.failures.values())} ({reasons})"


def render_name(stats: NameStats) -> str:
    """The full view: the set, each endpoint with when it joined, recent changes, DNS."""
    state = "STALE (DNS failing, last good set served)" if stats.stale else "fresh"
    answered = "never" if stats.since_last_answer is None else _ago(stats.since_last_answer)
    refresh = "-" if stats.last_refresh_s is None else f"{stats.last_refresh_s * 1000:.1f} ms"
    lines = [
        f"{stats.name.rstrip('.')}  v{stats.version}  {len(stats.endpoints)} endpoints"
        f"  TTL left {stats.ttl_left:.1f}s  {state}",
        f"DNS: {stats.queries} queries, failures {_failures(stats)},"
        f" negative {stats.negative_answers}, stale served {stats.stale_served},"
        f" last answer {answered} ago, last refresh {refresh}",
        "",
    ]
    rows = [("ADDRESS", "PORT", "POD", "JOINED")]
    for endpoint in sorted(stats.endpoints, key=_order):
        port = "-" if endpoint.port is None else str(endpoint.port)
        joined = stats.joined.get(endpoint)
        rows.append(
            (endpoint.ip, port, endpoint.hostname or "-", "-" if joined is None else _ago(joined))
        )
    lines += _columns(rows)
    if stats.recent_changes:
        lines += ["", f"recent changes (+{stats.added} -{stats.removed} in all):"]
        for change in reversed(stats.recent_changes):
            for sign, endpoints in (("+", change.added), ("-", change.removed)):
                for endpoint in sorted(endpoints, key=_order):
                    pod = f"  {endpoint.hostname}" if endpoint.hostname else ""
                    lines.append(f"  {_ago(change.ago):>4} ago  {sign} {endpoint.netloc()}{pod}")
    return "\n".join(lines)


def render_line(stats: NameStats, now: datetime) -> str:
    """One summary line, for output that is not a terminal."""
    flag = " STALE" if stats.stale else ""
    return (
        f"{now.strftime('%H:%M:%S')}  {stats.name.rstrip('.')}  {len(stats.endpoints)} endpoints"
        f"  v{stats.version}{flag}  ttl {stats.ttl_left:.1f}s  queries {stats.queries}"
        f"  failures {sum(stats.failures.values())}  stale_served {stats.stale_served}"
        f"  +{stats.added} -{stats.removed}"
    )


def stats_json(stats: NameStats, now: datetime) -> str:
    """One JSON object per interval (``--json``): the snapshot, endpoints sorted."""

    def endpoint(e: Endpoint) -> dict[str, Any]:
        return {"ip": e.ip, "port": e.port, "hostname": e.hostname}

    document = {
        "time": now.isoformat(timespec="milliseconds"),
        "name": stats.name,
        "version": stats.version,
        "stale": stats.stale,
        "ttl_left": round(stats.ttl_left, 3),
        "endpoints": [
            {**endpoint(e), "joined_s": round(stats.joined.get(e, 0.0), 3)}
            for e in sorted(stats.endpoints, key=_order)
        ],
        "queries": stats.queries,
        "failures": dict(stats.failures),
        "negative_answers": stats.negative_answers,
        "stale_served": stats.stale_served,
        "since_last_answer": stats.since_last_answer,
        "added": stats.added,
        "removed": stats.removed,
        "recent_changes": [
            {
                "ago_s": round(c.ago, 3),
                "added": [endpoint(e) for e in c.added],
                "removed": [endpoint(e) for e in c.removed],
            }
            for c in stats.recent_changes
        ],
    }
    return json.dumps(document)


def render_traffic(service: ServiceStats, names: Mapping[str, str] | None = None) -> str:
    """The transport's view of one service: per pod requests, in flight, latency, ejection.

    ``names`` labels pods by IP where DNS gave no hostname (A records)."""
    names = names or {}
    rows = [("POD", "ADDRESS", "REQUESTS", "IN FLIGHT", "FAILED", "MEAN MS", "EJECTED")]
    for pod in sorted(service.pods, key=lambda p: _order(p.endpoint)):
        failed = sum(n for o, n in pod.outcomes.items() if o not in ("ok", CLIENT))
        mean = pod.mean_latency_s
        ejected = "yes" if pod.ejected else "-"
        if pod.ejections:
            ejected += f" ({', '.join(f'{r} {n}' for r, n in sorted(pod.ejections.items()))})"
        rows.append(
            (
                pod.endpoint.hostname or names.get(pod.endpoint.ip, "-"),
                pod.endpoint.netloc(),
                str(pod.requests),
                str(pod.in_flight),
                str(failed),
                "-" if mean is None else f"{mean * 1000:.1f}",
                ejected,
            )
        )
    header = (
        f"{service.address}: {service.requests} requests, {service.retries} retried on"
        f" another pod, {service.in_flight} in flight"
    )
    return "\n".join([header, *_columns(rows)])


async def run_top(
    resolver: HeadlessResolver,
    name: str,
    *,
    port: PortRef,
    proto: str,
    out: TextIO,
    interval: float,
    iterations: int | None,
    as_json: bool = False,
) -> None:
    """Keep ``name`` watched (so it stays refreshed) and show its stats every ``interval``."""
    await resolver.resolve(name, port=port, proto=proto)  # errors (not found...) end it here

    async def keep_watching() -> None:
        async for _ in resolver.watch(name, port=port, proto=proto):
            pass

    watcher = asyncio.create_task(keep_watching())
    terminal = out.isatty()
    shown = 0
    try:
        while iterations is None or shown < iterations:
            if shown:
                await asyncio.sleep(interval)
            stats = resolver.name_stats(name, port=port, proto=proto)
            assert stats is not None, "a watched name stays cached"
            now = datetime.now().astimezone()
            if as_json:
                out.write(stats_json(stats, now) + "\n")
            elif terminal:
                out.write(CLEAR + render_name(stats) + "\n")
            else:
                out.write(render_line(stats, now) + "\n")
            out.flush()
            shown += 1
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
