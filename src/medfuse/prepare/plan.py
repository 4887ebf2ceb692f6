"""The plan: every decision about a pair, made once, before any slice is fused.

From two :class:`~medfuse.io.volume.Volume` objects (a PNG is a one-slice volume) the plan
decides the other image's modality, the grey-MRI rule, both windows (SUV for a PET that
states it), the transparency floor, the slicing axis, whether and how the other volume is put
on the MRI grid (registering it first when asked), and the colour map; it checks that the
first input is an MRI, that both show one patient, and scores how well the other image sits
on the MRI. Nothing downstream re-checks or re-decides: slabs are cut from the plan, split
into luminance and chroma (:mod:`medfuse.prepare.pair`) and fused (:mod:`medfuse.fusion`).

Without ``register``, medfuse does not register images: the affines place the other
volume's voxels on the MRI grid (exactly right for co-registered volumes stored on different
grids, e.g. PET at 2 mm beside MRI at 1 mm), pairs that do not overlap in space at all are
refused, and the registration score (:mod:`medfuse.registration`) warns about pairs that
do not look registered.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfuse.colour import DEFAULT_GAMUT_MAP
from medfuse.errors import InputError, UsageError
from medfuse.io.geometry import (
    box_overlap,
    check_axis,
    resample_slab,
    same_grid,
    stack_view,
    voxel_sizes,
    world_box,
)
from medfuse.io.images import GREY_TOLERANCE
from medfuse.io.volume import Stack, Volume
from medfuse.prepare.alignment import ALIGNMENT_WARN, Alignment, estimate_alignment
from medfuse.prepare.colormaps import check_colormap, pseudo_colour, resolve_colormap
from medfuse.prepare.floor import coherent, min_region_pixels
from medfuse.prepare.image_checks import (
    ModalityWarning,
    check_distinct,
    check_windows,
    swap_warning,
    warn_floor_unused,
)
from medfuse.prepare.pair import MIN_SIDE, check_gamut_map, resize_to, size_mismatch
from medfuse.prepare.windowing import (
    FLOOR_FRACTION,
    SUV_FALLBACK,
    SuvDecision,
    Window,
    apply_window,
    check_functional_window,
    default_floor,
    default_window,
    sample_lattice,
    suv_factor,
    suv_window,
    window_in_suv,
)
from medfuse.registration import (
    OUTLINE_WARN,
    PLANE_DISTANCE_WARN_MM,
    SCORE_VOXELS,
    RegistrationResult,
    RegistrationScore,
    RegistrationWarning,
    containment,
    head_mask,
    outline_distance,
)
from medfuse.vocabulary import FUNCTIONAL, OTHER_MODALITIES, modality_from_dicom, parse_modality

#: Below this many HU somewhere in the volume, a grey second image of unknown modality is CT
#: (air is -1000 HU); activity maps (PET/SPECT) are never this negative.
CT_AIR_THRESHOLD = -500.0
#: Windowed intensity above which a pixel of an ordinary image (or a colour volume) counts
#: as content for the registration score; such images carry no units to set a floor in.
FOREGROUND_LEVEL = 0.1
#: What each DICOM Modality code is, in words, for messages.
_CODE_WORDS = {"MR": "an MR image", "CT": "a CT", "PT": "a PET", "NM": "a nuclear medicine "
               "(SPECT) image", "ST": "a SPECT", "OT": "an 'other' (OT) image",
               "SC": "a secondary capture"}


def _code_words(code: str) -> str:
    return _CODE_WORDS.get(code.upper(), f"a {code} image")


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
    #: Transparency floor of the other image in its scanner units (Bq/ml, counts): at or
    #: below it, the fused pixel is the MRI's. None: nothing is transparent (ordinary
    #: images, colour inputs, CT).
    floor: float | None = None
    floor_source: str = ""
    #: Whether (and how) a PET is shown in SUV; None when SUV does not apply.
    suv: SuvDecision | None = None
    modality_source: str = ""
    colormap_source: str = ""
    registration_score: RegistrationScore | None = None
    registration: RegistrationResult | None = None
    #: Facts that are no warning but worth saying with -v (a hybrid scanner's shared frame
    #: of reference, for one).
    info: list[str] = field(default_factory=list)
    #: Patient ID and Frame of Reference of both inputs, and whether they agree.
    checks: dict[str, Any] = field(default_factory=dict)
    #: Resamples the other volume on the engine's device (set by fusion for CUDA engines);
    #: None: trilinear resampling with scipy on the CPU.
    resampler: Any = field(default=None, repr=False, compare=False)
    #: How colours outside RGB come back in the fused image (``fit`` or ``clip``; see
    #: :func:`medfuse.prepare.pair.colourise`).
    gamut_map: str = DEFAULT_GAMUT_MAP

    @property
    def colour(self) -> bool:
        """Whether fused slices come out RGB (PET/SPECT chroma) or grey (CT, --colormap none)."""
        return self.modality != "ct" and (self.other.is_rgb or self.colormap is not None)

    def __len__(self) -> int:
        return len(self.mri_stack)

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.mri_stack.plane_shape

    @property
    def in_suv(self) -> bool:
        return self.suv is not None and self.suv.available

    # -- per-slab data -------------------------------------------------------------------
    def mri_slab(self, start: int, stop: int) -> np.ndarray:
        """MRI slices ``start:stop`` windowed to [0, 1] float32."""
        vals = self.mri_stack.values(start, stop)
        return apply_window(vals, self.mri_window, out=vals)

    def other_values(self, start: int, stop: int) -> np.ndarray:
        """Second-image slices ``start:stop`` on the MRI grid in scanner units (NaN where it
        has no data), before any window; 2D planes of another size are not yet resized."""
        if self.resampled:
            o = self.other
            if self.resampler is not None:
                vals = self.resampler.slab(start, stop)
            else:
                vals = resample_slab(o.data, o.affine, self.mri_stack.affine, start, stop,
                                     self.plane_shape)
            if o.slope != 1.0:
                vals *= np.float32(o.slope)
            if o.inter != 0.0:
                vals += np.float32(o.inter)
            return vals
        return self.other_stack.values(start, stop)

    def other_planes(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Second-image slices on the MRI grid, windowed to [0, 1] and pseudo-coloured, and
        where they are transparent (at or below the floor, or without data; None when the
        plan has no floor)."""
        vals = self.other_values(start, stop)
        below = no_data = None
        if self.floor is not None and vals.ndim == 3:
            below = ~(vals > np.float32(self.floor))  # NaN (no data) is transparent too
            no_data = np.isnan(vals)
        vals = apply_window(vals, self.other_window, out=vals)
        if self.resize and vals.shape[1:3] != self.plane_shape:
            vals = np.stack([resize_to(v, self.plane_shape) for v in vals])
            if below is not None and no_data is not None:
                below, no_data = (np.stack([resize_to(b.astype(np.float32), self.plane_shape)
                                            >= 0.5 for b in m]) for m in (below, no_data))
        if below is not None:
            # regions, not pixels: no lone grey pixel in a coloured field (prepare.floor)
            spacing = voxel_sizes(self.mri_stack.affine)
            below = coherent(below, min_region_pixels((spacing[1], spacing[2])), no_data)
        if vals.ndim == 3 and self.colour:
            vals = pseudo_colour(vals, self.modality, self.colormap)
        return vals, below

    def other_slab(self, start: int, stop: int) -> np.ndarray:
        """Second-image slices on the MRI grid, windowed to [0, 1] and pseudo-coloured."""
        return self.other_planes(start, stop)[0]

    def floor_text(self) -> str:
        """The floor in the units a user gives it in (SUV for a PET in SUV)."""
        if self.floor is None:
            return "none"
        if self.in_suv:
            assert self.suv is not None and self.suv.factor is not None
            return f"SUV {self.floor * self.suv.factor:.3g}"
        return f"{self.floor:.4g}"

    def describe(self) -> str:
        """One line naming every decision (the batch report keeps it)."""
        return "; ".join(self.describe_lines())

    def describe_lines(self) -> list[str]:
        """Every decision, the core ones in the first line, for ``-v``."""
        what = "2D pair" if self.two_d else f"{len(self)} {self.axis} slice(s)"
        parts = [
            f"{what}; modality {self.modality}; colour map {self.colormap or 'none'}"
            + (f" (gamut map {self.gamut_map})" if self.colour else "") + "; "
            f"MRI window {self.mri_window.describe()}; other window "
            f"{self.other_window.describe()}"
            + ("; other volume resampled onto the MRI grid (trilinear)" if self.resampled else "")
            + ("; other image resized onto the MRI grid" if self.resize
               and self.other_stack.plane_shape != self.plane_shape else "")
        ]
        if self.suv is not None:
            parts.append(f"SUV (body weight) factor {self.suv.factor:.6g} ml/Bq ({self.suv.reason})"
                         if self.suv.available else f"no SUV: {self.suv.reason}")
        if self.floor is not None:
            parts.append(f"transparent at or below {self.floor_text()} ({self.floor_source})")
        if self.registration is not None:
            parts.append(self.registration.describe())
        if self.registration_score is not None:
            parts.append(self.registration_score.describe())
        return parts

    def decisions(self) -> dict[str, Any]:
        """Every decision with its source, JSON-ready (the provenance record's core)."""

        def window(w: Window) -> dict[str, Any]:
            return {"centre": w.centre, "width": w.width, "low": w.low, "high": w.high,
                    "source": w.source}

        other_w = window(self.other_window)
        if self.in_suv:
            assert self.suv is not None and self.suv.factor is not None
            other_w["suv"] = {"low": self.other_window.low * self.suv.factor,
                              "high": self.other_window.high * self.suv.factor}
        return {
            "modality": {"value": self.modality, "source": self.modality_source},
            "axis": self.axis,
            "slices_in_plan": 1 if self.two_d else len(self),
            "two_d": self.two_d,
            "mri_window": window(self.mri_window),
            "other_window": other_w,
            "suv": self.suv.as_dict() if self.suv is not None else None,
            "transparency_floor": None if self.floor is None else {
                "value": self.floor, "as_given": self.floor_text(), "source": self.floor_source},
            "colormap": {"name": self.colormap, "source": self.colormap_source},
            "gamut_map": self.gamut_map if self.colour else None,
            "grid": {
                "resampled": self.resampled,
                "interpolation": "trilinear" if self.resampled else None,
                "resized_2d": bool(self.resize and self.other_stack.plane_shape
                                   != self.plane_shape),
                "mri_plane_shape": list(self.plane_shape),
            },
            "registration": (self.registration.as_dict() if self.registration is not None
                             else {"method": "none"}),
            "registration_score": (self.registration_score.as_dict()
                                   if self.registration_score is not None else None),
            "checks": self.checks,
            "notes": list(self.notes),
            "info": list(self.info),
        }


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


