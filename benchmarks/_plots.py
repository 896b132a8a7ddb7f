"""PNG plots of a run: latency CDF per client, requests per pod, convergence timeline."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

BIN = 0.5
"""Seconds per bar of the convergence timeline."""


def latency_cdf(path: Path, latencies_ms: dict[str, list[float]], title: str) -> None:
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for client, samples in latencies_ms.items():
        count = len(samples)
        axes.plot(samples, [(i + 1) / count for i in range(count)], label=client)
    axes.set_xscale("log")
    axes.set_xlabel("latency, ms (log)")
    axes.set_ylabel("fraction of requests")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    _save(figure, path)


def requests_per_pod(path: Path, row_hits: dict[str, dict[str, int]], title: str) -> None:
    """Grouped bars: each client's share of requests per pod."""
    pods = sorted({pod for hits in row_hits.values() for pod in hits}, key=_ordinal)
    figure, axes = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(row_hits), 1)
    for i, (client, hits) in enumerate(row_hits.items()):
        total = sum(hits.values()) or 1
        xs = [j + i * width for j in range(len(pods))]
        axes.bar(xs, [hits.get(pod, 0) / total for pod in pods], width, label=client)
    axes.axhline(1 / max(len(pods), 1), color="black", linewidth=0.8, linestyle="--")
    axes.set_xticks([j + 0.4 - width / 2 for j in range(len(pods))], pods, rotation=45)
    axes.set_ylabel("share of requests")
    axes.set_title(title)
    axes.legend(fontsize="small")
    _save(figure, path)


def convergence(path: Path, data: dict[str, Any]) -> None:
    """Per client, the share of requests the new pod got in each half second."""
    new_pod, marks = data["new_pod"], data["marks"]
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for client, events in data["events"].items():
        sent: collections.Counter[int] = collections.Counter()
        hit: collections.Counter[int] = collections.Counter()
        for t, pod in events:
            sent[int(t / BIN)] += 1
            hit[int(t / BIN)] += pod == new_pod
        bins = sorted(sent)
        axes.step(
            [b * BIN for b in bins], [hit[b] / sent[b] for b in bins], where="post", label=client
        )
    for label, t in marks.items():
        axes.axvline(t, color="grey", linestyle=":")
        axes.text(t + 0.2, 1.03, label.replace("_", " "), fontsize="small")
    axes.set_ylim(0, 1.1)
    axes.set_xlim(0, max(t for events in data["events"].values() for t, _ in events) + 1)
    axes.set_xlabel("seconds")
    axes.set_ylabel(f"share of requests to {new_pod}")
    axes.set_title("Convergence: 3 -> 4 pods, then the new pod leaves DNS and stops")
    axes.legend(fontsize="small", loc="center right")
    _save(figure, path)


def _ordinal(hostname: str) -> tuple[str, int]:
    stem, _, number = hostname.rpartition("-")
    return (stem, int(number)) if number.isdigit() else (hostname, 0)


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
