"""The batch driver: ``medfuse batch`` as one library call, each pair's failure isolated.

The pairs come from the dataset layout (:mod:`medfuse.io.layout`: ``MRI/`` + ``CT|PET|SPECT/``
folders, or a pairs.csv); each goes through :func:`medfuse.fusion.fuse_files`, so a batch
writes exactly what ``medfuse fuse`` would for every pair. A pair that fails is recorded with
one line of error and the batch goes on.

Cohort scale is layered on that one per-pair call (:func:`medfuse.batch.task.run_task`), so every way of
running a batch writes the same bytes:

* **parts** (``num_parts``/``part_id``): a pair belongs to part ``sha256(name) mod K``
  (:func:`part_of`). A hash rather than round-robin over the sorted list, because a pair's
  part then never changes when pairs are added to or removed from the cohort, so a resumed
  or re-run part never redoes (or misses) another part's pairs.
* **the ledger** (:mod:`medfuse.batch.ledger`): one row per pair attempt, per part, so a run can be
  audited and resumed.
* **resume**: a pair is redone when its output or provenance record is missing, an output
  does not match the sha256 its record holds (truncated, replaced, planted), or its last
  ledger row says failed; staged ``.medfuse-*`` leftovers of a killed run (links planted
  under such names too) are removed first.
* **backends**: in this process (serial), a pool of worker processes
  (:mod:`medfuse.batch.pool`) or Ray actors (:mod:`medfuse.batch.ray`); the driver alone
  decides what to do and writes the ledger, workers only fuse.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from medfuse.batch.ledger import Ledger, LedgerRow, latest, ledger_path, now, read_ledger
from medfuse.batch.task import OnDone, PairOutcome, PairTask, run_task
from medfuse.errors import MedfuseError, UsageError
from medfuse.fusion import DEFAULT_BATCH, FuseRequest

if TYPE_CHECKING:
    from medfuse.engine import Engine
    from medfuse.io.layout import Pair

#: What ``batch --format`` writes for each pair; None: PNG for ordinary images, NIfTI for
#: DICOM/NIfTI inputs.
BATCH_EXTENSIONS = {"png": ".png", "nifti": ".nii.gz", "dicom": ""}
BACKENDS = ("local", "ray")

@dataclass
class BatchRequest:
    """``medfuse batch``: where the pairs are, where outputs go, the options every pair
    shares (``template``'s mri/other/output are filled in per pair), and how to run.

    ``workers``: processes (``backend="local"``) or Ray actors (``backend="ray"``; None: one
    per GPU, else one per CPU of the cluster), each with its own engine. ``num_parts`` and
    ``part_id`` (0-based) pick this run's share of the pairs; ``resume`` redoes only what is
    not complete. ``address``: a Ray cluster (None: start a local instance).
    ``gpus_per_worker``: Ray's ``num_gpus`` per actor (None: 1 when the cluster has GPUs).
    """

    in_dir: Path
    out_dir: Path
    pairs_csv: Path | None = None
    format: str | None = None
    skip_existing: bool = False
    batch_size: int = DEFAULT_BATCH
    template: FuseRequest = field(
        default_factory=lambda: FuseRequest(Path(), Path(), Path()))
    resume: bool = False
    num_parts: int = 1
    part_id: int = 0
    workers: int | None = 1
    backend: str = "local"
    address: str | None = None
    gpus_per_worker: float | None = None
    #: Folder where each fused pair's QC page is written, in the process that fuses it
    #: (``batch --report``; :mod:`medfuse.report`). None: no pages.
    pages: Path | None = None


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
    record: Path | None = None
    started: str = ""
    finished: str = ""


@dataclass
class BatchReport:
    """Every pair of a batch (of this part), in order, with its status."""

    items: list[BatchItem]
    out_dir: Path
    ledger: Path | None = None
    #: Lines about the run as a whole (the worker count capped, and why).
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for it in self.items if it.status == status)

    @property
    def failed(self) -> list[BatchItem]:
        return [it for it in self.items if it.status == "failed"]


# -- the pairs -------------------------------------------------------------------------


def _output_for(pair: Pair, out_dir: Path, ext: str | None) -> Path:
    from medfuse.io.layout import IMAGE_SUFFIXES

    if pair.out is not None:
        return out_dir / pair.out
    if ext is None:
        is_image = pair.mri.suffix.lower() in IMAGE_SUFFIXES and not pair.mri.is_dir()
        ext = ".png" if is_image else ".nii.gz"
    return out_dir / f"{pair.name}{ext}"


def _check_out_dir(out_dir: Path, input_folders: Iterable[Path]) -> None:
    """Refuse an output folder that is a file, or is, or lies inside, a folder the pairs
    were found in (``MRI/``, ``PET/``...): its outputs would become inputs of the next run."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output folder {out_dir} exists and is not a folder")
    target = out_dir.resolve()
    for folder in input_folders:
        src = folder.resolve()
        if target == src or src in target.parents:
            raise UsageError(f"refusing to write outputs to {out_dir}: it is inside input "
                             f"folder {folder}")


