"""Run fusion methods over a dataset, score every output, aggregate, write csv/json.

This is the library behind ``medfuse eval``. The rule that makes its numbers trustworthy:
each method's fused image is scored exactly as it would be written to an 8-bit PNG (no
stretch), with :func:`medfuse.metrics.compute_metrics_colour` on the 0..255 scale, so
scoring a saved file later (``--fused``) gives the same numbers as scoring it in memory.
Sources are scored as read (MRI grey; CT grey; PET/SPECT in colour, reduced to luminance
by the metric profile).

Dataset layout (as for ``medfuse batch``): a *task folder* holds ``MRI/`` and one of
``CT/``, ``PET/``, ``SPECT/``, pairs matched by file stem. ``discover_tasks`` accepts a task
folder or a root holding several (``<root>/<TASK>`` or, with a split, ``<root>/<TASK>/<split>``).
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medfuse.errors import InputError, MedfuseError, UsageError
from medfuse.io.outputs import atomic_output, check_output
from medfuse.io.images import IMAGE_SUFFIXES, ImageData, read_image
from medfuse.metrics import HIGHER_IS_BETTER, METRIC_NAMES, PROFILES, compute_metrics_colour

if TYPE_CHECKING:
    from medfuse.engine import Engine

FUNCTIONAL_DIRS = ("CT", "PET", "SPECT")
#: Folder names that are data splits, never task names.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

# -- dataset discovery ------------------------------------------------------------------------


@dataclass(frozen=True)
class PairSpec:
    """One registered source pair of a task."""

    task: str
    name: str
    mri: Path
    other: Path


@dataclass
class TaskData:
    """A task folder: its pairs, the modality of its second folder, and unmatched files."""

    name: str
    folder: Path
    modality: str  # "ct", "pet" or "spect"
    pairs: list[PairSpec]
    unmatched: list[str] = field(default_factory=list)

    @property
    def other_label(self) -> str:
        return self.modality.upper()


def _subdir(root: Path, name: str) -> Path | None:
    """A child folder whose name matches ``name`` in any case."""
    try:
        children = list(root.iterdir())
    except OSError:
        return None
    for child in sorted(children):
        if child.is_dir() and child.name.upper() == name.upper():
            return child
    return None


def images_by_stem(folder: Path) -> dict[str, Path]:
    """Image files of a folder keyed by stem (first suffix in sorted order wins)."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            found.setdefault(p.stem, p)
    return found


def _layout(folder: Path) -> tuple[Path, Path] | None:
    """(MRI folder, second folder) if ``folder`` is a task folder; UsageError if it holds
    several second-modality folders (which pair with the MRI would be a guess)."""
    mri = _subdir(folder, "MRI")
    others = [d for d in (_subdir(folder, n) for n in FUNCTIONAL_DIRS) if d is not None]
    if mri is None or not others:
        return None
    if len(others) > 1:
        raise UsageError(
            f"{folder} holds several second-modality folders "
            f"({', '.join(d.name for d in others)}); give one task per folder"
        )
    return mri, others[0]


def load_task(folder: Path, name: str) -> TaskData:
    """Pairs of one task folder, matched by stem."""
    layout = _layout(folder)
    if layout is None:
        raise UsageError(f"{folder} must hold MRI/ and one of CT/, PET/, SPECT/")
    mri_dir, other_dir = layout
    mris, others = images_by_stem(mri_dir), images_by_stem(other_dir)
    pairs = [PairSpec(name, s, mris[s], others[s]) for s in mris if s in others]
    unmatched = [f"{mri_dir.name}/{mris[s].name}: no matching file in {other_dir.name}/"
                 for s in mris if s not in others]
    unmatched += [f"{other_dir.name}/{others[s].name}: no matching MRI"
                  for s in others if s not in mris]
    return TaskData(name, folder, other_dir.name.lower(), pairs, unmatched)


def _task_name(folder: Path, split: str | None) -> str:
    """A task folder named like a split (``MRI_CT/val``) takes its parent's name."""
    if folder.name.lower() in SPLIT_NAMES or (split and folder.name == split):
        return folder.resolve().parent.name
    return folder.name


