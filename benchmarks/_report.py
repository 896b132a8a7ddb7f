"""Results and how they are shown: Markdown tables, target lines, JSON and PNG plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Cell = str | int | float


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [
            f"**{self.title}**",
            "",
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|",
        ]
        lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Check:
    """A target from the issues: ``value`` must be ``<=`` or ``>=`` ``limit``."""

    name: str
    value: float
    limit: float
    op: str  # "<=" or ">="
    unit: str = "x"

    @property
    def met(self) -> bool:
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def line(self) -> str:
        shown = f"{_number(self.value)}{self.unit} (target {self.op} {_number(self.limit)}"
        if self.met:
            return f"MET     {self.name}: {shown}{self.unit})"
        if self.op == "<=":
            miss = self.value / self.limit - 1 if self.limit else math.inf
        else:
            miss = 1 - self.value / self.limit
        return f"MISSED  {self.name}: {shown}{self.unit}; missed by {miss:.0%})"


@dataclass
class Scenario:
    key: str
    title: str
    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        parts = [f"### {self.title}"]
        parts += [f"_{note}_" for note in self.notes]
        parts += [table.markdown() for table in self.tables]
        return "\n\n".join(parts)


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else math.inf


def markdown(scenarios: Sequence[Scenario], header: Sequence[str]) -> str:
    parts = [*header, ""]
    parts += [scenario.markdown() + "\n" for scenario in scenarios]
    checks = [check for scenario in scenarios for check in scenario.checks]
    if checks:
        met = sum(check.met for check in checks)
        parts.append(f"### Targets: {met} of {len(checks)} met\n")
        parts.append("```\n" + "\n".join(check.line() for check in checks) + "\n```")
    return "\n".join(parts) + "\n"


def write_json(path: Path, scenarios: Sequence[Scenario], meta: dict[str, Any]) -> None:
    document = {
        "meta": meta,
        "scenarios": {scenario.key: asdict(scenario) for scenario in scenarios},
        "targets": [
            {**asdict(check), "met": check.met}
            for scenario in scenarios
            for check in scenario.checks
        ],
    }
    path.write_text(json.dumps(_finite(document), indent=1, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """JSON has no infinity: say ``"inf"`` (a ratio over zero, a pod never reached)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "inf"
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _cell(value: Cell) -> str:
    if isinstance(value, float):
        return _number(value)
    return str(value)
