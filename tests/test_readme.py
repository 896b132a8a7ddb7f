"""The README's "Testing your code without a cluster" example runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


async def test_the_testing_section_example_passes() -> None:
    (example,) = python_blocks("Testing your code without a cluster")
    namespace: dict[str, Any] = {}
    exec(compile(example, str(README), "exec"), namespace)
    await namespace["test_requests_reach_every_pod"]()