def discover_tasks(data_dir: Path, split: str | None = None) -> list[TaskData]:
    """Find the task folders under ``data_dir``.

    ``data_dir`` is a task folder itself, or holds ``<split>/`` (with ``split``), or holds
    task folders ``<TASK>/`` (without ``split``) or ``<TASK>/<split>/`` (with it). A root of
    splits without ``split`` (``MRI_CT/{train,val}``) is refused rather than scored as two
    tasks called "train" and "val".
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"data folder not found: {data_dir}")
    if _layout(data_dir) is not None:
        if split and data_dir.name != split:
            raise UsageError(
                f"--split {split}: {data_dir} is already a task folder (MRI/ + second "
                "modality); drop --split or give its parent"
            )
        tasks = [load_task(data_dir, _task_name(data_dir, split))]
    elif split and (data_dir / split).is_dir() and _layout(data_dir / split) is not None:
        tasks = [load_task(data_dir / split, data_dir.name)]
    else:
        children = sorted(c for c in data_dir.iterdir() if c.is_dir() and not c.name.startswith("."))
        tasks = []
        for child in children:
            folder = child / split if split else child
            if folder.is_dir() and _layout(folder) is not None:
                tasks.append(load_task(folder, child.name))
        if not tasks:
            splits = sorted({g.name for c in children for g in c.iterdir()
                             if g.is_dir() and _layout(g) is not None}) if children else []
            hint = f" (found splits {', '.join(splits)}: pick one with --split)" if splits and not split else ""
            where = f"<TASK>/{split}/" if split else "<TASK>/"
            raise UsageError(
                f"{data_dir} holds no task folder: expected MRI/ + CT/|PET/|SPECT/ in it or "
                f"in {where}{hint}"
            )
        if not split and all(t.name.lower() in SPLIT_NAMES for t in tasks):
            raise UsageError(
                f"{data_dir} holds the splits {', '.join(t.name for t in tasks)}, not tasks: "
                "pick one with --split"
            )
    if not any(t.pairs for t in tasks):
        raise UsageError(f"no matching MRI/second-image pairs under {data_dir}")
    return tasks


# -- methods -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSpec:
    """One column of the comparison: a built-in rule, GeSeNet with some weights, or a
    folder of fused images made elsewhere."""

    label: str
    kind: str  # "gesenet", "fused", or a baseline name
    path: Path | None = None  # weights (gesenet) or folder (fused); None = default weights

    def describe(self) -> str:
        from medfuse.baselines import BASELINE_DESCRIPTIONS

        if self.kind == "gesenet":
            return f"GeSeNet, weights {self.path}" if self.path else "GeSeNet, default weights"
        if self.kind == "fused":
            return f"existing fused images in {self.path}"
        return BASELINE_DESCRIPTIONS.get(self.kind, self.kind)


def _split_label(text: str) -> tuple[str | None, str]:
    """``LABEL=SPEC`` -> (LABEL, SPEC); text without a valid label prefix is all SPEC (a
    path may contain '=')."""
    head, sep, rest = text.partition("=")
    if sep and _LABEL_RE.match(head.strip()) and ":" not in head and "/" not in head:
        return head.strip(), rest.strip()
    return None, text.strip()


def _check_label(label: str, option: str) -> str:
    if not _LABEL_RE.match(label):
        raise UsageError(
            f"{option} label {label!r}: use letters, digits and _ . + - (it names files and folders)"
        )
    return label


def parse_method(text: str) -> MethodSpec:
    """Parse ``--method``: ``average``, ``gesenet``, ``gesenet:PATH``, each optionally
    prefixed ``LABEL=``."""
    from medfuse.baselines import canonical_name

    label, spec = _split_label(text)
    if not spec:
        raise UsageError(f"--method {text!r}: empty method")
    kind, colon, arg = spec.partition(":")
    if kind.strip().lower() == "gesenet":
        if colon and not arg.strip():
            raise UsageError(f"--method {text!r}: give a weights path after 'gesenet:'")
        path = Path(arg.strip()).expanduser() if colon else None
        if path is not None and not path.is_file():
            raise UsageError(f"--method {text}: weights file not found: {path}")
        default = "gesenet" if path is None else f"gesenet-{path.stem}"
        return MethodSpec(_check_label(label or default, "--method"), "gesenet", path)
    if colon:
        raise UsageError(f"--method {text!r}: only gesenet takes a ':PATH' argument")
    try:
        name = canonical_name(kind)
    except UsageError as exc:
        raise UsageError(f"--method {text!r}: {exc}; or gesenet[:PATH]") from None
    return MethodSpec(_check_label(label or name, "--method"), name)


def parse_fused(text: str) -> MethodSpec:
    """Parse ``--fused``: ``DIR`` or ``LABEL=DIR`` (default label: the folder's name)."""
    label, spec = _split_label(text)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise UsageError(f"--fused: folder not found: {folder}")
    default = folder.resolve().name or "fused"
    if not label and not _LABEL_RE.match(default):
        default = "fused"
    return MethodSpec(_check_label(label or default, "--fused"), "fused", folder)


def check_unique(methods: Sequence[MethodSpec]) -> None:
    """Labels name table columns and folders: two methods may not share one."""
    seen: set[str] = set()
    for m in methods:
        if m.label in seen:
            raise UsageError(
                f"two methods are labelled {m.label!r}; name them with LABEL=SPEC "
                "(e.g. --method old=gesenet:a.pth --method new=gesenet:b.pth)"
            )
        seen.add(m.label)
    if not methods:
        raise UsageError("nothing to score: give at least one --method or --fused")


def parse_profiles(values: Iterable[str] | None) -> list[str]:
    """``standard``, ``toolbox2022`` (repeatable) or ``all``; default standard."""
    out: list[str] = []
    for v in values or ["standard"]:
        for part in str(v).split(","):
            p = part.strip().lower()
            if not p:
                continue
            names = list(PROFILES) if p == "all" else [p]
            for name in names:
                if name not in PROFILES:
                    raise UsageError(f"--profile {part!r}: expected {', '.join(PROFILES)} or all")
                if name not in out:
                    out.append(name)
    return out or ["standard"]


def parse_metrics(values: Iterable[str] | None) -> list[str]:
    """Metric names (case-insensitive, repeatable or comma-separated); default all."""
    if not values:
        return list(METRIC_NAMES)
    by_lower = {m.lower(): m for m in METRIC_NAMES}
    out: list[str] = []
    for v in values:
        for part in str(v).split(","):
            key = part.strip().lower()
            if not key:
                continue
            if key not in by_lower:
                raise UsageError(f"--metric {part!r}: expected one of {', '.join(METRIC_NAMES)}")
            if by_lower[key] not in out:
                out.append(by_lower[key])
    return [m for m in METRIC_NAMES if m in out]


def fused_folder(method: MethodSpec, task: TaskData, n_tasks: int, split: str | None) -> Path:
    """Where a ``--fused`` method's images for ``task`` are: ``DIR/<TASK>/<split>``,
    ``DIR/<TASK>`` (the layout ``--save-fused`` writes), or ``DIR`` itself for a single
    task. Several tasks must be kept apart, since stems repeat across tasks."""
    assert method.path is not None
    root = method.path
    for cand in ([root / task.name / split] if split else []) + [root / task.name]:
        if cand.is_dir():
            return cand
    if n_tasks > 1:
        raise UsageError(
            f"--fused {root}: with several tasks it must hold one folder per task "
            f"(no {root / task.name})"
        )
    return root


# -- scoring -------------------------------------------------------------------------------


@dataclass
class ImageScore:
    """One row of the per-image table: a method's output for one pair, in one profile."""

    task: str
    image: str
    method: str
    profile: str
    values: dict[str, float]
    status: str = "ok"  # "ok", "missing" (no fused file), "error" (could not fuse/score)
    note: str = ""


@dataclass
class Problem:
    """Something that kept a pair (or a method's output for it) out of the scores."""

    task: str
    image: str
    method: str  # "" when the pair itself failed (all methods)
    kind: str  # "missing", "error", "unmatched"
    message: str


@dataclass
class Example:
    """Images kept for the report's example grid: 8-bit sources and each method's output."""

    task: str
    image: str
    mri: np.ndarray
    other: np.ndarray
    fused: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Summary:
    """Mean and spread of one metric for one method on one task, in one profile."""

    task: str
    method: str
    profile: str
    metric: str
    mean: float
    std: float
    n: int  # finite values the mean is over
    n_nan: int  # scored images where the metric was undefined


@dataclass
class EvalResult:
    """Everything one evaluation produced, for tables, files and the report."""

    tasks: list[TaskData]
    methods: list[MethodSpec]
    profiles: list[str]
    metrics: list[str]
    rows: list[ImageScore]
    problems: list[Problem]
    examples: list[Example]
    method_info: dict[str, str]
    data_dir: Path | None = None
    split: str | None = None
    seconds: float = 0.0

    @property
    def missing(self) -> list[Problem]:
        return [p for p in self.problems if p.kind == "missing"]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.kind == "error"]

    def summaries(self) -> list[Summary]:
        return summarise(self.rows, self.metrics)

    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks if t.pairs]


