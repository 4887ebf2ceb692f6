"""Shared plumbing for the fusion metrics: profiles, input checks, grey conversion, filters.

Everything here is pure NumPy/SciPy so that scoring never needs torch. Two conventions meet in
this package (see ``docs/metrics.md``):

* ``standard``: images are float64 on the 0..255 scale and every formula is the published one.
* ``toolbox2022``: images are uint8 and every step mimics what the 2022 MATLAB toolbox does
  with them, including MATLAB's rounding (half away from zero) and saturation on uint8.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from medfuse.errors import InputError

Profile = Literal["standard", "toolbox2022"]
PROFILES: tuple[str, ...] = ("standard", "toolbox2022")
DEFAULT_PROFILE: Profile = "standard"

# MATLAB rgb2gray weights (the rows of inv of the NTSC matrix), as METRICS.md gives them.
MATLAB_GREY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)
# BT.601 luma weights, the ones the rest of medfuse uses for Y (see medfuse.colour).
BT601_GREY_WEIGHTS = (0.299, 0.587, 0.114)

FloatImage = NDArray[np.float64]


class MetricsInputError(InputError, ValueError):
    """An image cannot be scored: wrong rank, mismatched shapes, non-finite values.

    It is an :class:`~medfuse.errors.InputError` so the CLI reports it like any other bad
    input, and a :class:`ValueError` so plain NumPy-style callers can catch it too.
    """


def check_profile(profile: str) -> Profile:
    """Return ``profile`` if known; raise otherwise (a typo must not silently score wrong)."""
    if profile not in PROFILES:
        raise MetricsInputError(f"unknown metrics profile {profile!r}; expected one of {PROFILES}")
    return profile  # type: ignore[return-value]


def round_half_away(x: NDArray[np.floating]) -> NDArray[np.float64]:
    """Round half away from zero, as MATLAB's ``round`` and integer casts do.

    NumPy's ``rint`` rounds half to even, which differs on exact .5 values; for uint8
    emulation the MATLAB rule is the one that matters.
    """
    x = np.asarray(x, dtype=np.float64)
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def matlab_uint8(x: ArrayLike) -> NDArray[np.uint8]:
    """Convert like MATLAB ``uint8(x)``: round half away from zero, saturate to 0..255."""
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        return arr
    return np.clip(round_half_away(arr), 0, 255).astype(np.uint8)


def _as_real_array(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise MetricsInputError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise MetricsInputError(f"{name}: empty image")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise MetricsInputError(f"{name}: contains NaN or infinite values")
    return arr


def to_grey(rgb: ArrayLike, profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """Luminance of an HxWx3 image on the 0..255 scale, per profile.

    * ``toolbox2022``: MATLAB ``rgb2gray`` on uint8, i.e. round half away from zero of
      0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B, saturated to uint8.
      Float input is first converted like ``uint8()`` (what saving it as PNG and reading it
      back would give the toolbox). Returns uint8.
    * ``standard``: BT.601 Y = 0.299 R + 0.587 G + 0.114 B in float64 without rounding, the
      same luma the fusion network sees, so the score is not perturbed by quantisation.

    A 2-D array is taken as already grey and only converted to the profile's dtype.
    """
    profile = check_profile(profile)
    arr = _as_real_array(rgb, "image")
    if arr.ndim == 2:
        return prepare(arr, profile, "image")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise MetricsInputError(f"expected HxW or HxWx3 image, got shape {arr.shape}")
    if profile == "toolbox2022":
        u8 = matlab_uint8(arr).astype(np.float64)
        wr, wg, wb = MATLAB_GREY_WEIGHTS
        return matlab_uint8(wr * u8[..., 0] + wg * u8[..., 1] + wb * u8[..., 2])
    f = arr.astype(np.float64)
    wr, wg, wb = BT601_GREY_WEIGHTS
    return wr * f[..., 0] + wg * f[..., 1] + wb * f[..., 2]


def prepare(x: ArrayLike, profile: Profile, name: str = "image") -> np.ndarray:
    """Validate one grey image and convert it to the profile's working type.

    ``toolbox2022`` works on uint8 (the toolbox reads 8-bit PNGs), so float input is rounded
    like MATLAB's ``uint8()``. ``standard`` works on float64 with values left as given.
    """
    arr = _as_real_array(x, name)
    if arr.ndim != 2:
        raise MetricsInputError(
            f"{name}: expected a 2-D grey image, got shape {arr.shape} "
            "(use to_grey / compute_metrics_colour for RGB)"
        )
    if profile == "toolbox2022":
        return matlab_uint8(arr)
    return arr.astype(np.float64, copy=False)


def check_same_shape(**images: np.ndarray) -> None:
    """Fusion metrics compare pixel by pixel: all images must share one shape."""
    shapes = {name: img.shape for name, img in images.items()}
    if len(set(shapes.values())) > 1:
        detail = ", ".join(f"{n}={s}" for n, s in shapes.items())
        raise MetricsInputError(f"images must have the same shape, got {detail}")


def grey_levels(x: np.ndarray) -> NDArray[np.intp]:
    """Integer grey level 0..255 of each pixel, for the 256-bin histograms of EN and MI.

    uint8 input is used as is; float input is rounded to the nearest level and clipped, so a
    float image with integer values gets exactly the histogram of its uint8 twin.
    """
    if x.dtype == np.uint8:
        return x.astype(np.intp)
    return np.clip(round_half_away(x), 0, 255).astype(np.intp)


def gaussian_1d(size: int, sigma: float) -> FloatImage:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)`` (normalised to sum 1).

    fspecial's 2-D window is the outer product of this vector with itself; its
    ``eps * max`` cut-off never triggers for the sizes used here (smallest corner/centre
    ratio is about 1e-5), so separable filtering reproduces it exactly.
    """
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def filter_valid(img: np.ndarray, g: FloatImage) -> FloatImage:
    """``filter2(outer(g, g), img, 'valid')``: separable correlation, valid region only.

    Returns an empty array when the window does not fit, as MATLAB does.
    """
    n = g.size
    h, w = img.shape
    if h < n or w < n:
        return np.zeros((max(h - n + 1, 0), max(w - n + 1, 0)))
    r = n // 2
    out = ndimage.correlate1d(np.asarray(img, dtype=np.float64), g, axis=0, mode="constant")
    out = ndimage.correlate1d(out[r : h - r], g, axis=1, mode="constant")
    return out[:, r : w - r]


def box_sum_valid(img: np.ndarray, n: int) -> np.ndarray:
    """Sum over every n x n window (valid region) via an integral image.

    Integer-valued input is summed in int64, so the window sums (and the centred moments
    built from them) are exact: flat patches then have exactly zero variance, as in a
    direct per-patch computation. Other input is summed in float64.
    """
    exact = img.dtype.kind in "ui" or bool(np.all(img == np.floor(img)))
    work = img.astype(np.int64 if exact else np.float64)
    h, w = work.shape
    c = np.zeros((h + 1, w + 1), dtype=work.dtype)
    np.cumsum(np.cumsum(work, axis=0), axis=1, out=c[1:, 1:])
    return c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n]


def safe_ratio(num: float, den: float) -> float:
    """num/den as a Python float, NaN where the denominator is zero (metric undefined)."""
    if den == 0 or not np.isfinite(den):
        return float("nan")
    return float(num / den)
