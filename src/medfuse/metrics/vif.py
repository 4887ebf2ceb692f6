"""VIF: pixel-domain multiscale visual information fidelity (Sheikh & Bovik 2006).

Fusion use (Han, Cai, Cao & Xu 2013 style): VIF = vifp(A -> F) + vifp(B -> F), each source
taken as the reference and F as the "distorted" image.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._common import (
    DEFAULT_PROFILE,
    check_profile,
    check_same_shape,
    filter_valid,
    gaussian_1d,
    prepare,
    safe_ratio,
)

_SIGMA_NSQ = 2.0  # variance of the HVS noise, as in vifp_mscale
_TINY = 1e-10


def vifp_mscale(ref: np.ndarray, dist: np.ndarray, saturate_scale1: bool = False) -> float:
    """Pixel-domain VIF over 4 scales (the ``vifp_mscale`` algorithm of Sheikh & Bovik).

    Scale s = 1..4 uses an N = 2^(5-s)+1 Gaussian window with sigma N/5, 'valid' filtering;
    from scale 2 on, both images are low-passed with that window and subsampled by 2.
    Per pixel the GSM model gives gain g = s_rd / s_r^2 and distortion variance
    s_v^2 = s_d^2 - g s_rd; VIF = sum log10(1 + g^2 s_r^2 / (s_v^2 + 2)) over
    sum log10(1 + s_r^2 / 2), with the usual guards for flat regions and negative gain.

    ``saturate_scale1`` reproduces the toolbox quirk: at scale 1 the inputs are still uint8,
    so ref*ref, dist*dist and ref*dist saturate at 255 before filtering.
    NaN when the denominator is zero (a flat reference carries no information to preserve).
    """
    r = np.asarray(ref, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    num = 0.0
    den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        g = gaussian_1d(n, n / 5.0)
        if scale > 1:
            r = filter_valid(r, g)[::2, ::2]
            d = filter_valid(d, g)[::2, ::2]
        mu1 = filter_valid(r, g)
        if mu1.size == 0:
            break  # MATLAB's 'valid' filter is empty from here on: nothing more to add
        mu2 = filter_valid(d, g)
        rr, dd, rd = r * r, d * d, r * d
        if saturate_scale1 and scale == 1:
            rr, dd, rd = np.minimum(rr, 255.0), np.minimum(dd, 255.0), np.minimum(rd, 255.0)
        s1 = np.maximum(filter_valid(rr, g) - mu1 * mu1, 0.0)
        s2 = np.maximum(filter_valid(dd, g) - mu2 * mu2, 0.0)
        s12 = filter_valid(rd, g) - mu1 * mu2

        gain = s12 / (s1 + _TINY)
        sv = s2 - gain * s12
        flat1 = s1 < _TINY
        gain[flat1] = 0.0
        sv[flat1] = s2[flat1]
        s1[flat1] = 0.0
        flat2 = s2 < _TINY
        gain[flat2] = 0.0
        sv[flat2] = 0.0
        neg = gain < 0
        sv[neg] = s2[neg]
        gain[neg] = 0.0
        sv[sv <= _TINY] = _TINY

        num += float(np.log10(1.0 + gain * gain * s1 / (sv + _SIGMA_NSQ)).sum())
        den += float(np.log10(1.0 + s1 / _SIGMA_NSQ).sum())
    return safe_ratio(num, den)


def _vif(a: np.ndarray, b: np.ndarray, f: np.ndarray, toolbox: bool) -> float:
    return vifp_mscale(a, f, toolbox) + vifp_mscale(b, f, toolbox)


def vif(a: ArrayLike, b: ArrayLike, f: ArrayLike, profile: str = DEFAULT_PROFILE) -> float:
    """VIF = vifp(A, F) + vifp(B, F) (see :func:`vifp_mscale`).

    ``standard``: floating point throughout. ``toolbox2022``: scale-1 products saturate at
    255 (uint8 arithmetic), which inflates the score (MRI-CT about 0.69 instead of 0.53).
    NaN when a source is constant (its VIF denominator is zero).
    """
    p = check_profile(profile)
    ai, bi, fi = prepare(a, p, "A"), prepare(b, p, "B"), prepare(f, p, "F")
    check_same_shape(A=ai, B=bi, F=fi)
    return _vif(ai, bi, fi, toolbox=p == "toolbox2022")
