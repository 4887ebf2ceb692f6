"""Command-line interface: ``medfuse``. Thin over the library; torch is imported lazily."""

from __future__ import annotations

from medfuse.cli import batch, eval, fuse, info, masks, train  # noqa: F401  (registers commands)
from medfuse.cli.app import app


def main() -> None:
    """Entry point: opt in to the process tuning medfuse measured (docs/performance.md),
    which library calls never apply by themselves, then run the command."""
    from medfuse.engine.runtime import tune_process

    tune_process()
    app()


__all__ = ["app", "main"]
