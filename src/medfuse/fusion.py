"""The one fusion path: read, plan, prepare, run the engine, colour, write.

Every command is a loop over this path: ``fuse`` runs it once (:func:`fuse_files`), ``batch``
runs it over a folder or a pairs.csv with per-pair failures isolated (:func:`fuse_batch`),
``masks`` and ``eval`` take its prepared slices. Python callers with arrays use
:func:`fuse`. Nothing here prints or knows about command lines; progress is reported through
callbacks.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medfuse.errors import UsageError
from medfuse.io.volume import Volume
from medfuse.prepare.pair import PreparedPair, colourise, prepare_pair, split_pair, stretch
from medfuse.prepare.plan import FusionPlan, parse_slices, plan_fusion, take_slice

if TYPE_CHECKING:
    from medfuse.engine import Engine
    from medfuse.io.sinks import Sink

#: Slices (or pairs) per network call when the engine does not say.
DEFAULT_BATCH = 8


@dataclass
class FusionResult:
    """Fused image in [0, 1] (grey (H, W) or RGB (H, W, 3)), its luminance and, when asked
    for, each branch's hard spatial mask (1 = principal region)."""

    image: np.ndarray
    fused_y: np.ndarray
    modality: str
    mask_mri: np.ndarray | None = None
    mask_other: np.ndarray | None = None


def fuse_prepared(
    pairs: list[PreparedPair],
    engine: Engine,
    with_masks: bool = False,
    do_stretch: bool = False,
) -> list[FusionResult]:
    """Fuse prepared pairs, same-sized ones through the network together, and colour them."""
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by_shape[p.mri_y.shape].append(i)
    results: list[FusionResult | None] = [None] * len(pairs)
    for idx in by_shape.values():
        mri = np.stack([pairs[i].mri_y for i in idx])
        oth = np.stack([pairs[i].other_y for i in idx])
        fused, mm, mo = engine.fuse_luminance(mri, oth, with_masks=with_masks)
        for j, i in enumerate(idx):
            img = colourise(fused[j], pairs[i])
            results[i] = FusionResult(
                image=stretch(img) if do_stretch else img,
                fused_y=fused[j],
                modality=pairs[i].modality,
                mask_mri=None if mm is None else mm[j],
                mask_other=None if mo is None else mo[j],
            )
    return [r for r in results if r is not None]


def fuse(
    mri: Volume | np.ndarray | str | Path,
    other: Volume | np.ndarray | str | Path,
    engine: Engine | None = None,
    modality: str | None = None,
    resize: bool = False,
    do_stretch: bool = False,
    with_masks: bool = False,
) -> FusionResult:
    """Fuse one registered pair of planes: ordinary image paths, arrays in [0, 1] or
    one-slice image volumes. DICOM/NIfTI inputs go through :func:`fuse_files`.

    Loads the default weights on the default device when no engine is given.
    """
    if engine is None:
        from medfuse.engine import load_model

        engine = load_model()
    pair = prepare_pair(mri, other, modality=modality, resize=resize)
    return fuse_prepared([pair], engine, with_masks=with_masks, do_stretch=do_stretch)[0]


# -- slices of a plan ---------------------------------------------------------------------


def _chunks(indices: list[int], size: int) -> Iterator[list[int]]:
    for s in range(0, len(indices), max(1, size)):
        yield indices[s : s + size]


def _runs(indices: list[int]) -> Iterator[tuple[int, int]]:
    """Contiguous (start, stop) runs of sorted indices, so slabs are read in one piece."""
    start = prev = indices[0]
    for i in indices[1:]:
        if i != prev + 1:
            yield start, prev + 1
            start = i
        prev = i
    yield start, prev + 1


def prepared_slices(
    plan: FusionPlan, indices: Iterable[int] | None = None, batch_size: int = DEFAULT_BATCH
) -> Iterator[list[tuple[int, PreparedPair]]]:
    """The planned slices as prepared pairs, ``batch_size`` at a time (only one batch of
    float32 slices exists at once). A 2D plan has the one slice 0."""
    todo = [0] if plan.two_d else sorted(set(range(len(plan)) if indices is None else indices))
    name = plan.mri.label
    for chunk in _chunks(todo, batch_size):
        mri_parts, other_parts = [], []
        for start, stop in _runs(chunk):
            mri_parts.append(plan.mri_slab(start, stop))
            other_parts.append(plan.other_slab(start, stop))
        mri = np.concatenate(mri_parts) if len(mri_parts) > 1 else mri_parts[0]
        other = np.concatenate(other_parts) if len(other_parts) > 1 else other_parts[0]
        yield [
            (index, split_pair(mri[n], other[n], plan.modality,
                               name if plan.two_d else f"{name}[{index}]"))
            for n, index in enumerate(chunk)
        ]


