"""Intensity windowing: scanner units (HU, MR signal, Bq/ml, counts) to [0, 1] before fusion.

GeSeNet was trained on 8-bit atlas slices in [0, 1]; a 12-16-bit volume has to be mapped into
that range first, once per volume (never per slice, so neighbouring slices stay comparable).

Order of precedence, per input:

1. an explicit window (``--window C,W`` or a preset name; for a PET in SUV, C and W are SUV);
2. for a PET whose DICOM states what SUV needs: the fixed SUV window (:data:`SUV_WINDOW`,
   SUV 0 to 12), so one colour means one uptake in every patient;
3. the window stored in the DICOM header (Window Center / Width, first value);
4. a default by modality:
   * CT: the ``brain`` preset (centre 40 HU, width 80 HU), as the Harvard atlas CT slices
     the network learnt from look;
   * MRI and anything unknown: the 0.5th to 99.5th percentile of the finite voxels;
   * PET/SPECT without SUV: 0 to a multiple of the *grey-matter level* (:func:`brain_window`),
     never a top percentile of all voxels: in a head PET the top 0.1% of voxels *is* the
     cortex, so ``min..p99.9`` put normal grey matter at the very top of the colour map.

Below the window sits the *transparency floor* (:func:`default_floor`): other-image values
at or below it are not coloured at all, the fused pixel shows the MRI there.

Percentiles are taken over at most about a million voxels sampled on a regular lattice, so
a 512x512x300 volume is never copied whole. NaN and infinite voxels are ignored when
choosing the window and become 0 (background) after it: they are never propagated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medfuse.errors import InputError, UsageError
from medfuse.io.volume import Window

if TYPE_CHECKING:
    from medfuse.io.volume import SuvFacts

#: CT presets in Hounsfield units: name -> (centre, width).
PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "soft-tissue": (50.0, 400.0),
    "bone": (400.0, 1800.0),
}
#: Percentile pairs used when no window is given or stored, by modality (the MRI rule;
#: PET and SPECT use :func:`brain_window`, and fall back to these only for images without
#: anything brain-like in them).
PERCENTILES: dict[str, tuple[float | None, float]] = {
    "mri": (0.5, 99.5),
    "pet": (None, 99.9),  # None: the lowest finite value
    "spect": (None, 99.9),
}
#: The fixed window of a PET in SUV (body weight): SUV 0 to 12. Normal grey matter
#: (SUV 6-10, mean about 7.5 at 60 min FDG) sits at 0.5-0.8 of the colour map, white matter
#: (2-3) in its lower fifth, and hot lesions (8-15) reach the top; fixed, so one colour means
#: one uptake in every patient.
SUV_WINDOW = (0.0, 12.0)
#: Voxels above this fraction of the 99.5th percentile are "brain" for the grey-matter level.
BRAIN_FRACTION = 0.3
#: Percentile of the brain voxels taken as the grey-matter level G.
GM_PERCENTILE = 90.0
#: Window top as a multiple of G, by modality. PET 1.6: the cortex mean lands at about 0.55
#: of the colour map, like SUV 7.5 in the SUV window, and lesions up to 1.6x cortex remain
#: distinguishable. SPECT 1.25: perfusion is read *relative* to normal cortex, so the cortex
#: sits high (about 0.75) and a defect at 20-40% of cortex falls to 0.15-0.3, far apart.
GM_MULTIPLE = {"pet": 1.6, "spect": 1.25}
#: Default transparency floor, as a fraction of the window above its low end: SUV 1.5 in the
#: SUV window (air, CSF 0.2-0.5, skull 0.5 and most scalp stay uncoloured, white matter at 2-3
#: is coloured); about 20% of cortex for PET and 16% for SPECT without SUV (CSF at 10% of
#: cortex is uncoloured, a perfusion defect at 20-40% still shows).
FLOOR_FRACTION = 0.125
#: Upper bound on the voxels examined to choose a percentile window.
SAMPLE_VOXELS = 1_000_000
#: Largest centre or width of a window given on the command line: the float32 range the
#: images are held in (a window beyond it windows nothing a reader can produce).
WINDOW_LIMIT = float(np.finfo(np.float32).max)
#: Smallest width of a window given on the command line.
MIN_WIDTH = 1e-30
#: A window computed from a flat image is this much of its level wide (at least 1.0), so
#: that ``low + width > low`` holds even at +-3e38, where adding 1.0 changes nothing.
FLAT_WIDTH = 1e-6


def parse_window(spec: str | None, option: str = "--window") -> Window | None:
    """``"C,W"``, a range ``"LOW:HIGH"`` or a preset name (``brain``, ``bone``,
    ``soft-tissue``) -> Window. The range form exists because ``0,12`` reads naturally as
    "0 to 12" but means centre 0, width 12 (-6 to 6)."""
    if spec is None or not str(spec).strip():
        return None
    text = str(spec).strip().lower()
    if text in PRESETS:
        c, w = PRESETS[text]
        return Window(c, w, f"preset {text}")
    ranged = ":" in text
    parts = text.replace(" ", "").split(":" if ranged else ",")
    try:
        if len(parts) != 2:
            raise ValueError
        a, b = float(parts[0]), float(parts[1])
    except ValueError:
        raise UsageError(
            f"{option} {spec!r}: expected CENTRE,WIDTH (e.g. 40,80), LOW:HIGH (e.g. 0:12) "
            f"or one of {', '.join(PRESETS)}"
        ) from None
    if ranged:
        if not (math.isfinite(a) and math.isfinite(b)) or b <= a:
            raise UsageError(f"{option} {spec!r}: LOW:HIGH needs HIGH above LOW")
        c, w = (a + b) / 2.0, b - a
    else:
        c, w = a, b
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0:
        raise UsageError(f"{option} {spec!r}: the width must be a positive number")
    if abs(c) > WINDOW_LIMIT or w > WINDOW_LIMIT or w < MIN_WIDTH:
        raise UsageError(f"{option} {spec!r}: the centre and width must lie within "
                         f"+-{WINDOW_LIMIT:.4g} (float32) and the width be at least "
                         f"{MIN_WIDTH:g}")
    return Window(c, w, "explicit range" if ranged else "explicit")


def sample_lattice(data: np.ndarray, limit: int = SAMPLE_VOXELS) -> np.ndarray:
    """A regular sub-lattice of ``data`` with at most about ``limit`` elements (a small copy)."""
    total = int(np.prod(data.shape[:3])) if data.ndim >= 3 else int(data.size)
    spatial = min(data.ndim, 3)
    step = max(1, math.ceil((total / limit) ** (1.0 / spatial))) if total > limit else 1
    index = tuple(slice(None, None, step) for _ in range(spatial))
    return np.asarray(data[index])


def percentile_window(
    data: np.ndarray,
    low_pct: float | None,
    high_pct: float,
    slope: float = 1.0,
    inter: float = 0.0,
    source: str = "percentiles",
) -> Window:
    """Window from robust percentiles of the finite voxels (after ``slope``/``inter``)."""
    sample = sample_lattice(data).astype(np.float64) * slope + inter
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise InputError("holds no finite voxels (all NaN or infinite)")
    low = float(sample.min()) if low_pct is None else float(np.percentile(sample, low_pct))
    high = float(np.percentile(sample, high_pct))
    if high <= low:  # flat or nearly flat image: fall back to the full range
        low, high = float(sample.min()), float(sample.max())
    if high <= low:
        high = low + max(1.0, abs(low) * FLAT_WIDTH)
    lo_name = "min" if low_pct is None else f"p{low_pct:g}"
    return Window.from_range(low, high, f"{source} {lo_name}-p{high_pct:g}")


def brain_window(
    data: np.ndarray,
    modality: str,
    slope: float = 1.0,
    inter: float = 0.0,
) -> Window:
    """0 to ``GM_MULTIPLE[modality]`` times the grey-matter level of a PET/SPECT volume
    without SUV.

    The grey-matter level G is the 90th percentile of the "brain" voxels, those above
    ``BRAIN_FRACTION`` (30%) of the 99.5th percentile of all finite voxels: air, CSF and
    skull fall below, white matter and cortex above, and the 90th percentile of that set is
    typical cortex whatever share of the field of view the head fills. A percentile of *all*
    voxels depends on that share and, in a head, lands on the cortex itself. Volumes with
    nothing positive fall back to the lowest value to the 99.9th percentile.
    """
    sample = sample_lattice(data).astype(np.float64) * slope + inter
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise InputError("holds no finite voxels (all NaN or infinite)")
    top = float(np.percentile(sample, 99.5))
    brain = sample[sample > BRAIN_FRACTION * top] if top > 0 else sample[:0]
    if brain.size == 0:
        return percentile_window(data, None, 99.9, slope, inter)
    level = float(np.percentile(brain, GM_PERCENTILE))
    multiple = GM_MULTIPLE.get(modality, GM_MULTIPLE["pet"])
    high = multiple * level
    # Activity starts at 0: negative values are reconstruction noise around empty space.
    return Window.from_range(0.0, high, f"{modality.upper()} default: 0 to {multiple:g} x "
                             f"grey-matter level {level:.4g}")


def default_window(
    data: np.ndarray,
    modality: str | None,
    slope: float = 1.0,
    inter: float = 0.0,
) -> Window:
    """The window used when none is given or stored (see the module docstring)."""
    if modality == "ct":
        c, w = PRESETS["brain"]
        return Window(c, w, "CT default: preset brain")
    if modality in GM_MULTIPLE:
        return brain_window(data, modality, slope, inter)
    low, high = PERCENTILES.get(modality or "mri", PERCENTILES["mri"])
    return percentile_window(data, low, high, slope, inter)


def default_floor(window: Window) -> float:
    """The transparency floor that goes with a window: ``FLOOR_FRACTION`` of the way up."""
    return window.low + FLOOR_FRACTION * window.width


def check_functional_window(window: Window | None, modality: str, label: str) -> None:
    """Refuse a CT preset for a PET or SPECT image: presets are Hounsfield units, which mean
    nothing for activity (``--window bone`` would put every PET voxel below the floor).

    Refuse too a PET or SPECT window whose transparency floor is below zero: activity is
    never negative, so nothing would be transparent and the air around the head would be
    painted with the colour map's low end. The usual cause is ``--window 0,12`` meant as
    "0 to 12" (it is centre 0, width 12: -6 to 6), so the message says both readings."""
    if window is None or modality not in GM_MULTIPLE:
        return
    if window.source.startswith("preset "):
        name = window.source.split(" ", 1)[1]
        raise UsageError(
            f"--window {name} is a CT preset (Hounsfield units) but {label} is "
            f"{modality.upper()}: give --window CENTRE,WIDTH in its own units "
            "(SUV when the PET states it), or leave the default"
        )
    if default_floor(window) < 0:
        given = (f"{window.low:g}:{window.high:g}" if window.source == "explicit range"
                 else f"{window.centre:g},{window.width:g}")
        hint = (f"; for {window.centre:g} to {window.width:g} give --window "
                f"{window.centre:g}:{window.width:g} (or {(window.centre + window.width) / 2:g},"
                f"{window.width - window.centre:g} as CENTRE,WIDTH)"
                if window.source == "explicit" and 0 <= window.centre < window.width else "")
        raise UsageError(
            f"--window {given} runs from {window.low:g} to {window.high:g}: below zero, which "
            f"{modality.upper()} activity never is, so nothing in {label} would be transparent "
            f"and the air would be coloured{hint}"
        )


@dataclass(frozen=True)
class SuvDecision:
    """Whether a PET is shown in SUV (body weight), the factor from Bq/ml to SUV, and why.

    ``factor`` is ``weight [g] / decay-corrected dose [Bq]``: SUV = value x factor. When SUV
    is not possible, ``factor`` is None and ``reason`` says what was missing."""

    factor: float | None
    reason: str
    facts: dict[str, Any] = field(default_factory=dict)
    decay: float | None = None  # 2^(-dt / T1/2) applied to the dose
    elapsed_s: float | None = None  # injection to the decay-correction reference time
    #: A header value SUV cannot be computed from (not finite, or outside what any PET
    #: study states), named: the plan refuses the PET unless ``--window`` is given.
    implausible: str | None = None

    @property
    def available(self) -> bool:
        return self.factor is not None

    def as_dict(self) -> dict[str, Any]:
        return {"available": self.available, "factor": self.factor, "reason": self.reason,
                "decay_factor": self.decay, "elapsed_s": self.elapsed_s, "facts": self.facts}


#: What SUV arithmetic accepts from a header (inclusive): a body weight in kg (a preterm
#: infant to the heaviest recorded patients), an injected activity in Bq (0.1 MBq to
#: 100 GBq), a half-life in seconds (Rb-82's 76 s to I-124's 4.2 days, with a margin), and
#: the decay of the dose between injection and scan (at most 20 half-lives).
SUV_LIMITS = {"PatientWeight": (0.2, 700.0), "RadionuclideTotalDose": (1e5, 1e11),
              "RadionuclideHalfLife": (20.0, 1e7)}
MIN_DECAY = 2.0 ** -20
SUV_FALLBACK = ("give --window CENTRE,WIDTH in the file's own units (Bq/ml) to fuse it "
                "without SUV")


def _implausible(name: str, value: float, unit: str) -> str | None:
    lo, hi = SUV_LIMITS[name]
    if not math.isfinite(value) or not lo <= value <= hi:
        return f"{name} {value:g} {unit} is not plausible ({lo:g} to {hi:g} {unit})"
    return None


def suv_factor(facts: SuvFacts | None) -> SuvDecision:
    """SUVbw = C [Bq/ml] x weight [g] / (dose [Bq] x 2^(-dt / T1/2)), dt from injection to the
    decay-correction reference (QIBA FDG-PET profile).

    DecayCorrection START: the reference is the series start (SeriesDate/Time), or the
    earliest slice acquisition when the series time is later than that (some scanners
    rewrite the series time on reprocessing); ADMIN: the images are already corrected to the
    injection, dt = 0. Units GML are SUV already (factor 1). Anything else (Units CNTS,
    DecayCorrection NONE, a missing weight, dose, half-life or time) gives no SUV.
    """
    if facts is None:
        return SuvDecision(None, "not a DICOM PET series (no Units, weight or dose)")
    record = facts.as_dict()
    if facts.units == "GML":
        return SuvDecision(1.0, "Units GML: the values are SUV (body weight) already", record)
    if facts.units != "BQML":
        return SuvDecision(None, f"Units {facts.units or 'not stated'} (SUV needs BQML)", record)
    missing = [name for name, v in (("PatientWeight", facts.weight_kg),
                                    ("RadionuclideTotalDose", facts.dose_bq),
                                    ("RadionuclideHalfLife", facts.half_life_s)) if v is None]
    if missing:
        return SuvDecision(None, f"{', '.join(missing)} missing or not positive", record)
    assert facts.weight_kg is not None and facts.dose_bq is not None
    assert facts.half_life_s is not None
    for name, value, unit in (("PatientWeight", facts.weight_kg, "kg"),
                              ("RadionuclideTotalDose", facts.dose_bq, "Bq"),
                              ("RadionuclideHalfLife", facts.half_life_s, "s")):
        problem = _implausible(name, value, unit)
        if problem is not None:
            return SuvDecision(None, problem, record, implausible=problem)
    mode = facts.decay_correction or "not stated"
    if mode == "ADMIN":
        return SuvDecision(facts.weight_kg * 1000.0 / facts.dose_bq,
                           "DecayCorrection ADMIN: dose taken as injected", record, 1.0, 0.0)
    if mode != "START":
        return SuvDecision(None, f"DecayCorrection {mode} (SUV needs START or ADMIN)", record)
    if facts.injection is None:
        return SuvDecision(None, "no RadiopharmaceuticalStartTime", record)
    reference = facts.series_time
    source = "series time"
    if reference is None or (facts.acquisition_time is not None
                             and reference > facts.acquisition_time):
        reference, source = facts.acquisition_time, "earliest acquisition time"
    if reference is None:
        return SuvDecision(None, "no SeriesTime or AcquisitionTime", record)
    elapsed = (reference - facts.injection).total_seconds()
    if elapsed < 0 or elapsed > 24 * 3600:
        return SuvDecision(None, f"injection to scan time is {elapsed / 60:.0f} min "
                           "(not between 0 and 24 h; check the times)", record)
    decay = 2.0 ** (-elapsed / facts.half_life_s)
    if decay < MIN_DECAY:
        problem = (f"RadionuclideHalfLife {facts.half_life_s:g} s is not plausible for a scan "
                   f"{elapsed / 60:.0f} min after injection (the dose would have decayed "
                   f"{elapsed / facts.half_life_s:.0f} half-lives)")
        return SuvDecision(None, problem, record, implausible=problem)
    factor = facts.weight_kg * 1000.0 / (facts.dose_bq * decay)
    if not math.isfinite(factor) or factor <= 0:
        problem = f"PatientWeight and RadionuclideTotalDose give no finite SUV factor ({factor:g})"
        return SuvDecision(None, problem, record, implausible=problem)
    return SuvDecision(factor, f"DecayCorrection START to the {source}, "
                       f"{elapsed / 60:.1f} min after injection", record, decay, elapsed)


def suv_window(factor: float) -> Window:
    """:data:`SUV_WINDOW` in the volume's own units (Bq/ml), so no voxel is rescaled."""
    lo, hi = SUV_WINDOW
    return Window.from_range(lo / factor, hi / factor, f"PET default: SUV {lo:g} to {hi:g}")


