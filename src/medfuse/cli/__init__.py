"""Command-line interface: ``medfuse``. Thin over the library; torch is imported lazily."""

from __future__ import annotations

from medfuse.cli import eval, fusion, train  # noqa: F401  (registers commands)
from medfuse.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
