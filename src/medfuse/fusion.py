"""The one fusion path: read, plan, prepare, run the engine, colour, write.

Every command is a loop over this path: ``fuse`` runs it once (:func:`fuse_files`), ``batch``
runs it over a folder or a pairs.csv with per-pair failures isolated (:func:`fuse_batch`),
``masks`` and ``eval`` take its prepared slices. Python callers with arrays use
:func:`fuse`. Nothing here prints or knows about command lines; progress is reported through
callbacks.
"""

from __future__ import annotations

import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medfuse.colour import DEFAULT_GAMUT_MAP
from medfuse.errors import OutputError, UsageError
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
    gamut_map: str = DEFAULT_GAMUT_MAP,
) -> FusionResult:
    """Fuse one registered pair of planes: ordinary image paths, arrays in [0, 1] or
    one-slice image volumes. DICOM/NIfTI inputs go through :func:`fuse_files`.

    Loads the default weights on the default device when no engine is given.
    ``gamut_map``: how colours outside RGB come back (:func:`colourise`).
    """
    if engine is None:
        from medfuse.engine import load_model

        engine = load_model()
    pair = prepare_pair(mri, other, modality=modality, resize=resize, gamut_map=gamut_map)
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
        mri_parts, other_parts, below_parts = [], [], []
        for start, stop in _runs(chunk):
            mri_parts.append(plan.mri_slab(start, stop))
            planes, below = plan.other_planes(start, stop)
            other_parts.append(planes)
            below_parts.append(below)
        mri = np.concatenate(mri_parts) if len(mri_parts) > 1 else mri_parts[0]
        other = np.concatenate(other_parts) if len(other_parts) > 1 else other_parts[0]
        transparent = (None if below_parts[0] is None else
                       np.concatenate(below_parts) if len(below_parts) > 1 else below_parts[0])
        yield [
            (index, split_pair(mri[n], other[n], plan.modality,
                               name if plan.two_d else f"{name}[{index}]",
                               None if transparent is None else transparent[n],
                               plan.gamut_map))
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
    #: ``--preview-style``: ``montage`` (fused slices) or ``triptych`` (MRI | other | fused).
    preview_style: str = "montage"
    #: Fuse a first input whose DICOM Modality is not MR (``--allow-non-mr``).
    allow_non_mr: bool = False
    #: Transparency floor of the other image (``--floor``): a number in its window's units
    #: (SUV for a PET in SUV), ``none`` to colour everything, None for the default.
    floor: str | None = None
    #: ``--register``: none (default), rigid or affine.
    register: str | None = None
    #: ``--save-transform``: where to write the registration's ITK transform (.tfm).
    save_transform: Path | None = None
    #: ``--gamut-map``: ``fit`` (default) or ``clip``; see :func:`colourise`.
    gamut_map: str = DEFAULT_GAMUT_MAP


@dataclass
class FuseReport:
    """What a request produced; ``record`` is the provenance record beside the output and
    ``provenance`` its content."""

    outputs: list[Path]
    plan: FusionPlan
    slices: list[int]
    preview: Path | None = None
    warnings: list[str] = field(default_factory=list)
    record: Path | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    transform: Path | None = None


def read_pair(mri: Path, other: Path, series: tuple[str, ...] = (),
              volume_index: int | None = None) -> tuple[Volume, Volume]:
    """Read both inputs; when they are the same DICOM folder, ``series`` names the MRI's
    series first and the other image's next."""
    from medfuse.io.read import read

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
    allow_non_mr: bool = False,
    floor: str | None = None,
    register: str | None = None,
    gamut_map: str = DEFAULT_GAMUT_MAP,
    timings: dict[str, float] | None = None,
    after_read: Callable[[], None] | None = None,
) -> tuple[FusionPlan, list[int] | None]:
    """Read a pair and plan it. Returns the plan and, when ``slice_index`` picks one slice
    of two volumes, that slice (a slice of a volume beside a 2D image is cut here, so the
    plan is then 2D). ``timings``, when given, receives the seconds spent reading and
    planning (registration included); ``after_read`` is called once both inputs have been
    read, before planning (``fuse_files`` checks its outputs there: after the inputs, whose
    errors say more, and before a registration that may take a while)."""
    from medfuse.prepare.image_checks import check_series
    from medfuse.prepare.plan import check_plan_options
    from medfuse.prepare.windowing import parse_window

    check_plan_options(axis, modality, colormap, gamut_map)
    other_w = parse_window(window, "--window")
    mri_w = parse_window(mri_window, "--mri-window")
    floor_value, transparency = parse_floor(floor)
    if slice_index is not None and slice_index < 0:
        raise UsageError(f"--slice {slice_index}: slice numbers start at 0")
    started = time.perf_counter()
    mri_vol, other_vol = read_pair(Path(mri), Path(other), series, volume_index)
    check_series(series, mri_vol, other_vol)
    if timings is not None:
        timings["read"] = time.perf_counter() - started
    if after_read is not None:
        after_read()
    started = time.perf_counter()
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
    plan = plan_fusion(mri_vol, other_vol, axis, modality, colormap, mri_w, other_w, resize,
                       allow_non_mr=allow_non_mr, floor=floor_value, transparency=transparency,
                       register=register, gamut_map=gamut_map)
    if timings is not None:
        timings["plan"] = time.perf_counter() - started
        if plan.registration is not None:
            timings["register"] = plan.registration.seconds
    if fixed is not None and fixed[0] >= len(plan):
        raise UsageError(f"--slice {fixed[0]}: {mri_vol.label} has {plan.axis} slices 0 to "
                         f"{len(plan) - 1}")
    return plan, fixed


