"""Fusing DICOM/NIfTI slices and whole volumes: windowing, grids, colour, batches.

Data flow for a pair of medical inputs::

    Volume (stored voxels + affine) --stack--> (slice, row, col) in display order
        --window--> [0, 1]   (once per volume, never per slice)
        --resample--> the second volume onto the MRI grid, slab by slab (trilinear)
        --pseudo-colour--> grey PET/SPECT through a colour map
        --pipeline.prepare_pair / fuse_prepared--> fused slices, in batches

medfuse does **not** register images: the two inputs must already be co-registered. Their
affines are only used to place the second volume's voxels on the MRI grid (which is exactly
right for co-registered volumes stored on different grids, e.g. PET at 2 mm beside MRI at
1 mm), to refuse pairs that do not overlap in space at all, and to warn when the heads'
bounding boxes barely overlap, which suggests the pair was never co-registered.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medfuse.prepare.colormaps import pseudo_colour, resolve_colormap
from medfuse.errors import InputError, UsageError
from medfuse.io.geometry import (
    box_overlap,
    resample_slab,
    same_grid,
    stack_view,
    world_box,
)
from medfuse.io.images import ImageData
from medfuse.io.volume import Stack, Volume
from medfuse.prepare.windowing import Window, apply_window, default_window, sample_lattice

if TYPE_CHECKING:
    from medfuse.engine import Engine
    from medfuse.io.sinks import Sink
    from medfuse.prepare.pair import FusionResult

#: Second-image modalities medfuse fuses with MRI.
FUNCTIONAL = ("ct", "pet", "spect")
#: Below this many HU somewhere in the volume, a grey second image of unknown modality is CT
#: (air is -1000 HU); activity maps (PET/SPECT) are never this negative.
CT_AIR_THRESHOLD = -500.0
#: Heads whose bounding boxes overlap less than this (fraction of the smaller box) trigger
#: the "were these co-registered?" warning.
REGISTRATION_OVERLAP_WARN = 0.5
#: Windowed intensity above which a voxel counts as "head" (foreground) for that check.
FOREGROUND_LEVEL = 0.1


class RegistrationWarning(UserWarning):
    """The affines suggest the two inputs were never co-registered."""


class ModalityWarning(UserWarning):
    """A modality was guessed; ``--modality`` states it."""


@dataclass
class FusionPlan:
    """Everything decided once per pair before any slice is fused."""

    mri: Volume
    other: Volume
    axis: str
    mri_stack: Stack
    other_stack: Stack  # on the MRI grid when ``resampled`` is False
    mri_window: Window
    other_window: Window
    modality: str
    colormap: str | None
    resampled: bool
    two_d: bool
    notes: list[str] = field(default_factory=list)

    @property
    def colour(self) -> bool:
        """Whether fused slices come out RGB (PET/SPECT chroma) or grey (CT, --colormap none)."""
        return self.modality != "ct" and (self.other.is_rgb or self.colormap is not None)

    def __len__(self) -> int:
        return len(self.mri_stack)

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.mri_stack.plane_shape

    # -- per-slab data -------------------------------------------------------------------
    def mri_slab(self, start: int, stop: int) -> np.ndarray:
        """MRI slices ``start:stop`` windowed to [0, 1] float32."""
        vals = self.mri_stack.values(start, stop)
        return apply_window(vals, self.mri_window, out=vals)

    def other_slab(self, start: int, stop: int) -> np.ndarray:
        """Second-image slices on the MRI grid, windowed to [0, 1] and pseudo-coloured."""
        if self.resampled:
            o = self.other
            vals = resample_slab(o.data, o.affine, self.mri_stack.affine, start, stop,
                                 self.plane_shape)
            if o.slope != 1.0:
                vals *= np.float32(o.slope)
            if o.inter != 0.0:
                vals += np.float32(o.inter)
        else:
            vals = self.other_stack.values(start, stop)
        vals = apply_window(vals, self.other_window, out=vals)
        if vals.ndim == 3 and self.colour:
            vals = pseudo_colour(vals, self.modality, self.colormap)
        return vals


def _as_grey_mri(mri: Volume) -> Volume:
    """The MRI as one channel: an RGB file whose channels agree is grey content stored as
    colour (a view of its first channel); real colour is refused."""
    if not mri.is_rgb:
        return mri
    sample = sample_lattice(mri.data)
    if np.ptp(sample, axis=-1).max(initial=0) > 0:
        raise InputError(f"the MRI must be grey, but {mri.label} is a colour image")
    return dataclasses.replace(mri, data=mri.data[..., 0])


def guess_modality(other: Volume, stated: str | None) -> tuple[str, str | None]:
    """The second input's modality, and a note when it had to be guessed.

    Order: ``--modality``, then the DICOM Modality, then: colour -> PET pseudo-colour; grey
    with air-like values (below -500) -> CT; other grey -> PET.
    """
    if stated is not None:
        key = stated.strip().lower()
        if key not in FUNCTIONAL:
            raise UsageError(f"--modality {stated!r}: expected one of {', '.join(FUNCTIONAL)}")
        return key, None
    if other.modality in FUNCTIONAL:
        return other.modality, None  # type: ignore[return-value]
    if other.format == "image":
        return ("pet" if other.is_rgb else "ct"), None  # the core rule for ordinary images
    if other.is_rgb:
        return "pet", f"{other.label}: modality not stated; colour, so treated as PET (use --modality)"
    sample = sample_lattice(other.data).astype(np.float64) * other.slope + other.inter
    finite = sample[np.isfinite(sample)]
    if finite.size and float(finite.min()) < CT_AIR_THRESHOLD:
        return "ct", f"{other.label}: modality not stated; values below {CT_AIR_THRESHOLD:g} look like CT (use --modality)"
    return "pet", f"{other.label}: modality not stated; treated as PET (use --modality pet|spect|ct)"


def choose_window(volume: Volume, explicit: Window | None, modality: str | None) -> Window:
    """Explicit window, else the file's own (DICOM header, RGB/image range), else the
    modality default (see medfuse.prepare.windowing)."""
    if volume.is_rgb or volume.format == "image":
        return volume.header_window or Window(0.5, 1.0, "image [0, 1]")
    if explicit is not None:
        return explicit
    if volume.header_window is not None:
        return volume.header_window
    try:
        return default_window(volume.data, modality, volume.slope, volume.inter)
    except InputError as exc:
        raise InputError(f"{volume.label} {exc}") from None


def take_slice(volume: Volume, axis: str, index: int) -> Volume:
    """One slice of a volume (as a one-voxel-thick volume with the right affine)."""
    view, aff = stack_view(volume.data, volume.affine, axis)
    n = view.shape[0]
    if not 0 <= index < n:
        raise UsageError(f"--slice {index}: {volume.label} has {axis} slices 0 to {n - 1}")
    shifted = aff.copy()
    shifted[:, 3] = aff @ np.array([index, 0.0, 0.0, 1.0])
    return dataclasses.replace(volume, data=view[index : index + 1], affine=shifted)


def _foreground_box(volume: Volume, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
    """World bounding box of the voxels brighter than FOREGROUND_LEVEL after windowing,
    found on a sparse lattice (cheap, and precise enough to spot a missing registration)."""
    data = volume.data[..., 0] if volume.is_rgb else volume.data
    total = int(np.prod(data.shape[:3]))
    step = max(1, int(np.ceil((total / 200_000) ** (1 / 3))))
    sample = np.asarray(data[::step, ::step, ::step], dtype=np.float32) * volume.slope + volume.inter
    mask = apply_window(sample, window) > FOREGROUND_LEVEL
    if not mask.any():
        return None
    idx = np.argwhere(mask).astype(np.float64) * step
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    pts = (volume.affine @ corners.T)[:3].T
    return pts.min(axis=0), pts.max(axis=0)


def check_grids(mri: Volume, other: Volume, mri_window: Window, other_window: Window) -> bool:
    """Decide whether the second volume must be resampled onto the MRI grid (True), refuse
    pairs that cannot be put on one grid, and warn about likely missing registration."""
    if same_grid(mri.shape, mri.affine, other.shape, other.affine):
        return False
    if not (mri.has_geometry and other.has_geometry):
        if mri.shape == other.shape:
            missing = mri if not mri.has_geometry else other
            warnings.warn(
                f"{missing.label} has no position/orientation in space; assuming both inputs "
                "share one grid because their sizes match",
                RegistrationWarning, stacklevel=2,
            )
            return False
        raise InputError(
            f"grids differ ({'x'.join(map(str, mri.shape))} vs "
            f"{'x'.join(map(str, other.shape))}) and "
            f"{mri.label if not mri.has_geometry else other.label} has no position or "
            "orientation, so the second volume cannot be placed on the MRI grid"
        )
    fov = box_overlap(world_box(mri.shape, mri.affine), world_box(other.shape, other.affine))
    if fov <= 0:
        raise InputError(
            f"{mri.label} and {other.label} do not overlap in space (their affines place them "
            "apart); medfuse does not register images: co-register them first"
        )
    heads = (_foreground_box(mri, mri_window), _foreground_box(other, other_window))
    if heads[0] is not None and heads[1] is not None:
        overlap = box_overlap(heads[0], heads[1])
        if overlap < REGISTRATION_OVERLAP_WARN:
            warnings.warn(
                f"the heads in {mri.label} and {other.label} overlap by only {overlap:.0%} "
                "of the smaller one: were they co-registered? medfuse does not register images",
                RegistrationWarning, stacklevel=2,
            )
    return True


def plan_fusion(
    mri: Volume,
    other: Volume,
    axis: str | None = "axial",
    modality: str | None = None,
    colormap: str | None = None,
    mri_window: Window | None = None,
    other_window: Window | None = None,
) -> FusionPlan:
    """Check a pair and decide windows, grid, modality and colour map, before any fusion."""
    mri = _as_grey_mri(mri)
    if mri.is_2d != other.is_2d:
        flat, deep = (mri, other) if mri.is_2d else (other, mri)
        raise InputError(
            f"{flat.label} is a 2D image but {deep.label} is a 3D volume "
            f"({'x'.join(map(str, deep.shape))}); give --slice N to fuse one slice of it"
        )
    two_d = mri.is_2d
    mod, note = guess_modality(other, modality)
    notes = [note] if note else []
    if note:
        warnings.warn(note, ModalityWarning, stacklevel=2)
    chosen_axis = mri.default_axis(axis)
    mw = choose_window(mri, mri_window, "mr")
    ow = choose_window(other, other_window, mod)
    cmap = resolve_colormap(mod, colormap) if not other.is_rgb else None
    mri_stack = mri.stack(chosen_axis)
    if two_d:
        other_axis = other.default_axis(chosen_axis)
        other_stack = other.stack(other_axis)
        resampled = False
    else:
        resampled = check_grids(mri, other, mw, ow)
        other_stack = mri_stack if resampled else other.stack(chosen_axis)
    if min(mri_stack.plane_shape) < 8:
        raise InputError(
            f"{mri.label}: {chosen_axis} slices are {mri_stack.plane_shape[1]}x"
            f"{mri_stack.plane_shape[0]} pixels; medfuse needs 8x8 or more (try another --axis)"
        )
    return FusionPlan(
        mri=mri, other=other, axis=chosen_axis, mri_stack=mri_stack, other_stack=other_stack,
        mri_window=mw, other_window=ow, modality=mod, colormap=cmap, resampled=resampled,
        two_d=two_d, notes=notes,
    )


def parse_slices(spec: str | None, n: int, option: str = "--slices") -> list[int]:
    """``"10"``, ``"3,5,9"``, ``"10:20"``, ``"0:100:5"`` (Python ranges, end excluded) or any
    comma list of those -> sorted unique slice indices, each checked against ``n``."""
    if spec is None or not spec.strip():
        return list(range(n))
    out: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if ":" in part:
                bits = [int(b) if b else None for b in part.split(":")]
                if len(bits) > 3 or (len(bits) == 3 and bits[2] is not None and bits[2] <= 0):
                    raise ValueError
                start, stop = bits[0], bits[1]
                step = bits[2] if len(bits) == 3 and bits[2] is not None else 1
                start = 0 if start is None else start
                stop = n if stop is None else stop
                for b in (start, stop - 1):
                    if not 0 <= b < n:
                        raise IndexError(b)
                out.update(range(start, stop, step))
            else:
                v = int(part)
                if not 0 <= v < n:
                    raise IndexError(v)
                out.add(v)
        except IndexError as exc:
            raise UsageError(f"{option}: slice {exc.args[0]} is out of range 0 to {n - 1}") from None
        except ValueError:
            raise UsageError(
                f"{option}: cannot read {part.replace(':', ' to ')!r}; expected N, START:STOP, "
                "START:STOP:STEP or a comma list of those"
            ) from None
    if not out:
        raise UsageError(f"{option} selects no slices")
    return sorted(out)


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


def fuse_plan(
    plan: FusionPlan,
    engine: Engine,
    indices: Iterable[int] | None = None,
    batch_size: int | None = None,
    stretch: bool = False,
    resize: bool = False,
) -> Iterator[tuple[int, FusionResult]]:
    """Fuse the planned slices batch by batch, yielding ``(slice index, result)`` in order.

    Only one batch of float32 slices exists at a time; ``resize`` concerns 2D pairs of
    different sizes (as ``medfuse fuse --resize`` for ordinary images).
    """
    from medfuse.prepare.pair import fuse_prepared, prepare_pair

    if plan.two_d:
        mri_img = ImageData(plan.mri_slab(0, 1)[0], plan.mri.path)
        other_img = ImageData(plan.other_slab(0, 1)[0], plan.other.path)
        pair = prepare_pair(mri_img, other_img, modality=plan.modality, resize=resize,
                            name=plan.mri.label)
        yield 0, fuse_prepared([pair], engine, do_stretch=stretch)[0]
        return
    todo = sorted(set(range(len(plan)) if indices is None else indices))
    size = batch_size or getattr(engine, "batch_size", 8) or 8
    for chunk in _chunks(todo, size):
        mri_parts, other_parts = [], []
        for start, stop in _runs(chunk):
            mri_parts.append(plan.mri_slab(start, stop))
            other_parts.append(plan.other_slab(start, stop))
        mri = np.concatenate(mri_parts) if len(mri_parts) > 1 else mri_parts[0]
        other = np.concatenate(other_parts) if len(other_parts) > 1 else other_parts[0]
        pairs = [
            prepare_pair(ImageData(mri[n]), ImageData(other[n]), modality=plan.modality,
                         name=str(index))
            for n, index in enumerate(chunk)
        ]
        del mri, other, mri_parts, other_parts
        yield from zip(chunk, fuse_prepared(pairs, engine, do_stretch=stretch))


def fuse_volumes(
    mri: Volume,
    other: Volume,
    engine: Engine,
    axis: str = "axial",
    modality: str | None = None,
    colormap: str | None = None,
    mri_window: Window | None = None,
    other_window: Window | None = None,
    indices: Iterable[int] | None = None,
    on_slice: Callable[[int, np.ndarray], None] | None = None,
) -> FusionPlan:
    """Library convenience: plan and fuse, handing each fused slice to ``on_slice``."""
    plan = plan_fusion(mri, other, axis, modality, colormap, mri_window, other_window)
    for index, result in fuse_plan(plan, engine, indices):
        if on_slice is not None:
            on_slice(index, result.image)
    return plan


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


def read_pair(request: FuseRequest) -> tuple[Volume, Volume]:
    """Read both inputs; when they are the same DICOM folder, ``--series`` names the MRI's
    series first and the second image's next."""
    from medfuse.io.volume import read_volume

    series = tuple(request.series)
    mri = read_volume(request.mri, series, request.volume_index)
    rest = series
    if mri.dicom is not None and request.mri.resolve() == request.other.resolve():
        used = str(mri.dicom.get("SeriesInstanceUID", ""))
        rest = tuple(s for s in series if s != used)
    other = read_volume(request.other, rest, request.volume_index)
    return mri, other


