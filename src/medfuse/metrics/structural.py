"""SSIM for fusion: Wang et al. 2004 (standard) and MEF-SSIM of Ma et al. 2015 (toolbox2022).

Both are computed with whole-image separable filters and integral images instead of a loop
over patches: every per-patch statistic is a linear combination of windowed moments.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._common import (
    DEFAULT_PROFILE,
    box_sum_valid,
    check_profile,
    check_same_shape,
    filter_valid,
    gaussian_1d,
    prepare,
)

_WIN = 11
_SIGMA = 1.5
_L = 255.0


def ssim_wang(x: np.ndarray, y: np.ndarray, data_range: float = _L) -> float:
    """Mean SSIM of Wang, Bovik, Sheikh & Simoncelli (2004) over the valid region.

    11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population (1/N) moments, as in
    the authors' ``ssim_index.m``. NaN if the image is smaller than the window.
    """
    g = gaussian_1d(_WIN, _SIGMA)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mx, my = filter_valid(x, g), filter_valid(y, g)
    if mx.size == 0:
        return float("nan")
    sxx = filter_valid(x * x, g) - mx * mx
    syy = filter_valid(y * y, g) - my * my
    sxy = filter_valid(x * y, g) - mx * my
    num = (2.0 * mx * my + c1) * (2.0 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def mef_ssim(a: np.ndarray, b: np.ndarray, f: np.ndarray, k: float = 0.03) -> float:
    """MEF-SSIM (Ma, Zeng & Wang 2015) of F against the two-image sequence {A, B}.

    Per 11x11 patch (valid region), each source patch x_k is split into signal strength
    c_k = ||x_k - mean|| (+0.001, plain patch mean) and structure. A reference patch is
    built with the strongest contrast max c_k and the structure
    sum_k w_k (x_k - mean_k) / c_k, weights w_k = (c_k/11)^p normalised, where
    p = tan(pi/2 R) (capped at 10) grows with the consistency
    R = ||sum_k (x_k - mean_k)|| / sum_k ||x_k - mean_k||. Its similarity to F's patch is
    the SSIM structure/contrast term (2 s_rf + C) / (s_r^2 + s_f^2 + C) with Gaussian
    (sigma 1.5) weighted moments and C = (0.03 * 255)^2; the score is the mean over patches.

    The reference patch is only ever used through its Gaussian-weighted moments, which are
    linear in the windowed moments of A, B, A*A, A*B, B*B, A*F and B*F; those are computed
    with whole-image filters, so no loop over patches is needed.
    """
    n = _WIN * _WIN
    srcs = [np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)]
    fi = np.asarray(f, dtype=np.float64)
    if fi.shape[0] < _WIN or fi.shape[1] < _WIN:
        return float("nan")
    g = gaussian_1d(_WIN, _SIGMA)
    c = (k * _L) ** 2
    eps = np.finfo(np.float64).eps

    # Plain (box) patch means and centred second moments; exact for integer images.
    sums = [box_sum_valid(x, _WIN) for x in srcs]
    cen = {}
    for i in range(2):
        for j in range(i, 2):
            raw = box_sum_valid(srcs[i] * srcs[j], _WIN)
            if raw.dtype.kind == "i":
                cen[i, j] = (n * raw - sums[i] * sums[j]) / n
            else:
                cen[i, j] = raw - sums[i] * sums[j] / n
    cen[1, 0] = cen[0, 1]
    norms = [np.sqrt(np.maximum(cen[i, i], 0.0)) for i in range(2)]
    ed = [nrm + 0.001 for nrm in norms]

    # Consistency R and the structure weights.
    num_r = np.sqrt(np.maximum(cen[0, 0] + cen[1, 1] + 2.0 * cen[0, 1], 0.0))
    r = (num_r + eps) / (norms[0] + norms[1] + eps)
    r = np.where(r > 1.0, 1.0 - eps, r)
    r = np.where(r < 0.0, eps, r)
    with np.errstate(over="ignore"):
        p = np.minimum(np.tan(np.pi / 2.0 * r), 10.0)
    w = [(e / _WIN) ** p + eps for e in ed]
    wsum = w[0] + w[1]
    coef = [w[i] / wsum / ed[i] for i in range(2)]  # reference = sum_k coef_k (x_k - mu_k)

    # Norm of the unscaled reference patch, then the scale giving it contrast max(ed).
    rnorm2 = sum(coef[i] * coef[j] * cen[i, j] for i in range(2) for j in range(2))
    rnorm = np.sqrt(np.maximum(rnorm2, 0.0))
    max_ed = np.maximum(ed[0], ed[1])
    scale = np.ones_like(rnorm)
    np.divide(max_ed, rnorm, out=scale, where=rnorm > 0)

    # Gaussian-weighted moments; the patch means mu_k cancel out of (co)variances.
    gx = [filter_valid(x, g) for x in srcs]
    gf = filter_valid(fi, g)
    cov = {
        (i, j): filter_valid(srcs[i] * srcs[j], g) - gx[i] * gx[j]
        for i in range(2)
        for j in range(i, 2)
    }
    cov[1, 0] = cov[0, 1]
    var_r = scale**2 * sum(coef[i] * coef[j] * cov[i, j] for i in range(2) for j in range(2))
    cov_rf = scale * sum(coef[i] * (filter_valid(srcs[i] * fi, g) - gx[i] * gf) for i in range(2))
    var_f = filter_valid(fi * fi, g) - gf * gf
    q = (2.0 * cov_rf + c) / (var_r + var_f + c)
    return float(np.mean(q))


def _ssim(a: np.ndarray, b: np.ndarray, f: np.ndarray, toolbox: bool) -> float:
    if toolbox:
        return mef_ssim(a, b, f)
    return 0.5 * (ssim_wang(f, a) + ssim_wang(f, b))


def ssim(a: ArrayLike, b: ArrayLike, f: ArrayLike, profile: str = DEFAULT_PROFILE) -> float:
    """SSIM of the fused image against both sources.

    ``standard``: 0.5 * (SSIM(F, A) + SSIM(F, B)) with Wang-2004 SSIM at L = 255, an average
    so that 1 means F equals both sources (the popular sum reaches 2).
    ``toolbox2022``: MEF-SSIM of Ma et al. 2015 (see :func:`mef_ssim`), which has no
    luminance term and compares F with a synthetic best-structure patch, hence values
    near 0.95-0.98 that are not comparable with Wang SSIM.
    NaN if the images are smaller than the 11x11 window.
    """
    p = check_profile(profile)
    ai, bi, fi = prepare(a, p, "A"), prepare(b, p, "B"), prepare(f, p, "F")
    check_same_shape(A=ai, B=bi, F=fi)
    return _ssim(ai, bi, fi, toolbox=p == "toolbox2022")