def parse_floor(spec: str | None) -> tuple[float | None, bool]:
    """``--floor``: a number, ``none`` (no transparency) or nothing (the default floor)."""
    if spec is None or not str(spec).strip():
        return None, True
    text = str(spec).strip().lower()
    if text == "none":
        return None, False
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--floor {spec!r}: expected a number (in the window's units, SUV "
                         "for a PET in SUV) or none") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UsageError(f"--floor {spec!r}: expected a finite number or none")
    return value, True


def _resample_on_device(plan: FusionPlan, engine: Engine) -> None:
    """With a CUDA engine, resample the other volume on the GPU (grid_sample) instead of
    with single-core scipy, which would otherwise hold the GPU pipeline back."""
    device = getattr(engine, "device", None)
    if not plan.resampled or getattr(device, "type", None) != "cuda":
        return
    from medfuse.io.geometry import DeviceResampler

    plan.resampler = DeviceResampler(plan.other.data, plan.other.affine, plan.mri_stack.affine,
                                     plan.plane_shape, device)


def check_options(request: FuseRequest) -> None:
    """Check every option value of ``request`` that needs no input and no output: bit
    depth, axis, modality, colour map, gamut map, both windows, floor, preview style,
    registration.
    ``fuse_files`` calls it first; a batch calls it once on the request its pairs share,
    so a bad shared value is one usage error, not a failure of every pair."""
    from medfuse.prepare.plan import check_plan_options
    from medfuse.prepare.windowing import parse_window
    from medfuse.registration import METHODS
    from medfuse.render import PREVIEW_STYLES

    if request.bit_depth not in (None, 8, 16):
        raise UsageError(f"--bit-depth must be 8 or 16, got {request.bit_depth}")
    check_plan_options(request.axis, request.modality, request.colormap, request.gamut_map)
    parse_window(request.window, "--window")
    parse_window(request.mri_window, "--mri-window")
    parse_floor(request.floor)
    style = (request.preview_style or "montage").strip().lower()
    if style not in PREVIEW_STYLES:
        raise UsageError(f"--preview-style {request.preview_style!r}: expected one of "
                         f"{', '.join(PREVIEW_STYLES)}")
    if request.register is not None and not request.register.strip():
        # an unset shell variable (--register "$METHOD") must not mean "no registration"
        raise UsageError(f"--register '': expected one of {', '.join(METHODS)}")
    method = (request.register or "none").strip().lower()
    if method not in METHODS:
        raise UsageError(f"--register {request.register!r}: expected one of {', '.join(METHODS)}")


