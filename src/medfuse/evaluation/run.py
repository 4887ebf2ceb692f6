"""The evaluation loop: fuse every pair of every task with every method and score it.

The rule that makes the numbers trustworthy: each method's fused image is scored exactly as
it is written to an 8-bit PNG (:func:`medfuse.io.images.to_uint`, no stretch), with
:func:`medfuse.metrics.compute_metrics_colour` on the 0..255 scale, so scoring a saved
file later (``--fused``) gives the same numbers as scoring it in memory.

Two kinds of pair:

* **ordinary images** (PNG, JPEG, TIFF, BMP): the sources are scored as read (MRI grey, CT
  grey, PET/SPECT in colour, reduced to luminance by the metric profile); an 8-bit file's
  values are exact integers on 0..255.
* **volumes** (NIfTI, DICOM): read and planned by :func:`medfuse.fusion.read_pair_plan`
  (windows, grid, colour map, as ``medfuse fuse`` decides them) and cut into slices. The
  sources of a slice are the windowed MRI and the other image as displayed (after window
  and colour map), quantised to 8 bits like the fused slice. Every slice whose windowed MRI
  has a mean of at least :data:`ANATOMY_LEVEL` (5% of the display range) is scored, so
  the empty slices above and below the head do not dilute the means; the pair's score is
  the mean over those slices. ``slice_index`` scores one slice instead.

A pair or method that fails becomes a :class:`Problem` and a not-scored row; it never
stops the run.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medfuse.colour import DEFAULT_GAMUT_MAP
from medfuse.errors import InputError, MedfuseError, UsageError
from medfuse.evaluation.methods import (
    FusedImages,
    MethodSpec,
    Runner,
    check_unique,
    fused_folder,
    load_runners,
    slice_file_name,
)
from medfuse.io.geometry import check_axis
from medfuse.io.images import to_uint
from medfuse.io.layout import IMAGE_SUFFIXES, Pair, Task
from medfuse.io.outputs import StagedFolder, atomic_output, check_output
from medfuse.metrics import METRIC_NAMES, PROFILES, compute_metrics_colour
from medfuse.prepare.pair import check_gamut_map
from medfuse.vocabulary import TABLE

if TYPE_CHECKING:
    from medfuse.engine import Engine
    from medfuse.evaluation.aggregate import Summary
    from medfuse.prepare.pair import PreparedPair

#: A volume slice is scored when the mean of its windowed MRI (0 = black, 1 = the top of
#: the window) is at least this: 5% of the display range. Slices of air above and below the
#: head have means near 0; a slice through the skull vertex is already around 0.1.
ANATOMY_LEVEL = 0.05

# -- what a run produces -----------------------------------------------------------------------


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
    #: The slices a volume pair's values are the mean over; None for an image pair.
    slices: list[int] | None = None


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
    """Images kept for the report's example grid: 8-bit sources and each method's output
    (for a volume pair, of its middle scored slice)."""

    task: str
    image: str
    mri: np.ndarray
    other: np.ndarray
    fused: dict[str, np.ndarray] = field(default_factory=dict)
    slice: int | None = None

    @property
    def caption(self) -> str:
        return self.image if self.slice is None else f"{self.image} #{self.slice}"


def other_label(task: Task) -> str:
    """The other modality as the dataset folders spell it: ``CT``, ``PET``, ``SPECT``."""
    facts = TABLE.get(task.modality)
    return facts.folder if facts is not None else task.modality.upper()


@dataclass
class EvalResult:
    """Everything one evaluation produced, for tables, files and the report."""

    tasks: list[Task]
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
    #: How the coloured outputs of the methods medfuse runs brought colours outside RGB
    #: back (:func:`medfuse.prepare.pair.colourise`).
    gamut_map: str = DEFAULT_GAMUT_MAP

    @property
    def missing(self) -> list[Problem]:
        return [p for p in self.problems if p.kind == "missing"]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.kind == "error"]

    def summaries(self) -> list[Summary]:
        from medfuse.evaluation.aggregate import summarise

        return summarise(self.rows, self.metrics)

    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks if t.pairs]

    def nan_count(self) -> int:
        """Metric values that were undefined on scored rows (left out of the means)."""
        return sum(1 for r in self.rows if r.status == "ok"
                   for v in r.values.values() if not math.isfinite(v))


# -- what is scored -----------------------------------------------------------------------------


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


def is_image_pair(pair: Pair) -> bool:
    """Both inputs are ordinary image files (scored as read); anything else (NIfTI, DICOM
    files or series folders) is a volume pair, planned and scored slice by slice."""
    return all(p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
               for p in (pair.mri, pair.other))


# -- reading -------------------------------------------------------------------------------------


def _as_255(pixels: np.ndarray, exact: bool) -> np.ndarray:
    """Pixels on 0..255 as float64; 8-bit files come back as exact integers (a float32
    k/255 times 255 is only close to k). Row-major, whatever view the reader returned:
    the metrics' sums run in memory order, and the last digit of SCD depends on it."""
    px = np.ascontiguousarray(pixels, dtype=np.float64) * 255.0
    return np.rint(px) if exact else px


