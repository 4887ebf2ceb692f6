"""Intensity windowing: scanner units (HU, MR signal, Bq/ml, counts) to [0, 1] before fusion.

GeSeNet was trained on 8-bit atlas slices in [0, 1]; a 12-16-bit volume has to be mapped into
that range first, once per volume (never per slice, so neighbouring slices stay comparable).

Order of precedence, per input:

1. an explicit window (``--window C,W`` or a preset name);
2. the window stored in the DICOM header (Window Center / Window Width, first value);
3. a default by modality:
   * CT: the ``brain`` preset (centre 40 HU, width 80 HU), as the Harvard atlas CT slices
     the network learnt from look;
   * MRI and anything unknown: the 0.5th to 99.5th percentile of the finite voxels;
   * PET/SPECT: from the lowest finite voxel (usually 0) to the 99.9th percentile, so a few
     hot voxels do not compress all other activity into the dark end.

Percentiles are taken over at most about a million voxels sampled on a regular lattice, so
a 512x512x300 volume is never copied whole. NaN and infinite voxels are ignored when
choosing the window and become 0 (background) after it: they are never propagated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medfuse.errors import InputError, UsageError

#: CT presets in Hounsfield units: name -> (centre, width).
PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "soft-tissue": (50.0, 400.0),
    "bone": (400.0, 1800.0),
}
#: Percentile pairs used when no window is given or stored, by modality.
PERCENTILES: dict[str, tuple[float | None, float]] = {
    "mri": (0.5, 99.5),
    "pet": (None, 99.9),  # None: the lowest finite value
    "spect": (None, 99.9),
}
#: Upper bound on the voxels examined to choose a percentile window.
SAMPLE_VOXELS = 1_000_000


@dataclass(frozen=True)
class Window:
    """A linear map ``[centre - width/2, centre + width/2] -> [0, 1]`` and how it was chosen."""

    centre: float
    width: float
    source: str = "explicit"

    @property
    def low(self) -> float:
        return self.centre - self.width / 2.0

    @property
    def high(self) -> float:
        return self.centre + self.width / 2.0

    @classmethod
    def from_range(cls, low: float, high: float, source: str) -> Window:
        return cls((low + high) / 2.0, high - low, source)

    def describe(self) -> str:
        return f"centre {self.centre:.6g}, width {self.width:.6g} ({self.source})"


def parse_window(spec: str | None, option: str = "--window") -> Window | None:
    """``"C,W"`` or a preset name (``brain``, ``bone``, ``soft-tissue``) -> Window."""
    if spec is None or not str(spec).strip():
        return None
    text = str(spec).strip().lower()
    if text in PRESETS:
        c, w = PRESETS[text]
        return Window(c, w, f"preset {text}")
    parts = text.replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        c, w = float(parts[0]), float(parts[1])
    except ValueError:
        raise UsageError(
            f"{option} {spec!r}: expected CENTRE,WIDTH (e.g. 40,80) or one of "
            f"{', '.join(PRESETS)}"
        ) from None
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0:
        raise UsageError(f"{option} {spec!r}: the width must be a positive number")
    return Window(c, w, "explicit")


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
        high = low + 1.0
    lo_name = "min" if low_pct is None else f"p{low_pct:g}"
    return Window.from_range(low, high, f"{source} {lo_name}-p{high_pct:g}")


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
    low, high = PERCENTILES.get(modality or "mri", PERCENTILES["mri"])
    return percentile_window(data, low, high, slope, inter)


def apply_window(values: np.ndarray, window: Window, out: np.ndarray | None = None) -> np.ndarray:
    """Map scanner units to float32 [0, 1] through ``window``; NaN/inf become 0 (background)."""
    arr = np.asarray(values, dtype=np.float32)
    res = np.subtract(arr, np.float32(window.low), out=out, dtype=np.float32)
    res *= np.float32(1.0 / window.width)
    np.clip(res, 0.0, 1.0, out=res)
    # clip keeps NaN; +inf became 1 and -inf 0 above, so reset every non-finite input to 0.
    res[~np.isfinite(arr)] = 0.0
    return res


__all__ = [
    "PERCENTILES",
    "PRESETS",
    "Window",
    "apply_window",
    "default_window",
    "parse_window",
    "percentile_window",
    "sample_lattice",
]