def _check_request(request: FuseRequest, fmt: str) -> None:
    check_options(request)
    if request.preview is not None and request.preview.resolve() == request.output.resolve():
        raise UsageError(f"--preview {request.preview} is the output itself; give another name")
    if fmt == "nifti" and request.slices:
        raise UsageError("--slices applies to PNG and DICOM output; NIfTI holds the whole volume")
    if request.anonymize and fmt != "dicom":
        raise UsageError("--anonymize applies to DICOM output only")
    if request.slice_index is not None and request.slices:
        raise UsageError("give --slice N or --slices SPEC, not both")
    method = (request.register or "none").strip().lower()
    if request.save_transform is not None:
        if method == "none":
            raise UsageError("--save-transform needs --register rigid or affine")
        if request.save_transform.suffix.lower() not in (".tfm", ".txt"):
            raise UsageError(f"--save-transform {request.save_transform.name}: give an ITK "
                             "text transform name ending in .tfm")
    from medfuse.provenance import record_path

    record = record_path(request.output)
    for label, path in (("--preview", request.preview), ("--save-transform", request.save_transform)):
        if path is not None and _same_path(path, record):
            raise UsageError(f"{label} {path} is the provenance record of the output; give "
                             "another name")
    if (request.save_transform is not None and request.preview is not None
            and _same_path(request.save_transform, request.preview)):
        raise UsageError("--save-transform and --preview name the same file")
    if request.save_transform is not None and _same_path(request.save_transform, request.output):
        raise UsageError(f"--save-transform {request.save_transform} is the output itself")


def _same_path(a: Path, b: Path) -> bool:
    """Whether two paths name one file (resolved where possible: a symlink loop or a name
    too long compares as written, and the output policy reports it later)."""
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return a.absolute() == b.absolute()


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
                     request.anonymize, request.force, inputs, single, description,
                     other=plan.other)


def _request_record(request: FuseRequest) -> dict[str, Any]:
    """The request as plain JSON values (paths as given)."""
    import dataclasses

    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(request).items()}


def _write_staged(together: Any, target: Path, text: str) -> None:
    """Stage ``text`` as ``target`` in the output set (UTF-8); a full disk or a folder that
    takes no files is one OutputError naming the target."""
    staged = together.path_for(target)
    try:
        staged.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc


