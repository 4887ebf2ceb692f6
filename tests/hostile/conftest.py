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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow hostile tests (fault injection, a random SIGTERM) run only when asked for
    with ``-m slow``, so that ``pytest tests/hostile`` stays a quick default run."""
    expr = config.getoption("markexpr") or ""
    if "slow" in expr and "not slow" not in expr:
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)