def to_8bit(image: np.ndarray) -> np.ndarray:
    """A [0, 1] image as the uint8 values ``write_image`` stores (round, not truncate)."""
    from medfuse.io.images import to_uint

    return to_uint(image, 8)


def _as_255(img: ImageData, exact: bool) -> np.ndarray:
    """Pixels on 0..255 as float64; 8-bit files come back as exact integers (a float32
    k/255 times 255 is only close to k)."""
    px = img.pixels.astype(np.float64) * 255.0
    return np.rint(px) if exact else px


def read_fused(path: Path) -> np.ndarray:
    """A fused file on 0..255 as stored: 8-bit grey or RGB values unchanged (no grey
    collapsing, no alpha compositing), other modes through ``read_image``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "RGB"):
                return np.asarray(im, dtype=np.float64)
    except UnidentifiedImageError as exc:
        raise InputError(f"{path}: not an image file medfuse can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot decode image ({exc})") from exc
    img = read_image(path)
    return _as_255(img, img.bit_depth == 8)


def _example_indices(n: int, k: int) -> set[int]:
    """k pairs spread evenly over a task's sorted list (first, last and between), so the
    examples show different cases rather than neighbouring slices."""
    if k <= 0 or n <= 0:
        return set()
    if k >= n:
        return set(range(n))
    return {int(round(i)) for i in np.linspace(0, n - 1, k)}


@dataclass
class _Loaded:
    spec: PairSpec
    prepared: Any  # PreparedPair
    a255: np.ndarray
    b255: np.ndarray


def _load_pair(spec: PairSpec, modality: str, resize: bool) -> _Loaded:
    from medfuse.prepare.pair import prepare_pair, resize_to

    a, b = read_image(spec.mri), read_image(spec.other)
    prepared = prepare_pair(a, b, modality=modality, resize=resize, name=spec.name)
    resized = b.shape != a.shape
    if resized:
        b = ImageData(resize_to(b.pixels, a.shape), b.path, b.bit_depth)
    return _Loaded(spec, prepared, _as_255(a, a.bit_depth == 8),
                   _as_255(b, b.bit_depth == 8 and not resized))


def _nan_values(metrics: Sequence[str]) -> dict[str, float]:
    return {m: math.nan for m in metrics}


def evaluate(
    tasks: Sequence[TaskData],
    methods: Sequence[MethodSpec],
    profiles: Sequence[str] = ("standard",),
    metrics: Sequence[str] | None = None,
    *,
    weights: Path | None = None,
    device: str = "auto",
    batch_size: int = 8,
    resize: bool = False,
    save_fused: Path | None = None,
    force: bool = False,
    examples: int = 3,
    split: str | None = None,
    data_dir: Path | None = None,
    engines: dict[str, Engine] | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Fuse every pair of every task with every method and score each output.

    ``weights`` are the default GeSeNet weights (for ``gesenet`` without a path). ``engines``
    may supply loaded engines by method label (tests, notebooks); otherwise each GeSeNet
    method loads its own. Pairs that cannot be read or fused, and ``--fused`` files that
    are missing or the wrong size, become :class:`Problem` entries and are left out of the
    means; they never stop the run. ``progress`` is called with the number of
    (pair, method) units just finished.
    """
    t0 = time.perf_counter()
    methods = list(methods)
    check_unique(methods)
    profiles = parse_profiles(profiles)
    metric_list = parse_metrics(metrics)
    tasks = list(tasks)

    # Load every network up front: a bad weights file should fail before minutes of work.
    loaded: dict[str, Engine] = dict(engines or {})
    info: dict[str, str] = {}
    for m in methods:
        if m.kind == "gesenet":
            if m.label not in loaded:
                from medfuse.engine import load_model

                loaded[m.label] = load_model(m.path or weights, device, batch_size=batch_size)
            eng = loaded[m.label]
            sha = eng.weights_sha256
            info[m.label] = (f"GeSeNet, weights {eng.weights_path}"
                             + (f" (sha256 {sha[:12]})" if sha else "") + f", {eng.device}")
        else:
            info[m.label] = m.describe()

    if save_fused is not None:
        _check_save_targets(save_fused, tasks, methods, force)
    # Resolve every --fused folder now too: a wrong layout is a usage error, not a
    # discovery after the first task has been fused.
    fused_dirs = {(task.name, m.label): images_by_stem(fused_folder(m, task, len(tasks), split))
                  for task in tasks for m in methods if m.kind == "fused"}

    rows: list[ImageScore] = []
    problems: list[Problem] = []
    kept: list[Example] = []
    step = max(1, batch_size)

    def add_failure(task: str, image: str, method: str, kind: str, message: str,
                    all_methods: bool = False) -> None:
        """One problem entry, and a not-scored row per profile (and per method when the
        pair itself failed) so the per-image table accounts for every pair."""
        problems.append(Problem(task, image, "" if all_methods else method, kind, message))
        for label in [m.label for m in methods] if all_methods else [method]:
            for prof in profiles:
                rows.append(ImageScore(task, image, label, prof, _nan_values(metric_list),
                                       kind, message))

    for task in tasks:
        problems.extend(Problem(task.name, u.split(":")[0], "", "unmatched", u) for u in task.unmatched)
        wanted = _example_indices(len(task.pairs), examples)
        for start in range(0, len(task.pairs), step):
            chunk = task.pairs[start : start + step]
            ready: list[tuple[int, _Loaded]] = []
            for offset, spec in enumerate(chunk):
                try:
                    ready.append((start + offset, _load_pair(spec, task.modality, resize)))
                except MedfuseError as exc:
                    add_failure(task.name, spec.name, "", "error", str(exc), all_methods=True)
                    if progress:
                        progress(len(methods))
            if not ready:
                continue
            chunk_examples = {i: Example(task.name, ld.spec.name, to_8bit(ld.prepared.mri_y),
                                         _source_8bit(ld.b255))
                              for i, ld in ready if i in wanted}
            for m in methods:
                outputs = _run_method(m, [ld for _, ld in ready], loaded,
                                      fused_dirs.get((task.name, m.label)))
                for (i, ld), (image, error, kind) in zip(ready, outputs):
                    name = ld.spec.name
                    if image is None:
                        add_failure(task.name, name, m.label, kind, error)
                        continue
                    if image.shape[:2] != ld.a255.shape:
                        h, w = image.shape[:2]
                        add_failure(task.name, name, m.label, "error",
                                    f"fused image is {w}x{h} but the sources are "
                                    f"{ld.a255.shape[1]}x{ld.a255.shape[0]}")
                        continue
                    if save_fused is not None and m.kind != "fused":
                        _save(save_fused / m.label / task.name / f"{name}.png", image, force)
                    try:
                        scored = [ImageScore(task.name, name, m.label, prof,
                                             compute_metrics_colour(ld.a255, ld.b255, image, prof,
                                                                    metric_list))
                                  for prof in profiles]
                    except MedfuseError as exc:
                        add_failure(task.name, name, m.label, "error", f"scoring failed: {exc}")
                        continue
                    rows.extend(scored)
                    if i in chunk_examples:
                        chunk_examples[i].fused[m.label] = image.astype(np.uint8)
                if progress:
                    progress(len(ready))
            kept.extend(chunk_examples[i] for i in sorted(chunk_examples))
    # Work happens chunk by chunk and method by method; files read best in a fixed order.
    order_t = {t.name: i for i, t in enumerate(tasks)}
    order_m = {m.label: i for i, m in enumerate(methods)}
    order_p = {p: i for i, p in enumerate(profiles)}
    rows.sort(key=lambda r: (order_t.get(r.task, 0), r.image, order_m.get(r.method, 0),
                             order_p.get(r.profile, 0)))
    return EvalResult(
        tasks=tasks, methods=methods, profiles=profiles, metrics=metric_list, rows=rows,
        problems=problems, examples=kept, method_info=info, data_dir=data_dir, split=split,
        seconds=time.perf_counter() - t0,
    )