def _check_run(request: BatchRequest) -> None:
    if request.num_parts < 1:
        raise UsageError(f"--num-parts {request.num_parts}: must be 1 or more")
    if not 0 <= request.part_id < request.num_parts:
        raise UsageError(f"--part-id {request.part_id}: parts are numbered 0 to "
                         f"{request.num_parts - 1}")
    if request.backend not in BACKENDS:
        raise UsageError(f"--backend {request.backend!r}: expected local or ray")
    if request.backend == "ray":
        from medfuse.batch.ray import import_ray

        import_ray()  # a missing extra is a one-line usage error before anything is written
        if request.address:
            from medfuse.batch.ray import check_address

            check_address(request.address)  # bounded: ray.init would retry for minutes
    if request.workers is not None and request.workers < 1:
        raise UsageError(f"--workers {request.workers}: must be 1 or more")
    if request.address and request.backend != "ray":
        raise UsageError("--address applies to --backend ray only")
    if request.resume and request.skip_existing:
        raise UsageError("give --resume or --skip-existing, not both")
    from medfuse.fusion import check_options

    check_options(request.template)  # a bad shared value is one usage error, not N failures


def batch_items(request: BatchRequest) -> list[BatchItem]:
    """The pairs of a batch with their outputs, and the entries that cannot be paired as
    failed items (no partner, ambiguous names, bad pairs.csv rows, a second pair with the
    same output)."""
    from medfuse.io.layout import dataset_pairs, read_pairs_csv

    ext: str | None = None
    if request.format is not None:
        key = request.format.strip().lower()
        if key not in BATCH_EXTENSIONS:
            raise UsageError(f"--format {request.format!r}: expected one of "
                             f"{', '.join(BATCH_EXTENSIONS)}")
        ext = BATCH_EXTENSIONS[key]
    if not request.in_dir.is_dir():
        raise UsageError(f"input folder not found: {request.in_dir}")
    if request.pairs_csv is not None:
        pairs, problems = read_pairs_csv(request.pairs_csv, request.in_dir)
        _check_out_dir(request.out_dir, ())
    else:
        pairs, problems, folders = dataset_pairs(request.in_dir)  # as eval and train read it
        _check_out_dir(request.out_dir, folders)
    if not pairs and not problems:
        raise UsageError(f"no matching pairs in {request.in_dir}")
    entries = _entries(request.pairs_csv, pairs, problems)
    items: list[BatchItem] = []
    first: dict[Path, str] = {}
    for p, entry in zip(pairs, entries):
        out = _output_for(p, request.out_dir, ext)
        if out in first:  # two pairs, one output: the second would replace the first
            items.append(BatchItem(entry, p.mri, p.other, None, "failed",
                                   f"its output {out.name} is also {first[out]}'s output"))
            continue
        first[out] = entry
        items.append(BatchItem(p.name, p.mri, p.other, out))
    items += [BatchItem(entry, None, None, None, "failed", reason) for entry, reason in problems]
    return items


def _entries(pairs_csv: Path | None, pairs: list[Pair],
             problems: list[tuple[str, str]]) -> list[str]:
    """What to call each pair in a message about it: its pairs.csv line where it came from
    one (every data row becomes one pair or one problem, in order), else its name."""
    if pairs_csv is None:
        return [p.name for p in pairs]
    prefix = f"{pairs_csv.name} line "
    bad = {int(e[len(prefix):]) for e, _ in problems
           if e.startswith(prefix) and e[len(prefix):].isdigit()}
    lines = (n for n in range(2, 2 + len(pairs) + len(problems)) if n not in bad)
    return [f"{prefix}{n}" for n, _ in zip(lines, pairs)]


