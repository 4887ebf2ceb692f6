"""Command-line interface: ``medfuse``. Thin over the library; torch is imported lazily."""

from __future__ import annotations

from medfuse.cli import eval, fusion, train  # noqa: F401  (registers commands)
from medfuse.cli.app import app


def main() -> None:
    import os

    # Passive OpenMP waiting, set before torch loads: with the default spin-waiting, any
    # other busy process on the cores made inference 1.6-2.5x slower (docs/performance.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()


__all__ = ["app", "main"]