def check_first_input(mri: Volume, allow_non_mr: bool = False) -> None:
    """Refuse a first input whose DICOM Modality is not MR (a CT or PET given first would be
    fused as if it were the MRI, with the MRI's window and no colour), unless
    ``allow_non_mr``. Inputs that state no modality (NIfTI, images) are taken as given."""
    code = str(mri.dicom.get("Modality", "") or "").strip() if mri.dicom is not None else ""
    if not code or code.upper() == "MR" or allow_non_mr:
        return
    raise UsageError(
        f"the first input must be the MRI, but {mri.label} is {_code_words(code)} (DICOM "
        f"Modality {code}); swap the inputs, or give --allow-non-mr to fuse it as the MRI"
    )


def decide_modality(other: Volume, stated: str | None) -> tuple[str, str, str | None]:
    """The second input's modality, where that came from, and a warning when it was guessed.

    Order: ``--modality``; then the DICOM Modality (CT, PT = pet, NM/ST = spect; MR is
    refused: two MRIs are not a pair medfuse fuses); then for ordinary images the core rule
    (grey = CT, colour = PET); then a guess: colour -> PET, grey with air-like values (below
    -500) -> CT, other grey -> PET.
    """
    if stated is not None:
        return parse_modality(stated), "--modality", None
    code = str(other.dicom.get("Modality", "") or "").strip() if other.dicom is not None else ""
    if other.modality in OTHER_MODALITIES:
        return other.modality, f"DICOM Modality {code or other.modality}", None  # type: ignore[return-value]
    if other.modality == "mri" or modality_from_dicom(code) == "mri":
        raise UsageError(
            f"{other.label} is an MR image (DICOM Modality {code or 'MR'}); the second input "
            "must be a CT, PET or SPECT (give --modality ct|pet|spect to fuse it as one)"
        )
    if other.format == "image":
        mod = "pet" if other.is_rgb else "ct"
        return mod, "ordinary image: grey = CT, colour = PET", None
    said = (f"DICOM Modality {code} is none of CT, PT, NM" if code else "modality not stated")
    if other.is_rgb:
        note = f"{other.label}: {said}; colour, so treated as PET (use --modality)"
        return "pet", note, note
    sample = sample_lattice(other.data).astype(np.float64) * other.slope + other.inter
    finite = sample[np.isfinite(sample)]
    if finite.size and float(finite.min()) < CT_AIR_THRESHOLD:
        note = (f"{other.label}: {said}; values below {CT_AIR_THRESHOLD:g} look like CT "
                "(use --modality)")
        return "ct", note, note
    note = f"{other.label}: {said}; treated as PET (use --modality pet|spect|ct)"
    return "pet", note, note