def _source_8bit(px255: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(px255), 0, 255).astype(np.uint8)


def read_fused(path: Path) -> np.ndarray:
    """A fused file on 0..255 as stored: 8-bit grey or RGB values unchanged (no grey
    collapsing, no alpha compositing), other modes through the image reader."""
    from PIL import Image, UnidentifiedImageError

    from medfuse.io.images import read_pixels

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "RGB"):
                return np.asarray(im, dtype=np.float64)
    except UnidentifiedImageError as exc:
        raise InputError(f"{path}: not an image file medfuse can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot decode image ({exc})") from exc
    pixels, depth = read_pixels(path)
    return _as_255(pixels, depth == 8)


@dataclass
class _Loaded:
    """An image pair, prepared for the methods and on 0..255 for the metrics."""

    pair: Pair
    prepared: PreparedPair
    a255: np.ndarray
    b255: np.ndarray


def _load_image_pair(pair: Pair, modality: str, resize: bool, gamut_map: str) -> _Loaded:
    from medfuse.io.images import read_image
    from medfuse.prepare.pair import prepare_pair, resize_to

    a, b = read_image(pair.mri), read_image(pair.other)
    prepared = prepare_pair(a, b, modality=modality, resize=resize, name=pair.name,
                            gamut_map=gamut_map)
    a_px, b_px = a.pixels, b.pixels
    resized = b_px.shape[:2] != a_px.shape[:2]
    if resized:
        b_px = resize_to(b_px, a_px.shape[:2])
    return _Loaded(pair, prepared, _as_255(a_px, a.bit_depth == 8),
                   _as_255(b_px, b.bit_depth == 8 and not resized))


def _example_indices(n: int, k: int) -> set[int]:
    """k pairs spread evenly over a task's sorted list (first, last and between), so the
    examples show different cases rather than neighbouring slices."""
    if k <= 0 or n <= 0:
        return set()
    if k >= n:
        return set(range(n))
    return {int(round(i)) for i in np.linspace(0, n - 1, k)}


def _nan_values(metrics: Sequence[str]) -> dict[str, float]:
    return {m: math.nan for m in metrics}


def _ranges(indices: Sequence[int]) -> str:
    """``[2, 3, 4, 7]`` -> ``"2-4, 7"``."""
    parts: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


# -- the loop ------------------------------------------------------------------------------------