def _source_8bit(px255: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(px255), 0, 255).astype(np.uint8)


def _run_method(
    m: MethodSpec,
    pairs: list[_Loaded],
    engines: dict[str, Engine],
    fused_files: dict[str, Path] | None,
) -> list[tuple[np.ndarray | None, str, str]]:
    """(image on 0..255 or None, error message, problem kind) per pair, in order."""
    from medfuse import baselines
    from medfuse.prepare.pair import fuse_prepared

    if m.kind == "fused":
        assert fused_files is not None and m.path is not None
        out: list[tuple[np.ndarray | None, str, str]] = []
        for ld in pairs:
            path = fused_files.get(ld.spec.name)
            if path is None:
                out.append((None, f"no fused image named {ld.spec.name}.* in {m.path}", "missing"))
                continue
            try:
                out.append((read_fused(path), "", "ok"))
            except MedfuseError as exc:
                out.append((None, str(exc), "error"))
        return out
    prepared = [ld.prepared for ld in pairs]
    try:
        if m.kind == "gesenet":
            results = fuse_prepared(prepared, engines[m.label])
        else:
            results = baselines.fuse_prepared(prepared, m.kind)
    except (MedfuseError, RuntimeError, ValueError) as exc:
        return [(None, f"fusion failed: {exc}", "error") for _ in pairs]
    return [(to_8bit(r.image).astype(np.float64), "", "ok") for r in results]


