"""Many pairs: ``medfuse batch`` as one library call, each pair's failure isolated.

Modules, each importing only those before it (no circle):

* ``ledger``: the CSV record of every pair attempt (appended atomically, read merged);
* ``task``: one pair, the leaf every backend shares: :class:`PairTask`, :class:`PairOutcome`,
  :class:`EngineSpec` and :func:`run_task`, the one per-pair call;
* ``pool``: ``--workers N``, whole pairs in worker processes;
* ``ray``: ``--backend ray``, whole pairs on Ray actors;
* ``driver``: :func:`fuse_batch`: finds the pairs, decides what to redo, hands the rest to
  a backend and writes the ledger.

The names below are imported on first use, so a worker that needs only ``task`` never
loads the driver, and ``import medfuse.batch`` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BACKENDS": "driver",
    "BATCH_EXTENSIONS": "driver",
    "BatchItem": "driver",
    "BatchReport": "driver",
    "BatchRequest": "driver",
    "RERUN_HINT": "driver",
    "batch_items": "driver",
    "clean_leftovers": "driver",
    "fuse_batch": "driver",
    "is_complete": "driver",
    "part_of": "driver",
    "record_path": "driver",
    "EngineSpec": "task",
    "OnDone": "task",
    "PairOutcome": "task",
    "PairTask": "task",
    "run_task": "task",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medfuse.batch' has no attribute {name!r}")
    return getattr(importlib.import_module(f"medfuse.batch.{module}"), name)


def __dir__() -> list[str]:
    return [*__all__, "driver", "ledger", "pool", "ray", "task"]
