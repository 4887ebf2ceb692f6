"""The plan: every decision about a pair, made once, before any slice is fused.

From two :class:`~medfuse.io.volume.Volume` objects (a PNG is a one-slice volume) the plan
decides the other image's modality, the grey-MRI rule, both windows, the slicing axis,
whether and how the other volume is put on the MRI grid, and the colour map. Nothing
downstream re-checks or re-decides: slabs are cut from the plan, split into luminance and
chroma (:mod:`medfuse.prepare.pair`) and fused (:mod:`medfuse.fusion`).

medfuse does **not** register images: the two inputs must already be co-registered. Their
affines are only used to place the other volume's voxels on the MRI grid (exactly right for
co-registered volumes stored on different grids, e.g. PET at 2 mm beside MRI at 1 mm), to
refuse pairs that do not overlap in space at all, and to warn when the heads' bounding boxes
barely overlap, which suggests the pair was never co-registered.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np

from medfuse.errors import InputError, UsageError
from medfuse.io.geometry import (
    box_overlap,
    resample_slab,
    same_grid,
    stack_view,
    world_box,
)
from medfuse.io.images import GREY_TOLERANCE
from medfuse.io.volume import Stack, Volume
from medfuse.prepare.colormaps import pseudo_colour, resolve_colormap
from medfuse.prepare.pair import MIN_SIDE, resize_to, size_mismatch
from medfuse.prepare.windowing import Window, apply_window, default_window, sample_lattice
from medfuse.vocabulary import OTHER_MODALITIES, parse_modality

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
    #: 2D pairs of different sizes: resample the other plane onto the MRI's (``--resize``).
    resize: bool = False

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
        if self.resize and vals.shape[1:3] != self.plane_shape:
            vals = np.stack([resize_to(v, self.plane_shape) for v in vals])
        if vals.ndim == 3 and self.colour:
            vals = pseudo_colour(vals, self.modality, self.colormap)
        return vals

    def describe(self) -> str:
        """One line naming every decision, for ``-v``."""
        what = "2D pair" if self.two_d else f"{len(self)} {self.axis} slice(s)"
        return (
            f"{what}; modality {self.modality}; colour map {self.colormap or 'none'}; "
            f"MRI window {self.mri_window.describe()}; other window "
            f"{self.other_window.describe()}"
            + ("; other volume resampled onto the MRI grid (trilinear)" if self.resampled else "")
            + ("; other image resized onto the MRI grid" if self.resize
               and self.other_stack.plane_shape != self.plane_shape else "")
        )


def _as_grey_mri(mri: Volume) -> Volume:
    """The MRI as one channel: an RGB file whose channels agree within GREY_TOLERANCE of its
    peak (the rule ordinary images follow when read) is grey content stored as colour;
    real colour is refused."""
    if not mri.is_rgb:
        return mri
    sample = sample_lattice(mri.data).astype(np.float64)
    spread = float(np.ptp(sample, axis=-1).max(initial=0))
    peak = max(1.0, float(np.abs(sample).max(initial=0)))
    if spread > GREY_TOLERANCE * peak + 1e-7:
        raise InputError(f"the MRI must be grey, but {mri.label} is a colour image "
                         "(R, G and B differ)")
    grey = mri.data[..., 0] if spread == 0 else mri.data.mean(axis=-1, dtype=np.float32)
    return dataclasses.replace(mri, data=grey)


def guess_modality(other: Volume, stated: str | None) -> tuple[str, str | None]:
    """The second input's modality, and a note when it had to be guessed.

    Order: ``--modality``, then the DICOM Modality, then: colour -> PET pseudo-colour; grey
    with air-like values (below -500) -> CT; other grey -> PET.
    """
    if stated is not None:
        return parse_modality(stated), None
    if other.modality in OTHER_MODALITIES:
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
    resize: bool = False,
) -> FusionPlan:
    """Check a pair and decide windows, grid, modality and colour map, before any fusion.

    ``resize`` lets 2D pairs of different sizes through (the other plane is resampled onto
    the MRI's); volumes are always put on the MRI grid through their affines instead.
    """
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
    mw = choose_window(mri, mri_window, "mri")
    ow = choose_window(other, other_window, mod)
    cmap = resolve_colormap(mod, colormap) if not other.is_rgb else None
    mri_stack = mri.stack(chosen_axis)
    if two_d:
        other_axis = other.default_axis(chosen_axis)
        other_stack = other.stack(other_axis)
        resampled = False
        if other_stack.plane_shape != mri_stack.plane_shape and not resize:
            raise size_mismatch(mri_stack.plane_shape, other_stack.plane_shape, mri.label,
                                other.label)
    else:
        resampled = check_grids(mri, other, mw, ow)
        other_stack = mri_stack if resampled else other.stack(chosen_axis)
    for vol, stack in ((mri, mri_stack), (other, other_stack)):
        if min(stack.plane_shape) < MIN_SIDE:
            hint = " (try another --axis)" if not two_d else ""
            raise InputError(
                f"{vol.label}: {chosen_axis if not two_d else 'the'} slices are "
                f"{stack.plane_shape[1]}x{stack.plane_shape[0]} pixels; medfuse needs "
                f"{MIN_SIDE}x{MIN_SIDE} or more{hint}"
            )
    return FusionPlan(
        mri=mri, other=other, axis=chosen_axis, mri_stack=mri_stack, other_stack=other_stack,
        mri_window=mw, other_window=ow, modality=mod, colormap=cmap, resampled=resampled,
        two_d=two_d, notes=notes, resize=resize and two_d,
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


__all__ = [
    "CT_AIR_THRESHOLD",
    "FusionPlan",
    "ModalityWarning",
    "RegistrationWarning",
    "check_grids",
    "choose_window",
    "guess_modality",
    "parse_slices",
    "plan_fusion",
    "take_slice",
]