def _save_targets(root: Path, tasks: Sequence[TaskData], methods: Sequence[MethodSpec]) -> list[Path]:
    return [root / m.label / t.name / f"{p.name}.png"
            for m in methods if m.kind != "fused" for t in tasks for p in t.pairs]


def _check_save_targets(root: Path, tasks: Sequence[TaskData], methods: Sequence[MethodSpec],
                        force: bool) -> None:
    """Refuse up front, not after minutes of fusing, if ``--save-fused`` would overwrite."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"--save-fused {root} exists and is not a folder")
    sources = {p.resolve() for t in tasks for s in t.pairs for p in (s.mri, s.other)}
    for target in _save_targets(root, tasks, methods):
        check_output(target, force, ())
        if target.exists() and target.resolve() in sources:
            raise UsageError(f"refusing to overwrite input {target}")


def _save(path: Path, image255: np.ndarray, force: bool) -> None:
    """Write the exact 8-bit values that were scored."""
    from PIL import Image

    with atomic_output(path, force=force) as tmp:
        Image.fromarray(image255.astype(np.uint8)).save(tmp, format="PNG")


# -- aggregation ------------------------------------------------------------------------------


def summarise(rows: Iterable[ImageScore], metrics: Sequence[str] | None = None) -> list[Summary]:
    """Mean and sample standard deviation over the images where a metric is defined.

    NaN values (undefined metric, e.g. SCD of a constant image) are left out of the mean
    and counted in ``n_nan``, so one flat slice does not wipe out a method's score while
    the report still says that it happened. Rows that failed are not counted at all.
    """
    metric_list = list(metrics or METRIC_NAMES)
    groups: dict[tuple[str, str, str], list[ImageScore]] = {}
    for r in rows:
        if r.status == "ok":
            groups.setdefault((r.task, r.method, r.profile), []).append(r)
    out: list[Summary] = []
    for (task, method, profile), items in groups.items():
        for metric in metric_list:
            vals = np.array([r.values.get(metric, math.nan) for r in items], dtype=np.float64)
            finite = vals[np.isfinite(vals)]
            n = int(finite.size)
            mean = float(finite.mean()) if n else math.nan
            std = float(finite.std(ddof=1)) if n > 1 else (0.0 if n == 1 else math.nan)
            out.append(Summary(task, method, profile, metric, mean, std, n, int(vals.size - n)))
    return out


def best_methods(summaries: Iterable[Summary]) -> set[tuple[str, str, str, str]]:
    """(task, profile, metric, method) of the best mean per task, profile and metric, in
    the metric's direction (``HIGHER_IS_BETTER``; lower for Nabf). Ties are all best."""
    by_key: dict[tuple[str, str, str], list[Summary]] = {}
    for s in summaries:
        if math.isfinite(s.mean):
            by_key.setdefault((s.task, s.profile, s.metric), []).append(s)
    best: set[tuple[str, str, str, str]] = set()
    for (task, profile, metric), items in by_key.items():
        if len(items) < 2:
            continue
        sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
        top = max(sign * s.mean for s in items)
        tol = 1e-12 * max(1.0, abs(top))
        best.update((task, profile, metric, s.method) for s in items if sign * s.mean >= top - tol)
    return best