def part_of(name: str, num_parts: int) -> int:
    """The part (0 to ``num_parts - 1``) a pair named ``name`` belongs to: a stable hash,
    the same on every machine and Python version, independent of the other pairs."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % num_parts


# -- completion, resume ------------------------------------------------------------------


def record_path(output: Path) -> Path:
    """Where :func:`~medfuse.fusion.fuse_files` writes the provenance record of ``output``."""
    from medfuse.provenance import record_path as provenance_record_path

    return provenance_record_path(output)


def _output_present(output: Path) -> bool:
    """The output exists: a file, a folder (DICOM series, PNG slices) or, for a volume
    written as ``name.png``, its slices ``name_0000.png``..."""
    if output.exists():
        return True
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    pattern = f"{glob.escape(stem)}_[0-9][0-9][0-9][0-9]*{glob.escape(output.suffix)}"
    return bool(output.suffix) and next(output.parent.glob(pattern), None) is not None


def _relative(path: Path | None, out_dir: Path) -> str:
    if path is None:
        return ""
    try:
        return path.relative_to(out_dir).as_posix()
    except ValueError:
        return str(path)


def is_complete(item: BatchItem, last_status: str | None) -> bool:
    """Whether a pair needs no more work: its last attempt did not fail, its output is
    there, and so is its provenance record with every output it lists matching the sha256
    it holds (the outputs and the record are committed together, so a kill or a planted
    or truncated file leaves the pair to be redone)."""
    from medfuse.provenance import verify_outputs

    assert item.output is not None
    if last_status == "failed" or not _output_present(item.output):
        return False
    return verify_outputs(record_path(item.output)) is None


def clean_leftovers(items: Iterable[BatchItem], sharded: bool) -> list[Path]:
    """Remove what a killed run left staged for these pairs (``.medfuse-NAME.*`` beside each
    output or record); PNG slice staging (``.medfuse-slices.*``) names no pair, so it is
    removed only when the run is not sharded (another part may be writing it now). Each
    folder is listed once, however many pairs write into it."""
    from medfuse.io.outputs import STAGING_MARK, remove_staging

    targets: dict[Path, set[str]] = {}
    for it in items:
        if it.output is not None:
            for target in (it.output, record_path(it.output)):
                targets.setdefault(target.parent, set()).add(target.name)
    removed: list[Path] = []
    for folder, names in targets.items():
        try:
            staged = [p for p in folder.iterdir() if p.name.startswith(STAGING_MARK)]
        except OSError:  # no folder yet: nothing staged
            continue
        for p in staged:
            rest = p.name[len(STAGING_MARK):]
            cuts = [i for i, ch in enumerate(rest) if ch == "."]
            mine = any(rest[:i] in names for i in cuts)
            if mine or (not sharded and rest.startswith("slices.") and rest.endswith(".part")):
                remove_staging(p)
                removed.append(p)
    return removed


# -- the batch ---------------------------------------------------------------------------


def _row(item: BatchItem, out_dir: Path, part: str) -> LedgerRow:
    return LedgerRow(
        item.name, "" if item.mri is None else str(item.mri),
        "" if item.other is None else str(item.other), item.status, item.error,
        _relative(item.output, out_dir), _relative(item.record, out_dir),
        item.started, item.finished, part,
    )


class _InputIndex:
    """Every input of a batch, resolved once, so checking each output against all of them
    (the output policy: never an input, never inside an input folder, never holding an
    input) costs a few set lookups instead of a pass over the cohort (quadratic: hours
    for ten thousand pairs)."""

    def __init__(self, paths: Iterable[Path]) -> None:
        from medfuse.io.outputs import safe_resolve

        self.files: set[Path] = set()
        self.holder: dict[Path, Path] = {}  # a folder -> one input below it
        for p in paths:
            r = safe_resolve(Path(p))
            self.files.add(r)
            for parent in r.parents:
                self.holder.setdefault(parent, r)

    def clashing(self, output: Path) -> list[Path]:
        """The inputs the output policy must see for ``output``: one it is, ones it lies
        inside, one it holds."""
        from medfuse.io.outputs import safe_resolve

        target = safe_resolve(output)
        hits = [q for q in (target, *target.parents) if q in self.files]
        if target in self.holder:
            hits.append(self.holder[target])
        return hits


@dataclass
class _Run:
    """The driver's state: items, ledger, progress."""

    items: list[BatchItem]
    out_dir: Path
    ledger: Ledger
    part: str
    progress: Callable[[BatchItem, int, int], None] | None
    done: int = 0

    def finish(self, item: BatchItem) -> None:
        if not item.started:
            item.started = item.finished = now()
        self.ledger.append(_row(item, self.out_dir, self.part))
        self.done += 1
        if self.progress is not None:
            self.progress(item, self.done, len(self.items))


