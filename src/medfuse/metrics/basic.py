"""Metrics of the fused image alone (EN, SD, SF, AG) and the correlation metric SCD.

These need no windows; the two profiles differ only in arithmetic and scale, which is
exactly where published numbers diverge from the textbook definitions (SD near 10).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._common import (
    DEFAULT_PROFILE,
    check_profile,
    check_same_shape,
    grey_levels,
    prepare,
    round_half_away,
)


def _entropy_of_counts(counts: np.ndarray) -> float:
    """Shannon entropy in bits of a histogram given as counts (zero bins contribute 0)."""
    total = counts.sum()
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def _en(f: np.ndarray) -> float:
    counts = np.bincount(grey_levels(f).ravel(), minlength=256)
    return _entropy_of_counts(counts)


def en(f: ArrayLike, profile: str = DEFAULT_PROFILE) -> float:
    """EN, Shannon entropy (bits) of F's 256-bin grey-level histogram (Roberts et al. 2008).

    Same in both profiles (MATLAB ``entropy`` on uint8). Float input is rounded to integer
    levels first, because the 256-bin histogram is the definition used in every table.
    """
    p = check_profile(profile)
    return _en(prepare(f, p, "F"))


def _sd_toolbox(f: np.ndarray) -> float:
    # uint8 - double -> uint8 in MATLAB: negative deviations saturate to 0 and are rounded;
    # .^2 on uint8 saturates at 255. The sum itself is taken in double.
    u = f.astype(np.float64).mean()
    d = np.clip(round_half_away(f.astype(np.float64) - u), 0, 255)
    d2 = np.minimum(d * d, 255.0)
    return float(np.sqrt(d2.sum() / f.size))


def _sd_standard(f: np.ndarray) -> float:
    return float(f.std())


def sd(f: ArrayLike, profile: str = DEFAULT_PROFILE) -> float:
    """SD, standard deviation of F (contrast).

    ``standard``: population SD sqrt(mean((F - mean F)^2)) on float 0..255.
    ``toolbox2022``: the toolbox's expression evaluated in MATLAB uint8 arithmetic: pixels
    darker than the mean contribute 0 and squares cap at 255, so values land near 10 where
    the true SD of a brain slice is 40-80. Kept only to stand next to published tables.
    """
    p = check_profile(profile)
    img = prepare(f, p, "F")
    return _sd_toolbox(img) if p == "toolbox2022" else _sd_standard(img)


def _sf(f: np.ndarray, scale: float) -> float:
    x = f.astype(np.float64) / scale
    h, w = x.shape
    rf = float(np.mean(np.square(np.diff(x, axis=1)))) if w > 1 else 0.0
    cf = float(np.mean(np.square(np.diff(x, axis=0)))) if h > 1 else 0.0
    return float(np.sqrt(rf + cf))


def sf(f: ArrayLike, profile: str = DEFAULT_PROFILE) -> float:
    """SF, spatial frequency (Eskicioglu & Fisher 1995): sqrt(RF^2 + CF^2).

    RF^2 and CF^2 are the mean squared differences between horizontal and vertical
    neighbours (mean over the differences that exist). ``standard`` works on 0..255 grey
    levels; ``toolbox2022`` on F/255 (the toolbox calls im2double first), so its values are
    the standard ones divided by 255.
    """
    p = check_profile(profile)
    img = prepare(f, p, "F")
    return _sf(img, 255.0 if p == "toolbox2022" else 1.0)


def _ag_toolbox(f: np.ndarray) -> float:
    x = f.astype(np.float64)
    h, w = x.shape
    if h < 2 or w < 2:
        return float("nan")
    gy, gx = np.gradient(x)  # central differences inside, one-sided at borders, like MATLAB
    total = np.sqrt((gx * gx + gy * gy) / 2.0).sum()
    return float(total / ((h - 1) * (w - 1)))


def _ag_standard(f: np.ndarray) -> float:
    x = f.astype(np.float64)
    h, w = x.shape
    if h < 2 or w < 2:
        return float("nan")
    dx = x[:-1, 1:] - x[:-1, :-1]
    dy = x[1:, :-1] - x[:-1, :-1]
    return float(np.sqrt((dx * dx + dy * dy) / 2.0).mean())


def ag(f: ArrayLike, profile: str = DEFAULT_PROFILE) -> float:
    """AG, average gradient (Cui et al. 2015) on 0..255 grey levels.

    ``standard``: the textbook formula, forward differences over the (M-1)(N-1) pixels that
    have both neighbours: mean of sqrt((dx^2 + dy^2) / 2).
    ``toolbox2022``: MATLAB ``gradient`` (central differences, one-sided at the borders)
    over all M*N pixels, summed and divided by (M-1)(N-1), as the toolbox does.
    NaN for images with fewer than 2 rows or columns (no gradient exists).
    """
    p = check_profile(profile)
    img = prepare(f, p, "F")
    return _ag_toolbox(img) if p == "toolbox2022" else _ag_standard(img)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation (MATLAB corr2); NaN when either image is constant.

    A constant image has no variance, so the correlation is 0/0: undefined, not 0.
    """
    xc = x - x.mean()
    yc = y - y.mean()
    den = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    if den == 0 or not np.isfinite(den):
        return float("nan")
    return float((xc * yc).sum() / den)


def _scd(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    a64, b64, f64 = (x.astype(np.float64) for x in (a, b, f))
    return _corr(f64 - b64, a64) + _corr(f64 - a64, b64)


def scd(a: ArrayLike, b: ArrayLike, f: ArrayLike, profile: str = DEFAULT_PROFILE) -> float:
    """SCD, sum of the correlations of differences (Aslantas & Bendes 2015).

    SCD = corr(F - B, A) + corr(F - A, B): F - B is what F took from A, and it should
    correlate with A. Differences are taken in floating point in both profiles.
    NaN when a correlation is undefined (A, B, F - A or F - B constant), e.g. F = A makes
    F - A identically zero.
    """
    p = check_profile(profile)
    ai, bi, fi = prepare(a, p, "A"), prepare(b, p, "B"), prepare(f, p, "F")
    check_same_shape(A=ai, B=bi, F=fi)
    return _scd(ai, bi, fi)
