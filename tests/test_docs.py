"""The architecture page lists exactly the modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_architecture_lists_every_module() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_/]+\.py)` \|", text, flags=re.M))
    src = ROOT / "src" / "medfuse"
    actual = {p.relative_to(src).as_posix() for p in src.rglob("*.py")}
    assert listed == actual, (sorted(actual - listed), sorted(listed - actual))