def _decide(request: BatchRequest, items: list[BatchItem], run: _Run) -> list[PairTask]:
    """Settle every item that needs no fusing (unpairable, done, refused) and return the
    tasks for the rest, with their per-pair requests."""
    from medfuse.io.outputs import check_output, safe_resolve

    fmt = request.format.strip().lower() if request.format else None
    inputs = _InputIndex(p for it in items for p in (it.mri, it.other) if p is not None)
    previous = latest(read_ledger(request.out_dir)) if request.resume else {}
    tasks: list[PairTask] = []
    for n, it in enumerate(items):
        if it.status == "failed":
            run.finish(it)
            continue
        assert it.mri is not None and it.other is not None and it.output is not None
        force = request.template.force
        try:
            if request.resume:
                last = previous.get((it.name, _relative(it.output, request.out_dir)))
                if is_complete(it, None if last is None else last.status):
                    it.status = "skipped"
                force = True  # redoing a pair of this run replaces what it left
            elif (request.skip_existing and (it.output.exists() or it.output.is_symlink())
                  and safe_resolve(it.output) not in inputs.files):
                it.status = "skipped"
            if it.status == "pending":
                kind = "folder" if fmt == "dicom" else "file"
                # the policy first (never an input, never a pipe), then "exists", which in
                # a batch names the flags a rerun wants
                check_output(it.output, True, [it.mri, it.other, *inputs.clashing(it.output)],
                             kind=kind)
                record = record_path(it.output)
                check_output(record, True, [it.mri, it.other, *inputs.clashing(record)],
                             label="provenance record")
                if not force:
                    _refuse_rerun(it.output, record)
        except MedfuseError as exc:
            it.status, it.error = "failed", str(exc)
        if it.status != "pending":
            if it.status == "skipped":
                record = record_path(it.output)
                it.record = record if record.exists() else None
            run.finish(it)
            continue
        one = replace(request.template, mri=it.mri, other=it.other, output=it.output,
                      format="dicom" if fmt == "dicom" else None, preview=None, force=force)
        tasks.append(PairTask(n, it.name, one, request.pages))
    return tasks


#: What a pair that exists already says in a batch: a rerun of the same command most likely
#: means to finish or extend an earlier run, which --force would redo from scratch.
RERUN_HINT = ("use --resume to finish an interrupted batch, --skip-existing to leave existing "
              "outputs, or --force to redo them")


def _refuse_rerun(output: Path, record: Path) -> None:
    """A pair whose output or record exists, in a batch without --force/--resume/
    --skip-existing: refused naming the flags a rerun wants."""
    for path, label in ((output, ""), (record, "provenance record ")):
        if path.exists() or path.is_symlink():
            raise UsageError(f"{label}{path} exists ({RERUN_HINT})")


def _serial(tasks: list[PairTask], engine_loader: Callable[[], Engine], on_done: OnDone) -> None:
    # Loaded before the first pair: unusable weights are the run's failure (one line),
    # not every pair's.
    engine = engine_loader()

    def get_engine() -> Engine:
        return engine

    for i, task in enumerate(tasks):
        on_done(i, run_task(task, get_engine))


def fuse_batch(
    request: BatchRequest,
    engine_loader: Callable[[], Engine],
    progress: Callable[[BatchItem, int, int], None] | None = None,
) -> BatchReport:
    """Fuse every pair of a folder or pairs.csv (or of one part of them); a pair that
    fails is recorded and the batch goes on. Every attempt is a row of the part's ledger.

    The engine is loaded once per process that fuses, when its first pair needs it; for
    worker processes and Ray actors ``engine_loader`` must be picklable (an
    :class:`~medfuse.batch.task.EngineSpec`, a class, a module-level function). ``progress``
    is called after each item with (item, items done, items in this part).
    """
    _check_run(request)
    items = batch_items(request)
    if request.num_parts > 1:
        items = [it for it in items
                 if part_of(it.name, request.num_parts) == request.part_id]
    sharded = request.num_parts > 1
    part = f"{request.part_id}/{request.num_parts}" if sharded else ""
    path = ledger_path(request.out_dir, (request.part_id, request.num_parts))
    report = BatchReport(items, request.out_dir, path)
    if not items:
        return report
    ledger = Ledger(path)
    ledger.check()  # a link or FIFO under the ledger's name: one line before any work
    if request.resume or request.skip_existing:
        clean_leftovers(items, sharded)
    run = _Run(items, request.out_dir, ledger, part, progress)
    tasks = _decide(request, items, run)

    def on_done(i: int, outcome: PairOutcome) -> None:
        it = items[tasks[i].index]
        it.status, it.error, it.outputs = outcome.status, outcome.error, outcome.outputs
        it.plan, it.warnings, it.record = outcome.plan, outcome.warnings, outcome.record
        it.started, it.finished = outcome.started, outcome.finished
        run.finish(it)

    if not tasks:
        return report
    if request.backend == "ray":
        from medfuse.batch.ray import run_ray

        run_ray(tasks, engine_loader, on_done, address=request.address,
                workers=request.workers, gpus_per_worker=request.gpus_per_worker)
    elif (request.workers or 1) > 1 and len(tasks) > 1:
        from medfuse.batch.pool import run_pool

        run_pool(tasks, engine_loader, on_done, workers=request.workers or 1,
                 say=report.notes.append)
    else:
        _serial(tasks, engine_loader, on_done)
    return report


__all__ = [
    "BACKENDS",
    "BATCH_EXTENSIONS",
    "BatchItem",
    "BatchReport",
    "BatchRequest",
    "RERUN_HINT",
    "batch_items",
    "clean_leftovers",
    "fuse_batch",
    "is_complete",
    "part_of",
    "record_path",
]