def guess_modality(other: Volume, stated: str | None) -> tuple[str, str | None]:
    """The second input's modality, and a note when it had to be guessed
    (:func:`decide_modality` without the source)."""
    mod, _, note = decide_modality(other, stated)
    return mod, note


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


def _grey_functional(other: Volume, modality: str) -> bool:
    """A grey PET/SPECT volume from DICOM or NIfTI: where SUV, brain windows and the
    transparency floor apply (ordinary images keep the atlas behaviour byte for byte)."""
    return modality in FUNCTIONAL and not other.is_rgb and other.format != "image"


def decide_suv(other: Volume, modality: str) -> SuvDecision | None:
    """Whether a grey PET volume is shown in SUV (None for anything else)."""
    if modality != "pet" or not _grey_functional(other, modality):
        return None
    if other.format != "dicom":
        return SuvDecision(None, f"{other.format.upper()} states no SUV facts (Units, weight, "
                           "dose, times): DICOM PET only")
    return suv_factor(other.suv)


def choose_other_window(other: Volume, explicit: Window | None, modality: str,
                        suv: SuvDecision | None) -> Window:
    """The other image's window: explicit (in SUV for a PET in SUV; CT presets refused for
    PET/SPECT), else the fixed SUV window, else the file's own, else the modality default."""
    check_functional_window(explicit, modality, other.label)
    if other.is_rgb or other.format == "image":
        return choose_window(other, explicit, modality)
    if suv is not None and suv.factor is not None:
        return window_in_suv(explicit, suv.factor) if explicit else suv_window(suv.factor)
    return choose_window(other, explicit, modality)