def fuse_files(
    request: FuseRequest,
    engine_loader: Callable[[], Engine],
    progress: Callable[[int, int], None] | None = None,
    on_slice: Callable[[int, FusionResult, PreparedPair], None] | None = None,
) -> FuseReport:
    """Read, plan, fuse and write one pair of image, DICOM or NIfTI inputs, and the
    provenance record beside the output (:mod:`medfuse.provenance`).

    ``on_slice``, when given, sees every fused slice with the prepared pair it came from
    (the QC report keeps small copies of both, so it shows exactly what was fused).

    The engine is loaded only after every input and option has been checked, so mistakes
    fail fast without importing torch; the outputs, the preview, the transform and the
    record are staged and then committed as one set (:class:`~medfuse.io.outputs.OutputSet`):
    all of them appear, or none (the record holds each output's sha256). Warnings raised while planning (a guessed modality, a
    doubtful registration) are returned in the report and kept in the record.
    """
    from medfuse.io.geometry import patient_orientation, slice_plane
    from medfuse.io.outputs import OutputSet, check_output
    from medfuse.io.sinks import output_format
    from medfuse.provenance import (
        build_record,
        describe_inputs,
        output_hashes,
        record_path,
        record_text,
    )
    from medfuse.render import Montage

    started = time.perf_counter()
    timings: dict[str, float] = {}
    fmt = output_format(request.output, request.format)
    _check_request(request, fmt)
    inputs = (request.mri, request.other)
    record = record_path(request.output)

    def check_extra_outputs() -> None:
        check_output(record, request.force, inputs, label="provenance record")
        if request.save_transform is not None:
            check_output(request.save_transform, request.force, inputs,
                         label="--save-transform")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, fixed = read_pair_plan(
            request.mri, request.other, modality=request.modality, axis=request.axis,
            slice_index=request.slice_index, colormap=request.colormap, window=request.window,
            mri_window=request.mri_window, series=tuple(request.series),
            volume_index=request.volume_index, resize=request.resize,
            allow_non_mr=request.allow_non_mr, floor=request.floor, register=request.register,
            gamut_map=request.gamut_map, timings=timings, after_read=check_extra_outputs,
        )
    notes = [str(w.message) for w in caught]
    n = 1 if plan.two_d else len(plan)
    indices = fixed if fixed is not None else ([0] if plan.two_d else parse_slices(request.slices, n))
    single = plan.two_d or request.slice_index is not None
    if fmt == "nifti" and not plan.two_d and len(indices) != n:
        raise UsageError("NIfTI output holds the whole volume; drop --slice or write PNG/DICOM")
    montage = None
    if request.preview is not None:
        orientation = None
        if plan.mri.has_geometry and plan.mri.format != "image":
            orientation = patient_orientation(slice_plane(plan.mri_stack.affine, indices[0]))
        montage = Montage(request.preview, indices, request.force, inputs,
                          labels=not plan.two_d, orientation=orientation,
                          style=(request.preview_style or "montage").strip().lower(),
                          other_name=plan.modality.upper())
    sink = _make_sink(request, fmt, plan, indices, single)
    together = OutputSet()
    try:
        tick = time.perf_counter()
        engine = engine_loader()
        timings["engine_load"] = time.perf_counter() - tick
        _resample_on_device(plan, engine)
        tick = time.perf_counter()
        done = 0
        size = getattr(engine, "batch_size", None) or DEFAULT_BATCH
        for chunk in prepared_slices(plan, indices, size):
            results = fuse_prepared([p for _, p in chunk], engine, False, request.stretch)
            for (index, pair), result in zip(chunk, results):
                sink.add(index, result.image)
                if montage is not None:
                    montage.add(index, result.image, pair.mri_y, pair.other_image)
                if on_slice is not None:
                    on_slice(index, result, pair)
                done += 1
                if progress is not None:
                    progress(done, len(indices))
        timings["fuse_and_write"] = time.perf_counter() - tick
        # Everything is staged first and renamed as one set: the output, its preview, its
        # transform and its record appear together or not at all.
        tick = time.perf_counter()
        outputs = sink.stage(together)
        preview = None
        if montage is not None and montage.tiles:
            preview = montage.write(together.path_for(request.preview))
        transform = None
        if request.save_transform is not None and plan.registration is not None:
            _write_staged(together, request.save_transform, plan.registration.itk_transform)
            transform = request.save_transform
        timings["commit"] = time.perf_counter() - tick
        tick = time.perf_counter()
        described = describe_inputs(plan, request.mri, request.other, tuple(request.series),
                                    request.volume_index)
        timings["hash_inputs"] = time.perf_counter() - tick
        hashes = output_hashes([(s, t) for s, t in together.staged() if t in outputs], record)
        timings["total"] = time.perf_counter() - started
        content = build_record(
            plan=plan, request=_request_record(request), inputs=described,
            outputs={"format": fmt, "paths": [str(p) for p in outputs], "slices": indices,
                     "sha256": hashes,
                     "preview": str(preview) if preview is not None else None,
                     "preview_style": request.preview_style if preview is not None else None,
                     "transform": str(transform) if transform is not None else None,
                     "colour": plan.colour, "record": str(record)},
            engine=engine, warnings=notes, timings=timings,
        )
        _write_staged(together, record, record_text(content))
        together.commit()
    except BaseException:
        together.abort()
        sink.abort()
        raise
    return FuseReport(outputs, plan, indices, preview, notes, record, content, transform)


__all__ = [
    "FuseReport",
    "FuseRequest",
    "FusionResult",
    "check_options",
    "fuse",
    "fuse_files",
    "fuse_plan",
    "fuse_prepared",
    "parse_floor",
    "prepared_slices",
    "read_pair",
    "read_pair_plan",
]