def fuse_plan(
    plan: FusionPlan,
    engine: Engine,
    indices: Iterable[int] | None = None,
    batch_size: int | None = None,
    stretch: bool = False,
    with_masks: bool = False,
) -> Iterator[tuple[int, FusionResult]]:
    """Fuse the planned slices batch by batch, yielding ``(slice index, result)`` in order."""
    size = batch_size or getattr(engine, "batch_size", None) or DEFAULT_BATCH
    for chunk in prepared_slices(plan, indices, size):
        results = fuse_prepared([p for _, p in chunk], engine, with_masks, stretch)
        yield from zip((i for i, _ in chunk), results)


# -- files in, files out ------------------------------------------------------------------


@dataclass
class FuseRequest:
    """Everything ``medfuse fuse`` asks for, as plain values (the CLI only fills this in)."""

    mri: Path
    other: Path
    output: Path
    format: str | None = None
    series: tuple[str, ...] = ()
    volume_index: int | None = None
    axis: str | None = None
    slice_index: int | None = None
    slices: str | None = None
    window: str | None = None
    mri_window: str | None = None
    colormap: str | None = None
    modality: str | None = None
    resize: bool = False
    stretch: bool = False
    bit_depth: int | None = None
    preview: Path | None = None
    anonymize: bool = False
    force: bool = False


@dataclass
class FuseReport:
    """What a request produced."""

    outputs: list[Path]
    plan: FusionPlan
    slices: list[int]
    preview: Path | None = None
    warnings: list[str] = field(default_factory=list)


def read_pair(mri: Path, other: Path, series: tuple[str, ...] = (),
              volume_index: int | None = None) -> tuple[Volume, Volume]:
    """Read both inputs; when they are the same DICOM folder, ``series`` names the MRI's
    series first and the other image's next."""
    from medfuse.io.volume import read

    mri_vol = read(mri, series, volume_index)
    rest = series
    if mri_vol.dicom is not None and Path(mri).resolve() == Path(other).resolve():
        used = str(mri_vol.dicom.get("SeriesInstanceUID", ""))
        rest = tuple(s for s in series if s != used)
    return mri_vol, read(other, rest, volume_index)


def read_pair_plan(
    mri: Path | str,
    other: Path | str,
    *,
    modality: str | None = None,
    axis: str | None = None,
    slice_index: int | None = None,
    colormap: str | None = None,
    window: str | None = None,
    mri_window: str | None = None,
    series: tuple[str, ...] = (),
    volume_index: int | None = None,
    resize: bool = False,
) -> tuple[FusionPlan, list[int] | None]:
    """Read a pair and plan it. Returns the plan and, when ``slice_index`` picks one slice
    of two volumes, that slice (a slice of a volume beside a 2D image is cut here, so the
    plan is then 2D)."""
    from medfuse.prepare.windowing import parse_window

    other_w = parse_window(window, "--window")
    mri_w = parse_window(mri_window, "--mri-window")
    if slice_index is not None and slice_index < 0:
        raise UsageError(f"--slice {slice_index}: slice numbers start at 0")
    mri_vol, other_vol = read_pair(Path(mri), Path(other), series, volume_index)
    fixed: list[int] | None = None
    if slice_index is not None:
        if mri_vol.is_2d and not other_vol.is_2d:
            other_vol = take_slice(other_vol, mri_vol.default_axis(axis), slice_index)
        elif other_vol.is_2d and not mri_vol.is_2d:
            mri_vol = take_slice(mri_vol, other_vol.default_axis(axis), slice_index)
        elif mri_vol.is_2d and other_vol.is_2d:
            if slice_index != 0:
                raise UsageError(f"--slice {slice_index}: both inputs are single slices (slice 0)")
        else:
            fixed = [slice_index]
    plan = plan_fusion(mri_vol, other_vol, axis, modality, colormap, mri_w, other_w, resize)
    if fixed is not None and fixed[0] >= len(plan):
        raise UsageError(f"--slice {fixed[0]}: {mri_vol.label} has {plan.axis} slices 0 to "
                         f"{len(plan) - 1}")
    return plan, fixed