def decide_floor(other: Volume, modality: str, window: Window, suv: SuvDecision | None,
                 floor: float | None, transparency: bool) -> tuple[float | None, str]:
    """The transparency floor in scanner units and its source (None: no transparency)."""
    if not _grey_functional(other, modality):
        return None, ""
    if not transparency:
        return None, "--floor none"
    factor = suv.factor if suv is not None and suv.factor is not None else None
    if floor is not None:
        if not math.isfinite(floor):
            raise UsageError(f"--floor {floor}: give a number (or none)")
        return (floor / factor, "--floor, in SUV") if factor else (floor, "--floor")
    return default_floor(window), f"default: {FLOOR_FRACTION:g} of the window above its low end"


def identity_checks(mri: Volume, other: Volume, registered: bool
                    ) -> tuple[list[str], list[str], dict[str, Any]]:
    """Patient ID and Frame of Reference of two DICOM inputs: (warnings, -v notes, record).

    A different Patient ID is a warning (two patients' images cannot be registered); the
    same Frame of Reference UID means one hybrid scanner (PET/CT, PET/MR) registered the
    pair by acquisition, a -v note; different ones mean separate scanners, a warning unless
    medfuse registers the pair."""
    from medfuse.io.dicom.facts import dicom_identity

    a = dicom_identity(mri.dicom) if mri.dicom is not None else {}
    b = dicom_identity(other.dicom) if other.dicom is not None else {}
    warn: list[str] = []
    info: list[str] = []
    record: dict[str, Any] = {}
    for key, name in (("patient_id", "Patient ID"), ("frame_of_reference", "Frame of Reference UID")):
        x, y = a.get(key), b.get(key)
        same = None if not (x and y) else x == y
        record[key] = {"mri": x, "other": y, "same": same}
        if same is None:
            continue
        if key == "patient_id" and not same:
            warn.append(f"the inputs have different Patient IDs ({x!r} and {y!r}): are they "
                        "one patient's images?")
        elif key == "frame_of_reference" and same:
            info.append("both inputs share one Frame of Reference UID: the pair was registered "
                        "by acquisition (one hybrid scanner), so their affines align them")
        elif key == "frame_of_reference" and registered:
            info.append("different Frames of Reference (separate scanners); medfuse registered "
                        "the pair (--register)")
        elif key == "frame_of_reference":
            warn.append(f"the inputs have different {name}s (separate scanners): they are "
                        "aligned only if someone co-registered them (see the registration "
                        "score; --register rigid registers them)")
    return warn, info, record