class _Run:
    """State of one evaluation: rows, problems and examples as they accumulate."""

    def __init__(self, methods: list[MethodSpec], profiles: list[str], metrics: list[str],
                 runners: dict[str, Runner], fused: dict[tuple[str, str], FusedImages],
                 save_fused: Path | None, force: bool,
                 progress: Callable[[int], None] | None, gamut_map: str = DEFAULT_GAMUT_MAP):
        self.methods, self.profiles, self.metrics = methods, profiles, metrics
        self.gamut_map = gamut_map
        self.runners, self.fused = runners, fused
        self.save_fused, self.force, self.progress = save_fused, force, progress
        self.rows: list[ImageScore] = []
        self.problems: list[Problem] = []
        #: (task position, pair position, example): sorted into reading order at the end.
        self.examples: list[tuple[int, int, Example]] = []
        self.task_order = 0

    def fail(self, task: str, image: str, method: str, kind: str, message: str,
             all_methods: bool = False) -> None:
        """One problem entry, and a not-scored row per profile (and per method when the
        pair itself failed) so the per-image table accounts for every pair."""
        self.problems.append(Problem(task, image, "" if all_methods else method, kind, message))
        for label in [m.label for m in self.methods] if all_methods else [method]:
            for prof in self.profiles:
                self.rows.append(ImageScore(task, image, label, prof, _nan_values(self.metrics),
                                            kind, message))

    def tick(self, n: int) -> None:
        if self.progress:
            self.progress(n)

    def outputs(self, m: MethodSpec, task: Task, prepared: Sequence[PreparedPair],
                names: Sequence[str], slice_files: Sequence[str] | None = None,
                ) -> list[tuple[np.ndarray | None, str, str]]:
        """(image on 0..255 or None, error message, problem kind) per item, in order."""
        if not m.runs:
            folder = self.fused[(task.name, m.label)]
            out: list[tuple[np.ndarray | None, str, str]] = []
            for n, name in enumerate(names):
                path, why = folder.locate(name, None if slice_files is None else slice_files[n])
                if path is None:
                    kind = "error" if name in folder.ambiguous else "missing"
                    out.append((None, why, kind))
                    continue
                try:
                    out.append((read_fused(path), "", "ok"))
                except MedfuseError as exc:
                    out.append((None, str(exc), "error"))
            return out
        try:
            images = self.runners[m.label].fuse(prepared)
        except (MedfuseError, RuntimeError, ValueError) as exc:
            return [(None, f"fusion failed: {exc}", "error") for _ in prepared]
        return [(to_uint(im, 8).astype(np.float64), "", "ok") for im in images]

    def score(self, a255: np.ndarray, b255: np.ndarray, f255: np.ndarray) -> list[dict[str, float]]:
        """The values of every profile for one fused image (raises MedfuseError)."""
        return [compute_metrics_colour(a255, b255, f255, prof, self.metrics)
                for prof in self.profiles]

    # -- ordinary images --------------------------------------------------------------------
    def image_chunk(self, task: Task, chunk: list[tuple[int, Pair]], resize: bool,
                    wanted: set[int]) -> None:
        """A batch of image pairs: each method fuses them together, then each is scored."""
        ready: list[tuple[int, _Loaded]] = []
        for i, pair in chunk:
            try:
                ready.append((i, _load_image_pair(pair, task.modality, resize,
                                                  self.gamut_map)))
            except MedfuseError as exc:
                self.fail(task.name, pair.name, "", "error", str(exc), all_methods=True)
                self.tick(len(self.methods))
        if not ready:
            return
        examples = {i: Example(task.name, ld.pair.name, to_uint(ld.prepared.mri_y, 8),
                               _source_8bit(ld.b255))
                    for i, ld in ready if i in wanted}
        for m in self.methods:
            results = self.outputs(m, task, [ld.prepared for _, ld in ready],
                                   [ld.pair.name for _, ld in ready])
            for (i, ld), (image, error, kind) in zip(ready, results):
                name = ld.pair.name
                if image is None:
                    self.fail(task.name, name, m.label, kind, error)
                    continue
                if image.shape[:2] != ld.a255.shape:
                    h, w = image.shape[:2]
                    self.fail(task.name, name, m.label, "error",
                              f"fused image is {w}x{h} but the sources are "
                              f"{ld.a255.shape[1]}x{ld.a255.shape[0]}")
                    continue
                if self.save_fused is not None and m.runs:
                    _save(self.save_fused / m.label / task.name / f"{name}.png", image,
                          self.force)
                try:
                    values = self.score(ld.a255, ld.b255, image)
                except MedfuseError as exc:
                    self.fail(task.name, name, m.label, "error", f"scoring failed: {exc}")
                    continue
                self.rows.extend(ImageScore(task.name, name, m.label, prof, v)
                                 for prof, v in zip(self.profiles, values))
                if i in examples:
                    examples[i].fused[m.label] = image.astype(np.uint8)
            self.tick(len(ready))
        self.examples.extend((self.task_order, i, examples[i]) for i in examples)

    # -- volumes ------------------------------------------------------------------------------
    def volume_pair(self, task: Task, index: int, pair: Pair, *, axis: str | None,
                    slice_index: int | None, batch_size: int, resize: bool,
                    example: bool) -> None:
        """Plan a volume pair, score its slices with anatomy, and record the means."""
        try:
            self._volume_pair(task, index, pair, axis, slice_index, batch_size, resize,
                              example)
        except MedfuseError as exc:
            self.fail(task.name, pair.name, "", "error", str(exc), all_methods=True)
        self.tick(len(self.methods))

    def _volume_pair(self, task: Task, index: int, pair: Pair, axis: str | None,
                     slice_index: int | None, batch_size: int, resize: bool,
                     example: bool) -> None:
        from medfuse.fusion import prepared_slices, read_pair_plan

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan, fixed = read_pair_plan(pair.mri, pair.other, modality=task.modality,
                                         axis=axis, slice_index=slice_index, resize=resize,
                                         gamut_map=self.gamut_map)
        notes = [" ".join(str(w.message).split()) for w in caught]
        n = 1 if plan.two_d else len(plan)
        tally = _Tally({m.label: [] for m in self.methods})
        # The example shows the scored slice nearest the middle of the stack.
        middle = n // 2
        try:
            for batch in prepared_slices(plan, fixed, batch_size):
                if fixed is None and not plan.two_d:
                    batch = [(k, p) for k, p in batch if float(p.mri_y.mean()) >= ANATOMY_LEVEL]
                if not batch:
                    continue
                ks = [k for k, _ in batch]
                prepared = [p for _, p in batch]
                a255 = [to_uint(p.mri_y, 8).astype(np.float64) for p in prepared]
                b255 = [to_uint(_displayed(p), 8).astype(np.float64) for p in prepared]
                files = [slice_file_name(plan.axis, k, n) for k in ks]
                shown = {m.label: self._volume_method(m, task, pair, prepared, ks, a255, b255,
                                                      files, tally)
                         for m in self.methods if m.label not in tally.failed}
                tally.scored.extend(ks)
                j = min(range(len(ks)), key=lambda j: abs(ks[j] - middle))
                if example and (tally.example is None
                                or abs(ks[j] - middle) < abs(tally.example.slice - middle)):
                    tally.example = Example(
                        task.name, pair.name, _source_8bit(a255[j]), _source_8bit(b255[j]),
                        {label: by_k[ks[j]] for label, by_k in shown.items() if ks[j] in by_k},
                        ks[j])
            for label, saver in tally.savers.items():
                if label in tally.failed:
                    saver.abort()
                else:
                    saver.commit()
        except BaseException:
            for saver in tally.savers.values():
                saver.abort()
            raise
        if not tally.scored:
            raise InputError(f"{pair.mri.name}: no {plan.axis} slice has anatomy (mean of the "
                             f"windowed MRI below {ANATOMY_LEVEL:g} everywhere); give --slice N "
                             "to score one slice anyway")
        what = ("one 2D pair" if plan.two_d else f"mean over {len(tally.scored)} of {n} "
                f"{plan.axis} slices ({_ranges(tally.scored)})")
        note = "; ".join([what, *notes])
        for m in self.methods:
            if m.label in tally.failed:
                self.fail(task.name, pair.name, m.label, *tally.failed[m.label])
                continue
            for p, prof in enumerate(self.profiles):
                per_slice = [v[p] for v in tally.values[m.label]]
                self.rows.append(ImageScore(task.name, pair.name, m.label, prof,
                                            _slice_mean(per_slice, self.metrics), "ok", note,
                                            list(tally.scored)))
        if tally.example is not None:
            if plan.two_d:
                tally.example.slice = None
            self.examples.append((self.task_order, index, tally.example))

    def _volume_method(self, m: MethodSpec, task: Task, pair: Pair,
                       prepared: list[PreparedPair], ks: list[int], a255: list[np.ndarray],
                       b255: list[np.ndarray], files: list[str], tally: _Tally,
                       ) -> dict[int, np.ndarray]:
        """Fuse (or read) and score one batch of slices with one method; the first slice
        that fails marks the method failed for the whole pair (a mean over some slices
        would not be comparable with the other methods'). Returns the 8-bit fused slices
        by index, for the example grid."""
        fused8: dict[int, np.ndarray] = {}
        results = self.outputs(m, task, prepared, [pair.name] * len(ks), files)
        for k, a, b, file, (image, error, kind) in zip(ks, a255, b255, files, results):
            if image is None:
                tally.failed[m.label] = (kind, error)
                break
            if image.shape[:2] != a.shape:
                tally.failed[m.label] = ("error", f"fused slice {file} is {image.shape[1]}x"
                                         f"{image.shape[0]} but the sources are "
                                         f"{a.shape[1]}x{a.shape[0]}")
                break
            try:
                tally.values[m.label].append(self.score(a, b, image))
            except MedfuseError as exc:
                tally.failed[m.label] = ("error", f"slice {k}: scoring failed: {exc}")
                break
            if self.save_fused is not None and m.runs:
                if m.label not in tally.savers:
                    tally.savers[m.label] = StagedFolder(
                        self.save_fused / m.label / task.name / pair.name, self.force,
                        label="--save-fused")
                _save(tally.savers[m.label].path_for(file), image, True)
            fused8[k] = image.astype(np.uint8)
        return fused8


