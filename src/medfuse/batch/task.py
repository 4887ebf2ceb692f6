"""One pair of a batch: the task a worker receives, the outcome it sends back, and the one
call that runs it (:func:`run_task`), the same for every backend.

Why a module of its own: the driver (:mod:`medfuse.batch.driver`), the worker pool
(:mod:`medfuse.batch.pool`) and the Ray actors (:mod:`medfuse.batch.ray`) all need these
names, and none of them may need the others; with the task here, each backend imports only
this leaf, and no worker imports the driver. Everything here is small and picklable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medfuse.batch.ledger import now
from medfuse.errors import MedfuseError, one_line
from medfuse.fusion import FuseRequest, fuse_files

if TYPE_CHECKING:
    import torch

    from medfuse.engine import Engine

#: Called once per finished task with (task index, outcome).
OnDone = Callable[[int, "PairOutcome"], None]


@dataclass(frozen=True)
class PairTask:
    """One pair's complete request, small and picklable: what a worker process or a Ray
    actor receives."""

    index: int
    name: str
    request: FuseRequest
    #: Where to write this pair's QC page (``BatchRequest.pages``; None: no page).
    pages: Path | None = None


@dataclass
class PairOutcome:
    """What became of one task (picklable, sent back from workers)."""

    status: str
    error: str = ""
    outputs: list[Path] = field(default_factory=list)
    plan: str = ""
    warnings: list[str] = field(default_factory=list)
    record: Path | None = None
    started: str = ""
    finished: str = ""


@dataclass(frozen=True)
class EngineSpec:
    """How to load an engine in another process: a picklable stand-in for the CLI's
    loader closure (worker processes and Ray actors each call it once). ``device`` is the
    device the entry point resolved (a ``torch.device``), so a worker never meets an
    unchecked device text; ``None`` lets each worker choose its own (Ray actors, whose GPU
    Ray assigns)."""

    weights: str | None = None
    device: torch.device | str | None = None
    batch_size: int = 8
    precision: str = "auto"

    def __call__(self) -> Engine:
        from medfuse.engine import load_model

        return load_model(self.weights, "auto" if self.device is None else self.device,
                          batch_size=self.batch_size, precision=self.precision)


def _page_collector(task: PairTask) -> Any:
    """What keeps a pair's slices for its QC page (None when the batch writes no pages)."""
    if task.pages is None:
        return None
    from medfuse.report.collect import SliceCollector

    return SliceCollector()


def _write_page(task: PairTask, report: Any, collector: Any, outcome: PairOutcome) -> None:
    """The pair's QC page; a page that cannot be written fails the pair (the report would
    otherwise miss it silently), the fused output stays."""
    from medfuse.report.pair import write_pair_page

    assert task.pages is not None
    try:
        write_pair_page(report, collector, task.pages, task.name)
    except MedfuseError as exc:
        outcome.status, outcome.error = "failed", f"fused, but its QC page failed: {exc}"


def run_task(task: PairTask, engine_loader: Callable[[], Engine]) -> PairOutcome:
    """Fuse one pair, catching its failure: the one per-pair call every backend makes
    (with ``task.pages``, the pair's QC page is written in the same process)."""
    started = now()
    try:
        collector = _page_collector(task)
        report = fuse_files(task.request, engine_loader, on_slice=collector)
        outcome = PairOutcome("fused", "", report.outputs, report.plan.describe(),
                              report.warnings, report.record)
        if collector is not None:
            _write_page(task, report, collector, outcome)
    except MedfuseError as exc:
        outcome = PairOutcome("failed", str(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one pair's surprise must not end the batch
        outcome = PairOutcome("failed", one_line(exc))
    outcome.started, outcome.finished = started, now()
    return outcome


def failed_now(error: str) -> PairOutcome:
    """A failed outcome stamped now: a pair whose worker or actor died before it could
    say anything itself."""
    stamp = now()
    return PairOutcome("failed", error, started=stamp, finished=stamp)


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def limit_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads if torch is loaded (an engine may have loaded it)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


__all__ = ["EngineSpec", "OnDone", "PairOutcome", "PairTask", "available_cpus", "failed_now",
           "limit_torch_threads", "run_task"]