def take_slice(volume: Volume, axis: str, index: int) -> Volume:
    """One slice of a volume (as a one-voxel-thick volume with the right affine)."""
    view, aff = stack_view(volume.data, volume.affine, axis)
    n = view.shape[0]
    if not 0 <= index < n:
        raise UsageError(f"--slice {index}: {volume.label} has {axis} slices 0 to {n - 1}")
    shifted = aff.copy()
    shifted[:, 3] = aff @ np.array([index, 0.0, 0.0, 1.0])
    return dataclasses.replace(volume, data=view[index : index + 1], affine=shifted)


def check_grids(mri: Volume, other: Volume) -> bool:
    """Decide whether the second volume must be resampled onto the MRI grid (True), and
    refuse pairs that cannot be put on one grid (how well they are registered is the
    registration score's business, :func:`score_pair`)."""
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
            "apart); medfuse does not register images unless asked: co-register them first "
            "(or try --register rigid)"
        )
    return True


def _other_level(plan: FusionPlan) -> float:
    """Windowed level above which the other image is "coloured" for the score: its floor
    (PET/SPECT volumes; the default floor under ``--floor none``, since how well a pair is
    registered does not change with what the user chose to colour, and counting the noise
    in air as colour would call a registered pair misregistered), its window floor (CT
    volumes: 0), FOREGROUND_LEVEL for ordinary images and colour inputs, which carry no
    units."""
    if plan.other.is_rgb or plan.other.format == "image":
        return FOREGROUND_LEVEL
    if plan.floor is not None:
        w = plan.other_window
        return (plan.floor - w.low) / w.width
    if _grey_functional(plan.other, plan.modality):
        return FLOOR_FRACTION
    return 0.0


def _registered_by(plan: FusionPlan) -> str | None:
    """What registered the pair: ``--register``, or one Frame of Reference UID (a hybrid
    scanner registered it by acquisition); None when nothing says it is registered."""
    if plan.registration is not None:
        return "--register"
    if (plan.checks.get("frame_of_reference") or {}).get("same"):
        return "one Frame of Reference"
    return None


def _outline_distance(plan: FusionPlan, mri_w: np.ndarray, other_w: np.ndarray) -> float | None:
    """Two ordinary images with a grey (CT) second image: how far apart the head outlines
    lie (:func:`medfuse.registration.outline_distance`). PET and SPECT show the brain, not
    the head, so their outline is no test of the pair."""
    if not (plan.two_d and plan.mri.format == "image" and plan.other.format == "image"):
        return None
    if plan.other.is_rgb or other_w.ndim != 3:
        return None
    return outline_distance(mri_w[0], other_w[0])


def _plane_distance(plan: FusionPlan) -> float | None:
    """2D pairs with geometry: distance (mm) of the other slice's centre from the MRI's
    slice plane."""
    if not plan.two_d or not (plan.mri.has_geometry and plan.other.has_geometry):
        return None
    if plan.mri.format == "image" or plan.other.format == "image":
        return None
    a, b = plan.mri_stack.affine, plan.other_stack.affine
    normal = np.cross(a[:3, 1], a[:3, 2])
    normal /= np.linalg.norm(normal)
    r, c = plan.mri_stack.plane_shape
    ro, co = plan.other_stack.plane_shape
    p = a @ np.array([0.0, (r - 1) / 2, (c - 1) / 2, 1.0])
    q = b @ np.array([0.0, (ro - 1) / 2, (co - 1) / 2, 1.0])
    return float(abs((q - p)[:3] @ normal))


#: How the 3D score is computed, in the record's words.
ALIGNMENT_METHOD = ("1 - estimated misalignment / 20 mm: the rigid move that maximises "
                    "normalised mutual information inside the MRI's head")


