"""Running ``medfuse`` in-process for the CLI tests (no tests here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from medfuse.cli import app

_runner = CliRunner()


@dataclass
class Ran:
    """Exit code and the two streams of one command."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]


def run(*args: str | Path) -> Ran:
    """``medfuse ARGS...`` in this process; stdout and stderr kept apart."""
    res = _runner.invoke(app, [str(a) for a in args])
    return Ran(res.exit_code, res.stdout, res.stderr)
