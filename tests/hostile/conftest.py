"""Fixtures of the hostile-input suite; the machinery is in tests/helpers/hostile_cli.py and
the file builders in tests/helpers/hostile_files.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.hostile_cli import Box


@pytest.fixture
def box(tmp_path: Path) -> Box:
    """A sandbox with an input folder ``box.inp`` and an output folder path ``box.out``."""
    b = Box(tmp_path)
    b.inp.mkdir()
    return b