def _alignment(plan: FusionPlan, mri_w: np.ndarray, coarse: np.ndarray,
               spacing: tuple[float, ...]) -> Alignment | None:
    """The 3D search of :mod:`medfuse.prepare.alignment` for grey volume pairs; None for
    2D pairs and colour second images (their score stays the containment)."""
    o = plan.other
    if plan.two_d or o.is_rgb or np.ndim(o.data) != 3 or mri_w.ndim != 3:
        return None
    head = head_mask(mri_w, spacing, margin_mm=0.0)
    window = plan.other_window
    slope, inter = np.float32(o.slope), np.float32(o.inter)

    def to_windowed(v: np.ndarray) -> np.ndarray:
        return apply_window(np.asarray(v, np.float32) * slope + inter, window)

    return estimate_alignment(mri_w, head, coarse, o.data, o.affine, to_windowed)


def score_pair(plan: FusionPlan) -> RegistrationScore:
    """The registration score of a planned pair (see :mod:`medfuse.registration`),
    computed on a coarse copy of the MRI grid (at most SCORE_VOXELS voxels)."""
    from medfuse.colour import luminance

    stack = plan.mri_stack
    n, rows, cols = len(stack), *stack.plane_shape
    if n > 1:
        step = max(1, math.ceil((n * rows * cols / SCORE_VOXELS) ** (1 / 3)))
        k = step
    else:
        step = max(1, math.ceil((rows * cols / SCORE_VOXELS) ** 0.5))
        k = 1
    mri_w = apply_window(np.asarray(stack.data[::k, ::step, ::step], np.float32)
                         * np.float32(plan.mri.slope) + np.float32(plan.mri.inter),
                         plan.mri_window)
    coarse = stack.affine @ np.diag([k, step, step, 1.0])
    level = _other_level(plan)
    o = plan.other
    if plan.resampled:
        vals = resample_slab(o.data, o.affine, coarse, 0, mri_w.shape[0], mri_w.shape[1:3])
        vals = vals * np.float32(o.slope) + np.float32(o.inter)
        other_w = apply_window(vals, plan.other_window)
    elif plan.resize and plan.other_stack.plane_shape != plan.plane_shape:
        other_w = apply_window(plan.other_stack.values(0, 1), plan.other_window)
        other_w = np.stack([resize_to(v, plan.plane_shape) for v in other_w])
        other_w = other_w[:, ::step, ::step]
    else:
        other_w = apply_window(np.asarray(plan.other_stack.data[::k, ::step, ::step],
                                          np.float32) * np.float32(o.slope)
                               + np.float32(o.inter), plan.other_window)
    if other_w.ndim == 4:
        other_w = luminance(other_w)
    coloured = other_w > level
    if plan.two_d and plan.other.format == "image":
        # thin arcs and specks (a CT couch, burnt-in text) are no anatomy to place
        from scipy import ndimage

        cross = ndimage.generate_binary_structure(2, 1)[None]
        coloured = ndimage.binary_opening(coloured, cross, iterations=2)
    total = None
    if plan.resampled:
        # everything the other image colours, wherever it lies, in voxels of the coarse grid
        step_o = max(1, math.ceil((math.prod(o.shape) / 1_000_000) ** (1 / 3)))
        sample = np.asarray(o.data[::step_o, ::step_o, ::step_o], np.float32)
        sample = apply_window(sample * np.float32(o.slope) + np.float32(o.inter),
                              plan.other_window)
        count = float(((luminance(sample) if sample.ndim == 4 else sample) > level).sum())
        volume = abs(float(np.linalg.det(o.affine[:3, :3]))) * step_o ** 3
        total = count * volume / abs(float(np.linalg.det(coarse[:3, :3])))
    spacing = tuple(float(v) for v in voxel_sizes(coarse))
    score, detail = containment(mri_w, coloured, spacing, total)
    found = _alignment(plan, mri_w, coarse, spacing)
    if found is not None and score is not None:
        # the 3D score: how far the best rigid fit lies (medfuse.prepare.alignment); the
        # containment above stays in the detail, for the record
        return RegistrationScore(
            score=found.score, threshold=ALIGNMENT_WARN, method=ALIGNMENT_METHOD,
            detail=f"{found.describe()}; {detail}", plane_distance_mm=_plane_distance(plan),
            registered_by=_registered_by(plan), misalignment_mm=found.misalignment_mm)
    return RegistrationScore(score=score, detail=detail, plane_distance_mm=_plane_distance(plan),
                             registered_by=_registered_by(plan),
                             outline_distance=_outline_distance(plan, mri_w, other_w))