def _check_request(request: FuseRequest, fmt: str) -> None:
    inputs = {request.mri.resolve(), request.other.resolve()}
    for label, path in (("output", request.output), ("--preview", request.preview)):
        if path is not None and path.resolve() in inputs:
            raise UsageError(f"refusing to overwrite input {path} ({label})")
    if request.bit_depth not in (None, 8, 16):
        raise UsageError(f"--bit-depth must be 8 or 16, got {request.bit_depth}")
    if fmt == "nifti" and request.slices:
        raise UsageError("--slices applies to PNG and DICOM output; NIfTI holds the whole volume")
    if request.anonymize and fmt != "dicom":
        raise UsageError("--anonymize applies to DICOM output only")
    if request.slice_index is not None and request.slices:
        raise UsageError("give --slice N or --slices SPEC, not both")
    if request.slice_index is not None and request.slice_index < 0:
        raise UsageError(f"--slice {request.slice_index}: slice numbers start at 0")


def fuse_files(
    request: FuseRequest,
    engine_loader: Callable[[], Engine],
    progress: Callable[[int, int], None] | None = None,
) -> FuseReport:
    """Read, plan, fuse and write one pair of DICOM/NIfTI/image inputs.

    The engine is loaded only after every input and option has been checked, so mistakes
    fail fast without importing torch; outputs appear only when complete.
    """
    from medfuse.prepare.windowing import parse_window
    from medfuse.io.sinks import DicomSink, Montage, NiftiSink, PngSink, output_format

    fmt = output_format(request.output, request.format)
    _check_request(request, fmt)
    other_window = parse_window(request.window, "--window")
    mri_window = parse_window(request.mri_window, "--mri-window")
    mri, other = read_pair(request)
    axis = request.axis
    indices_fixed: list[int] | None = None
    if request.slice_index is not None:
        if mri.is_2d and not other.is_2d:
            other = take_slice(other, mri.default_axis(axis), request.slice_index)
        elif other.is_2d and not mri.is_2d:
            mri = take_slice(mri, other.default_axis(axis), request.slice_index)
        elif mri.is_2d and other.is_2d:
            if request.slice_index != 0:
                raise UsageError(f"--slice {request.slice_index}: both inputs are single slices (slice 0)")
        else:
            indices_fixed = [request.slice_index]
    plan = plan_fusion(mri, other, axis, request.modality, request.colormap, mri_window,
                       other_window)
    n = 1 if plan.two_d else len(plan)
    if indices_fixed is not None:
        if indices_fixed[0] >= n:
            raise UsageError(
                f"--slice {indices_fixed[0]}: {mri.label} has {plan.axis} slices 0 to {n - 1}"
            )
        indices = indices_fixed
    else:
        indices = [0] if plan.two_d else parse_slices(request.slices, n)
    single = plan.two_d or request.slice_index is not None
    if fmt == "nifti" and not plan.two_d and len(indices) != n:
        raise UsageError("NIfTI output holds the whole volume; drop --slice or write PNG/DICOM")
    inputs = (request.mri, request.other)
    description = f"medfuse MRI+{plan.modality.upper()} fused"
    montage = (Montage(request.preview, indices, request.force, inputs)
               if request.preview is not None else None)
    sink: Sink
    if fmt == "png":
        sink = PngSink(request.output, indices, n, plan.axis, request.bit_depth, request.force,
                       inputs, single)
    elif fmt == "nifti":
        sink = NiftiSink(request.output, plan.mri, plan.axis, plan.colour, request.force, inputs)
    else:
        sink = DicomSink(request.output, plan.mri, plan.mri_stack.affine, plan.colour,
                         request.anonymize, request.force, inputs, single, description)
    try:
        engine = engine_loader()
        done = 0
        for index, result in fuse_plan(plan, engine, indices, stretch=request.stretch,
                                       resize=request.resize):
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
    return FuseReport(outputs, plan, indices, preview)


__all__ = [
    "FUNCTIONAL",
    "FuseReport",
    "FuseRequest",
    "FusionPlan",
    "ModalityWarning",
    "RegistrationWarning",
    "check_grids",
    "choose_window",
    "fuse_plan",
    "fuse_files",
    "fuse_volumes",
    "guess_modality",
    "parse_slices",
    "plan_fusion",
    "read_pair",
    "take_slice",
]
