"""``--report DIR``: fuse and write the QC report, under the one output policy.

The report folder is checked before anything is read or fused (an input, a folder holding
an input or the output, or one that exists without ``--force`` is one usage error), staged
in a hidden folder beside it while pages are written, and renamed into place only when it
is complete: a full disk or a failure half-way leaves no report folder, never half of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from medfuse.errors import UsageError
from medfuse.report.pair import os_error as _os_error
from medfuse.report.pair import page_name, write_pair_page

if TYPE_CHECKING:
    from medfuse.batch import BatchItem, BatchReport, BatchRequest
    from medfuse.engine import Engine
    from medfuse.fusion import FuseReport, FuseRequest
    from medfuse.io.outputs import StagedFolder

#: The page of one output inside its report folder (``fuse --report``).
PAGE = "index.html"
#: Where a batch report keeps each pair's page and thumbnail.
PAIRS = "pairs"


def _resolved(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):
        return p.absolute()


def check_report_folder(folder: Path, force: bool, inputs: Iterable[Path],
                        outputs: Iterable[Path] = ()) -> None:
    """Refuse a report folder that is, holds or lies in an input, is or holds an output
    (``--force`` would replace it), or exists without ``force``."""
    from medfuse.io.outputs import check_output

    target = _resolved(folder)
    for raw in inputs:
        src = _resolved(Path(raw))
        if src == target:
            raise UsageError(f"--report {folder} is an input; give another folder")
        if target in src.parents:
            raise UsageError(f"--report {folder} holds the input {raw}; give another folder")
        if src in target.parents:
            raise UsageError(f"--report {folder} lies inside the input folder {raw}; give "
                             "another folder")
    for out in outputs:
        o = _resolved(Path(out))
        if o == target or target in o.parents:
            raise UsageError(f"--report {folder}: it is or holds the output {out}; give "
                             "another folder")
    check_output(folder, force, tuple(inputs), kind="folder", label="--report")


def _staged(folder: Path, force: bool, inputs: Iterable[Path]) -> StagedFolder:
    from medfuse.io.outputs import StagedFolder

    return StagedFolder(folder, force, tuple(inputs), label="--report")


@contextlib.contextmanager
def _removed_on_failure(staged: StagedFolder, report_dir: Path) -> Iterator[None]:
    """Whatever goes wrong while the report is staged or committed removes what was staged;
    an OS error (a full disk, a folder that refuses files) becomes the report's one line."""
    try:
        yield
    except OSError as exc:
        staged.abort()
        raise _os_error(report_dir, exc) from exc
    except BaseException:
        staged.abort()
        raise


def fuse_with_report(
    request: FuseRequest,
    report_dir: Path,
    engine_loader: Callable[[], Engine],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[FuseReport, Path]:
    """``medfuse fuse ... --report DIR``: fuse one pair (:func:`~medfuse.fusion.fuse_files`)
    and write its QC page as ``DIR/index.html``. Returns the fusion's report and the page."""
    from medfuse.fusion import fuse_files
    from medfuse.report.collect import SliceCollector
    from medfuse.report.page import page_data, render_page

    check_report_folder(report_dir, request.force, (request.mri, request.other),
                        (request.output,))
    collector = SliceCollector()
    report = fuse_files(request, engine_loader, progress, on_slice=collector)
    staged = _staged(report_dir, request.force, (request.mri, request.other))
    with _removed_on_failure(staged, report_dir):
        mri, other, fused, _ = collector.stacks(1 if report.plan.two_d else len(report.plan))
        data = page_data(report, (mri, other, fused), collector.step,
                         Path(request.output).name)
        staged.path_for(PAGE).write_text(render_page(data), encoding="utf-8")
        folder = staged.commit()
    return report, folder / PAGE


def fuse_batch_with_report(
    request: BatchRequest,
    report_dir: Path,
    engine_loader: Callable[[], Engine],
    progress: Callable[[BatchItem, int, int], None] | None = None,
) -> tuple[BatchReport, Path]:
    """``medfuse batch ... --report DIR``: the batch (:func:`~medfuse.batch.fuse_batch`)
    with a page per fused pair, written where it is fused, and ``DIR/index.html`` listing
    every pair. Returns the batch report and the index."""
    from medfuse.batch import fuse_batch
    from medfuse.report.index import write_index

    force = request.template.force
    inputs = [request.in_dir] + ([request.pairs_csv] if request.pairs_csv is not None else [])
    check_report_folder(report_dir, force, inputs, (request.out_dir,))
    staged = _staged(report_dir, force, inputs)
    with _removed_on_failure(staged, report_dir):
        pages = staged.tmp / PAIRS
        pages.mkdir()
        report = fuse_batch(dataclasses.replace(request, pages=pages), engine_loader, progress)
        write_index(report, staged.tmp, PAIRS, page_name)
        folder = staged.commit()
    return report, folder / PAGE


__all__ = [
    "PAGE",
    "PAIRS",
    "check_report_folder",
    "fuse_batch_with_report",
    "fuse_with_report",
    "page_name",
    "write_pair_page",
]