def _warn_score(plan: FusionPlan) -> None:
    m = plan.registration_score
    if m is None or not m.warned:
        return
    if m.far:
        assert m.plane_distance_mm is not None
        warnings.warn(
            f"the slices of {plan.mri.label} and {plan.other.label} lie "
            f"{m.plane_distance_mm:.0f} mm apart (more than {PLANE_DISTANCE_WARN_MM:g} mm): "
            "they show different anatomy",
            RegistrationWarning, stacklevel=3,
        )
    if m.low:
        assert m.score is not None
        if m.misalignment_mm is not None:
            warnings.warn(
                f"the pair does not look registered: {plan.other.label} fits {plan.mri.label} "
                f"best about {m.misalignment_mm:.0f} mm away from where the headers place it "
                f"(registration score {m.score:.2f}, below {m.threshold:g}); were they "
                "co-registered? (--register rigid registers them)",
                RegistrationWarning, stacklevel=3,
            )
        else:
            warnings.warn(
                f"the pair does not look registered: only {m.score:.0%} of the coloured part "
                f"of {plan.other.label} lies on the head in {plan.mri.label} (registration "
                f"score {m.score:.2f}, below {m.threshold:g}); were they co-registered? "
                "(--register rigid registers them)",
                RegistrationWarning, stacklevel=3,
            )
    if m.outlines_differ:
        assert m.outline_distance is not None
        warnings.warn(
            f"{plan.mri.label} and {plan.other.label} do not look like one head: their head "
            f"outlines lie {m.outline_distance:.2f} of the head's radius apart on average "
            f"(above {OUTLINE_WARN:g}); are they slices of one patient at one level?",
            RegistrationWarning, stacklevel=3,
        )


def check_plan_options(axis: str | None = None, modality: str | None = None,
                       colormap: str | None = None, gamut_map: str | None = None) -> None:
    """Check the values of ``--axis``, ``--modality``, ``--colormap`` and ``--gamut-map``
    whenever they are given, before any input is read: each is a usage error even where the
    pair would not use it (two 2D images are not sliced, a colour PET is not coloured)."""
    if gamut_map is not None:
        check_gamut_map(gamut_map)
    if axis is not None:
        check_axis(axis)
    if modality is not None:
        parse_modality(modality)
    if colormap is not None:
        check_colormap(colormap)


