"""Many pairs: ``medfuse batch`` as one library call, each pair's failure isolated.

The pairs come from the dataset layout (:mod:`medfuse.io.layout`: ``MRI/`` + ``CT|PET|SPECT/``
folders, or a pairs.csv); each goes through :func:`medfuse.fusion.fuse_files`, so a batch
writes exactly what ``medfuse fuse`` would for every pair. A pair that fails is recorded with
one line of error and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from medfuse.errors import MedfuseError, UsageError
from medfuse.fusion import DEFAULT_BATCH, FuseRequest, fuse_files

if TYPE_CHECKING:
    from medfuse.engine import Engine
    from medfuse.io.layout import Pair

#: What ``batch --format`` writes for each pair; None: PNG for ordinary images, NIfTI for
#: DICOM/NIfTI inputs.
BATCH_EXTENSIONS = {"png": ".png", "nifti": ".nii.gz", "dicom": ""}


@dataclass
class BatchRequest:
    """``medfuse batch``: where the pairs are, where outputs go, and the options every pair
    shares (``template``'s mri/other/output are filled in per pair)."""

    in_dir: Path
    out_dir: Path
    pairs_csv: Path | None = None
    format: str | None = None
    skip_existing: bool = False
    batch_size: int = DEFAULT_BATCH
    template: FuseRequest = field(
        default_factory=lambda: FuseRequest(Path(), Path(), Path()))


@dataclass
class BatchItem:
    """One pair of a batch and what became of it."""

    name: str
    mri: Path | None
    other: Path | None
    output: Path | None
    status: str = "pending"  # "fused", "skipped", "failed"
    error: str = ""
    outputs: list[Path] = field(default_factory=list)
    plan: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    """Every pair of a batch, in order, with its status."""

    items: list[BatchItem]
    out_dir: Path

    def count(self, status: str) -> int:
        return sum(1 for it in self.items if it.status == status)

    @property
    def failed(self) -> list[BatchItem]:
        return [it for it in self.items if it.status == "failed"]


def _output_for(pair: Pair, out_dir: Path, ext: str | None) -> Path:
    from medfuse.io.layout import IMAGE_SUFFIXES

    if pair.out is not None:
        return out_dir / pair.out
    if ext is None:
        is_image = pair.mri.suffix.lower() in IMAGE_SUFFIXES and not pair.mri.is_dir()
        ext = ".png" if is_image else ".nii.gz"
    return out_dir / f"{pair.name}{ext}"


def _check_out_dir(out_dir: Path, input_folders: Iterable[Path]) -> None:
    """Refuse an output folder that is, or lies inside, a folder the pairs were found in
    (``MRI/``, ``PET/``...): its outputs would become inputs of the next run."""
    target = out_dir.resolve()
    for folder in input_folders:
        src = folder.resolve()
        if target == src or src in target.parents:
            raise UsageError(f"refusing to write outputs to {out_dir}: it is inside input "
                             f"folder {folder}")


def batch_items(request: BatchRequest) -> list[BatchItem]:
    """The pairs of a batch with their outputs, and the entries that cannot be paired as
    failed items (no partner, ambiguous names, bad pairs.csv rows)."""
    from medfuse.io.layout import read_pairs_csv, read_task, task_folders

    ext: str | None = None
    if request.format is not None:
        key = request.format.strip().lower()
        if key not in BATCH_EXTENSIONS:
            raise UsageError(f"--format {request.format!r}: expected one of "
                             f"{', '.join(BATCH_EXTENSIONS)}")
        ext = BATCH_EXTENSIONS[key]
    if request.pairs_csv is not None:
        if not request.in_dir.is_dir():
            raise UsageError(f"input folder not found: {request.in_dir}")
        pairs, problems = read_pairs_csv(request.pairs_csv, request.in_dir)
    else:
        if not request.in_dir.is_dir():
            raise UsageError(f"input folder not found: {request.in_dir}")
        task = read_task(request.in_dir)
        pairs, problems = task.pairs, task.problems
        _check_out_dir(request.out_dir, task_folders(request.in_dir) or ())
    if not pairs and not problems:
        raise UsageError(f"no matching pairs in {request.in_dir}")
    items = [BatchItem(p.name, p.mri, p.other, _output_for(p, request.out_dir, ext))
             for p in pairs]
    items += [BatchItem(entry, None, None, None, "failed", reason) for entry, reason in problems]
    return items


def _one_line(exc: BaseException) -> str:
    """An unexpected exception as one line naming its type."""
    text = " ".join(str(exc).split()) or "no details"
    return f"{type(exc).__name__}: {text}"


def fuse_batch(
    request: BatchRequest,
    engine_loader: Callable[[], Engine],
    progress: Callable[[BatchItem, int, int], None] | None = None,
) -> BatchReport:
    """Fuse every pair of a folder or pairs.csv; a pair that fails is recorded and the batch
    goes on. The engine is loaded once, when the first pair needs it. ``progress`` is called
    after each item with (item, items done, items in all)."""
    from medfuse.io.outputs import check_output

    items = batch_items(request)
    out_dir = request.out_dir
    inputs = [p for it in items for p in (it.mri, it.other) if p is not None]
    fmt = request.format.strip().lower() if request.format else None
    engine: Engine | None = None

    def get_engine() -> Engine:
        nonlocal engine
        if engine is None:
            engine = engine_loader()
        return engine

    for n, it in enumerate(items, start=1):
        if it.status == "failed":
            if progress is not None:
                progress(it, n, len(items))
            continue
        assert it.mri is not None and it.other is not None and it.output is not None
        try:
            exists = it.output.exists() or it.output.is_symlink()
            if exists and request.skip_existing and not any(
                    it.output.resolve() == Path(p).resolve() for p in inputs):
                it.status = "skipped"
            else:
                check_output(it.output, request.template.force, inputs,
                             kind="folder" if fmt == "dicom" else "file")
                one = replace(request.template, mri=it.mri, other=it.other, output=it.output,
                              format="dicom" if fmt == "dicom" else None, preview=None)
                report = fuse_files(one, get_engine)
                it.status, it.outputs = "fused", report.outputs
                it.plan, it.warnings = report.plan.describe(), report.warnings
        except MedfuseError as exc:
            it.status, it.error = "failed", str(exc)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one pair's surprise must not end the batch
            it.status, it.error = "failed", _one_line(exc)
        if progress is not None:
            progress(it, n, len(items))
    return BatchReport(items, out_dir)


__all__ = [
    "BATCH_EXTENSIONS",
    "BatchItem",
    "BatchReport",
    "BatchRequest",
    "batch_items",
    "fuse_batch",
]