@dataclass
class _Tally:
    """What one volume pair has gathered so far: per-slice values and failures per
    method, the staged ``--save-fused`` folders, the slices scored, the example."""

    values: dict[str, list[list[dict[str, float]]]]
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    savers: dict[str, StagedFolder] = field(default_factory=dict)
    scored: list[int] = field(default_factory=list)
    example: Example | None = None


def _displayed(p: PreparedPair) -> np.ndarray:
    """The other image as shown (window and colour map applied); its luminance when a
    prepared pair does not carry it."""
    return p.other_image if p.other_image is not None else p.other_y


def _slice_mean(per_slice: list[dict[str, float]], metrics: Sequence[str]) -> dict[str, float]:
    """A volume pair's value per metric: the mean over the slices where the metric is
    defined (NaN only when it is undefined on every slice)."""
    out: dict[str, float] = {}
    for metric in metrics:
        vals = np.array([v.get(metric, math.nan) for v in per_slice], np.float64)
        finite = vals[np.isfinite(vals)]
        out[metric] = float(finite.mean()) if finite.size else math.nan
    return out


def evaluate(
    tasks: Sequence[Task],
    methods: Sequence[MethodSpec],
    profiles: Sequence[str] = ("standard",),
    metrics: Sequence[str] | None = None,
    *,
    weights: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 8,
    resize: bool = False,
    axis: str | None = None,
    slice_index: int | None = None,
    save_fused: Path | None = None,
    force: bool = False,
    examples: int = 3,
    split: str | None = None,
    data_dir: Path | None = None,
    engines: Mapping[str, Engine] | None = None,
    progress: Callable[[int], None] | None = None,
    gamut_map: str = DEFAULT_GAMUT_MAP,
) -> EvalResult:
    """Fuse every pair of every task with every method and score each output.

    ``tasks`` come from :func:`medfuse.io.layout.find_tasks`. ``weights`` are the default
    GeSeNet weights (for ``gesenet`` without a path). ``engines`` may supply loaded engines
    by method label (tests, notebooks); otherwise each GeSeNet method loads its own, before
    any pair is read. Volume pairs are cut along ``axis`` (default axial); ``slice_index``
    scores only that slice of each (image pairs are single slices and ignore it). Pairs that cannot be read or fused, and
    ``--fused`` files that are missing or the wrong size, become :class:`Problem` entries
    and are left out of the means; they never stop the run. ``progress`` is called with
    the number of (pair, method) units just finished. ``gamut_map`` colours the outputs of
    the methods medfuse runs (``clip`` reproduces the paper's images and published tables).
    """
    t0 = time.perf_counter()
    gamut_map = check_gamut_map(gamut_map)
    methods = list(methods)
    check_unique(methods)
    profile_list = parse_profiles(profiles)
    metric_list = parse_metrics(metrics)
    tasks = list(tasks)
    if slice_index is not None and slice_index < 0:
        raise UsageError(f"--slice {slice_index}: slice numbers start at 0")
    if axis is not None:  # checked even when every pair is 2D and never sliced
        check_axis(axis)

    runners = load_runners(methods, weights, device, batch_size, engines)
    info = {m.label: runners[m.label].description if m.label in runners else m.describe()
            for m in methods}
    if save_fused is not None:
        check_save_targets(save_fused, tasks, methods, force)
    # Resolve every --fused folder now too: a wrong layout is a usage error, not a
    # discovery after the first task has been fused.
    fused = {(task.name, m.label): FusedImages.scan(m, fused_folder(m, task, len(tasks), split))
             for task in tasks for m in methods if not m.runs}

    run = _Run(methods, profile_list, metric_list, runners, fused, save_fused, force, progress,
               gamut_map)
    step = max(1, batch_size)
    for t, task in enumerate(tasks):
        run.task_order = t
        run.problems.extend(Problem(task.name, entry, "", "unmatched", f"{entry}: {reason}")
                            for entry, reason in task.problems)
        wanted = _example_indices(len(task.pairs), examples)
        images = [(i, p) for i, p in enumerate(task.pairs) if is_image_pair(p)]
        for start in range(0, len(images), step):
            run.image_chunk(task, images[start : start + step], resize, wanted)
        for i, pair in enumerate(task.pairs):
            if not is_image_pair(pair):
                run.volume_pair(task, i, pair, axis=axis, slice_index=slice_index,
                                batch_size=step, resize=resize, example=i in wanted)
    # Work happens chunk by chunk and method by method; files read best in a fixed order.
    order_t = {t.name: i for i, t in enumerate(tasks)}
    order_m = {m.label: i for i, m in enumerate(methods)}
    order_p = {p: i for i, p in enumerate(profile_list)}
    run.rows.sort(key=lambda r: (order_t.get(r.task, 0), r.image, order_m.get(r.method, 0),
                                 order_p.get(r.profile, 0)))
    kept = [ex for _, _, ex in sorted(run.examples, key=lambda e: (e[0], e[1]))]
    return EvalResult(
        tasks=tasks, methods=methods, profiles=profile_list, metrics=metric_list,
        rows=run.rows, problems=run.problems, examples=kept, method_info=info,
        data_dir=data_dir, split=split, seconds=time.perf_counter() - t0, gamut_map=gamut_map,
    )