def plan_fusion(
    mri: Volume,
    other: Volume,
    axis: str | None = "axial",
    modality: str | None = None,
    colormap: str | None = None,
    mri_window: Window | None = None,
    other_window: Window | None = None,
    resize: bool = False,
    *,
    allow_non_mr: bool = False,
    floor: float | None = None,
    transparency: bool = True,
    register: str | None = None,
    gamut_map: str = DEFAULT_GAMUT_MAP,
) -> FusionPlan:
    """Check a pair and decide windows, floor, grid, modality and colour map, before any
    fusion.

    ``resize`` lets 2D pairs of different sizes through (the other plane is resampled onto
    the MRI's); volumes are always put on the MRI grid through their affines instead.
    ``floor`` overrides the transparency floor (in SUV for a PET in SUV, else scanner units),
    ``transparency=False`` colours every voxel; ``register`` = ``rigid`` or ``affine``
    registers the other volume onto the MRI first (SimpleITK). ``gamut_map``: how colours
    outside RGB come back (:func:`medfuse.prepare.pair.colourise`).
    """
    check_plan_options(axis, modality, colormap)
    gamut_map = check_gamut_map(gamut_map)
    check_first_input(mri, allow_non_mr)
    check_windows(mri, other, mri_window, other_window)
    original_mri = mri
    mri = _as_grey_mri(mri)
    if mri.is_2d != other.is_2d:
        flat, deep = (mri, other) if mri.is_2d else (other, mri)
        raise InputError(
            f"{flat.label} is a 2D image but {deep.label} is a 3D volume "
            f"({'x'.join(map(str, deep.shape))}); give --slice N to fuse one slice of it"
        )
    two_d = mri.is_2d
    method = (register or "none").strip().lower()
    if method not in ("none", "rigid", "affine"):
        raise UsageError(f"--register {register!r}: expected none, rigid or affine")
    if method != "none" and two_d:
        raise UsageError("--register works on volumes; these inputs are single slices")
    mod, mod_source, note = decide_modality(other, modality)
    check_distinct(original_mri, other)
    swapped = swap_warning(mri, other, mod, mod_source)
    notes = [n for n in (note, swapped) if n]
    for n in notes:
        warnings.warn(n, ModalityWarning, stacklevel=2)
    chosen_axis = mri.default_axis(axis)
    mw = choose_window(mri, mri_window, "mri")
    suv = decide_suv(other, mod)
    if suv is not None and suv.implausible is not None and other_window is None:
        # SUV from an impossible header would colour every voxel at one end of the map
        raise InputError(f"{other.label}: {suv.implausible}; SUV cannot be computed: "
                         f"{SUV_FALLBACK}")
    ow = choose_other_window(other, other_window, mod, suv)
    floor_value, floor_source = decide_floor(other, mod, ow, suv, floor, transparency)
    warn_floor_unused(other, floor is not None or not transparency, _grey_functional(other, mod))
    cmap = resolve_colormap(mod, colormap) if not other.is_rgb else None
    if other.is_rgb:
        cmap_source = "colour input: used as it is"
    elif colormap is not None:
        cmap_source = "--colormap"
    else:
        cmap_source = f"{mod} default" if cmap else f"{mod}: never coloured"
    registration = None
    if method != "none":
        from medfuse.registration import register as run_registration

        registration = run_registration(mri, other, method)
        other = dataclasses.replace(
            other, affine=np.linalg.inv(registration.matrix_ras) @ np.asarray(other.affine))
    warn, info, checks = identity_checks(mri, other, registration is not None)
    for w in warn:
        warnings.warn(w, RegistrationWarning, stacklevel=2)
    mri_stack = mri.stack(chosen_axis)
    if two_d:
        other_axis = other.default_axis(chosen_axis)
        other_stack = other.stack(other_axis)
        resampled = False
        if other_stack.plane_shape != mri_stack.plane_shape and not resize:
            raise size_mismatch(mri_stack.plane_shape, other_stack.plane_shape, mri.label,
                                other.label)
    else:
        resampled = check_grids(mri, other)
        other_stack = mri_stack if resampled else other.stack(chosen_axis)
    for vol, stack in ((mri, mri_stack), (other, other_stack)):
        if min(stack.plane_shape) < MIN_SIDE:
            hint = " (try another --axis)" if not two_d else ""
            raise InputError(
                f"{vol.label}: {chosen_axis if not two_d else 'the'} slices are "
                f"{stack.plane_shape[1]}x{stack.plane_shape[0]} pixels; medfuse needs "
                f"{MIN_SIDE}x{MIN_SIDE} or more{hint}"
            )
    plan = FusionPlan(
        mri=mri, other=other, axis=chosen_axis, mri_stack=mri_stack, other_stack=other_stack,
        mri_window=mw, other_window=ow, modality=mod, colormap=cmap, resampled=resampled,
        two_d=two_d, notes=notes, resize=resize and two_d, floor=floor_value,
        floor_source=floor_source, suv=suv, modality_source=mod_source,
        colormap_source=cmap_source, registration=registration, info=info, checks=checks,
        gamut_map=gamut_map,
    )
    plan.registration_score = score_pair(plan)
    if registration is not None:
        registration.score_before = _score_before(plan, registration)
    _warn_score(plan)
    return plan


def _score_before(plan: FusionPlan, registration: RegistrationResult) -> float | None:
    """The score the pair had before registration (the other's original affine)."""
    original = dataclasses.replace(
        plan.other, affine=registration.matrix_ras @ np.asarray(plan.other.affine))
    try:
        resampled = check_grids(plan.mri, original)
    except InputError:
        return 0.0
    before = dataclasses.replace(plan, other=original, resampled=resampled,
                                 other_stack=plan.mri_stack if resampled
                                 else original.stack(plan.axis))
    return score_pair(before).score


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
    "FOREGROUND_LEVEL",
    "FusionPlan",
    "ModalityWarning",
    "RegistrationWarning",
    "check_first_input",
    "check_grids",
    "check_plan_options",
    "choose_other_window",
    "choose_window",
    "decide_floor",
    "decide_modality",
    "decide_suv",
    "guess_modality",
    "identity_checks",
    "parse_slices",
    "plan_fusion",
    "score_pair",
    "take_slice",
]