def window_in_suv(window: Window, factor: float) -> Window:
    """An explicit window given in SUV, in the volume's Bq/ml."""
    return Window(window.centre / factor, window.width / factor, f"{window.source}, in SUV")


#: Elements windowed per step in float64 (windows beyond float32 arithmetic), so the
#: float64 copy stays small whatever the volume.
_CHUNK = 1 << 20


def apply_window(values: np.ndarray, window: Window, out: np.ndarray | None = None) -> np.ndarray:
    """Map scanner units to float32 [0, 1] through ``window``; NaN/inf become 0 (background).

    Ordinary windows are applied in float32; a window whose low end or width float32
    arithmetic cannot hold (data spanning +-3e38, denormal data with a denormal width) is
    applied in float64, a chunk at a time. Either way no numpy warning is raised and every
    finite value gives a finite pixel."""
    if window.curve is not None:
        mapped = window.curve(values)
        if out is None:
            return mapped
        out[...] = mapped
        return out
    low, width = float(window.low), float(window.width)
    if not (math.isfinite(low) and math.isfinite(width) and width > 0):
        raise InputError(f"cannot apply the window {window.describe()}: it is not a finite "
                         "range of positive width")
    arr = np.asarray(values, dtype=np.float32)
    bad = ~np.isfinite(arr)  # before ``out``, which may be ``values`` itself, is written
    res = np.empty(arr.shape, np.float32) if out is None else out
    with np.errstate(all="ignore"):  # +-inf inputs, and overflows that clip to 0 or 1
        if abs(low) <= 1e30 and 1e-30 <= width <= 1e30:
            # (value - low) may overflow to +-inf for data near +-3e38: clipped below.
            np.subtract(arr, np.float32(low), out=res, dtype=np.float32)
            res *= np.float32(1.0 / width)
            np.clip(res, 0.0, 1.0, out=res)
        else:
            flat = res if res.flags.c_contiguous else np.empty(res.shape, np.float32)
            src, dst = arr.reshape(-1), flat.reshape(-1)  # dst: a view, written in place
            for start in range(0, src.size, _CHUNK):
                part = src[start : start + _CHUNK].astype(np.float64)
                part -= low
                part /= width
                np.clip(part, 0.0, 1.0, out=part)
                dst[start : start + _CHUNK] = part
            if flat is not res:
                res[...] = flat
    # clip keeps NaN, +inf became 1 and -inf 0 above: every non-finite input is background.
    res[bad] = 0.0
    return res


__all__ = [
    "FLOOR_FRACTION",
    "GM_MULTIPLE",
    "PERCENTILES",
    "PRESETS",
    "SUV_FALLBACK",
    "SUV_LIMITS",
    "SUV_WINDOW",
    "SuvDecision",
    "Window",
    "apply_window",
    "brain_window",
    "check_functional_window",
    "default_floor",
    "default_window",
    "parse_window",
    "percentile_window",
    "sample_lattice",
    "suv_factor",
    "suv_window",
    "window_in_suv",
]