def _check_request(request: FuseRequest, fmt: str) -> None:
    if request.bit_depth not in (None, 8, 16):
        raise UsageError(f"--bit-depth must be 8 or 16, got {request.bit_depth}")
    if request.preview is not None and request.preview.resolve() == request.output.resolve():
        raise UsageError(f"--preview {request.preview} is the output itself; give another name")
    if fmt == "nifti" and request.slices:
        raise UsageError("--slices applies to PNG and DICOM output; NIfTI holds the whole volume")
    if request.anonymize and fmt != "dicom":
        raise UsageError("--anonymize applies to DICOM output only")
    if request.slice_index is not None and request.slices:
        raise UsageError("give --slice N or --slices SPEC, not both")


def _make_sink(request: FuseRequest, fmt: str, plan: FusionPlan, indices: list[int],
               single: bool) -> Sink:
    from medfuse.io.sinks import DicomSink, NiftiSink, PngSink

    inputs = (request.mri, request.other)
    if fmt == "png":
        images = plan.mri.format == "image" and plan.other.format == "image"
        return PngSink(request.output, indices, 1 if plan.two_d else len(plan), plan.axis,
                       request.bit_depth, request.force, inputs, single,
                       grey_bit_depth=8 if images else 16)
    if fmt == "nifti":
        return NiftiSink(request.output, plan.mri, plan.axis, plan.colour, request.force, inputs)
    description = f"medfuse MRI+{plan.modality.upper()} fused"
    return DicomSink(request.output, plan.mri, plan.mri_stack.affine, plan.colour,
                     request.anonymize, request.force, inputs, single, description)


def fuse_files(
    request: FuseRequest,
    engine_loader: Callable[[], Engine],
    progress: Callable[[int, int], None] | None = None,
) -> FuseReport:
    """Read, plan, fuse and write one pair of image, DICOM or NIfTI inputs.

    The engine is loaded only after every input and option has been checked, so mistakes
    fail fast without importing torch; outputs appear only when complete. Warnings raised
    while planning (a guessed modality, a doubtful registration) are returned in the report.
    """
    from medfuse.io.sinks import Montage, output_format

    fmt = output_format(request.output, request.format)
    _check_request(request, fmt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, fixed = read_pair_plan(
            request.mri, request.other, modality=request.modality, axis=request.axis,
            slice_index=request.slice_index, colormap=request.colormap, window=request.window,
            mri_window=request.mri_window, series=tuple(request.series),
            volume_index=request.volume_index, resize=request.resize,
        )
    notes = [str(w.message) for w in caught]
    n = 1 if plan.two_d else len(plan)
    indices = fixed if fixed is not None else ([0] if plan.two_d else parse_slices(request.slices, n))
    single = plan.two_d or request.slice_index is not None
    if fmt == "nifti" and not plan.two_d and len(indices) != n:
        raise UsageError("NIfTI output holds the whole volume; drop --slice or write PNG/DICOM")
    inputs = (request.mri, request.other)
    montage = (Montage(request.preview, indices, request.force, inputs)
               if request.preview is not None else None)
    sink = _make_sink(request, fmt, plan, indices, single)
    try:
        engine = engine_loader()
        done = 0
        for index, result in fuse_plan(plan, engine, indices, stretch=request.stretch):
            sink.add(index, result.image)
            if montage is not None:
                montage.add(index, result.image)
            done += 1
            if progress is not None:
                progress(done, len(indices))
        outputs = sink.commit()
    except BaseException:
        sink.abort()
        raise
    preview = montage.write() if montage is not None else None
    return FuseReport(outputs, plan, indices, preview, notes)


__all__ = [
    "FuseReport",
    "FuseRequest",
    "FusionResult",
    "fuse",
    "fuse_files",
    "fuse_plan",
    "fuse_prepared",
    "prepared_slices",
    "read_pair",
    "read_pair_plan",
]