# -- --save-fused ---------------------------------------------------------------------------------


def save_targets(root: Path, tasks: Sequence[Task], methods: Sequence[MethodSpec]) -> list[Path]:
    """What ``--save-fused`` writes: ``<label>/<TASK>/<name>.png`` for an image pair, the
    folder ``<label>/<TASK>/<name>/`` of slice PNGs for a volume pair."""
    return [root / m.label / t.name / (f"{p.name}.png" if is_image_pair(p) else p.name)
            for m in methods if m.runs for t in tasks for p in t.pairs]


def check_save_targets(root: Path, tasks: Sequence[Task], methods: Sequence[MethodSpec],
                       force: bool) -> None:
    """Refuse up front, not after minutes of fusing, if ``--save-fused`` would overwrite
    an output without ``force``, write into an input folder, or replace an input."""
    inputs = sorted({q.parent for t in tasks for p in t.pairs for q in (p.mri, p.other)})
    check_output(root, True, inputs, kind="folder", label="--save-fused")
    for target in save_targets(root, tasks, methods):
        kind = "file" if target.suffix == ".png" else "folder"
        check_output(target, force, inputs, kind=kind, label="--save-fused")


def _save(path: Path, image255: np.ndarray, force: bool) -> None:
    """Write the exact 8-bit values that were scored."""
    from PIL import Image

    with atomic_output(path, force=force) as tmp:
        Image.fromarray(image255.astype(np.uint8)).save(tmp, format="PNG")


__all__ = [
    "ANATOMY_LEVEL",
    "EvalResult",
    "Example",
    "ImageScore",
    "Problem",
    "check_save_targets",
    "evaluate",
    "is_image_pair",
    "other_label",
    "parse_metrics",
    "parse_profiles",
    "read_fused",
    "save_targets",
]