# -- files ------------------------------------------------------------------------------------


def _num(x: float) -> float | None:
    """JSON has no NaN: undefined metrics are written as null."""
    return x if math.isfinite(x) else None


def csv_rows(result: EvalResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-image table (``nan`` for an undefined metric, empty
    cells for an image that was not scored)."""
    header = ["task", "image", "method", "profile", *result.metrics, "status", "note"]
    body = []
    for r in result.rows:
        if r.status == "ok":
            cells = ["nan" if not math.isfinite(r.values[m]) else repr(float(r.values[m]))
                     for m in result.metrics]
        else:
            cells = ["" for _ in result.metrics]
        body.append([r.task, r.image, r.method, r.profile, *cells, r.status, r.note])
    return header, body


def write_csv(result: EvalResult, path: Path, force: bool = False) -> Path:
    """Per-image scores, one row per (task, image, method, profile), written atomically."""
    header, body = csv_rows(result)
    with atomic_output(path, force=force) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(body)
    return path


def to_json(result: EvalResult) -> dict[str, Any]:
    """Run description, summaries, per-image rows and problems as plain JSON data."""
    from medfuse import __version__

    return {
        "medfuse": __version__,
        "data": str(result.data_dir) if result.data_dir else None,
        "split": result.split,
        "profiles": result.profiles,
        "metrics": result.metrics,
        "higher_is_better": {m: HIGHER_IS_BETTER[m] for m in result.metrics},
        "methods": [{"label": m.label, "kind": m.kind, "path": str(m.path) if m.path else None,
                     "description": result.method_info.get(m.label, "")} for m in result.methods],
        "tasks": [{"name": t.name, "folder": str(t.folder), "modality": t.modality,
                   "pairs": len(t.pairs)} for t in result.tasks],
        "seconds": round(result.seconds, 3),
        "summary": [{"task": s.task, "method": s.method, "profile": s.profile,
                     "metric": s.metric, "mean": _num(s.mean), "std": _num(s.std),
                     "n": s.n, "n_nan": s.n_nan} for s in result.summaries()],
        "rows": [{"task": r.task, "image": r.image, "method": r.method, "profile": r.profile,
                  "status": r.status, "note": r.note,
                  "values": {m: _num(v) for m, v in r.values.items()} if r.status == "ok" else None}
                 for r in result.rows],
        "problems": [{"task": p.task, "image": p.image, "method": p.method, "kind": p.kind,
                      "message": p.message} for p in result.problems],
    }


def write_json(result: EvalResult, path: Path, force: bool = False) -> Path:
    """The :func:`to_json` document, written atomically (NaN as null: strict JSON)."""
    text = json.dumps(to_json(result), indent=2, allow_nan=False) + "\n"
    with atomic_output(path, force=force) as tmp:
        tmp.write_text(text)
    return path


__all__ = [
    "EvalResult",
    "Example",
    "ImageScore",
    "MethodSpec",
    "PairSpec",
    "Problem",
    "Summary",
    "TaskData",
    "best_methods",
    "check_unique",
    "csv_rows",
    "discover_tasks",
    "evaluate",
    "images_by_stem",
    "load_task",
    "parse_fused",
    "parse_method",
    "parse_metrics",
    "parse_profiles",
    "read_fused",
    "summarise",
    "to_json",
    "write_csv",
    "write_json",
]
