"""MI: mutual information of the fused image with each source (Qu, Zhang & Yan 2002)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._common import DEFAULT_PROFILE, check_profile, check_same_shape, grey_levels, prepare
from .basic import _entropy_of_counts


def _mi_pair(x: np.ndarray, y: np.ndarray, merge_top: bool) -> float:
    """MI(X, Y) = H(X) + H(Y) - H(X, Y) in bits from 256-bin histograms.

    ``merge_top`` reproduces the toolbox's joint histogram, indexed by uint8 value + 1 which
    saturates: levels 254 and 255 share a joint bin (the marginals keep them apart).
    """
    lx = grey_levels(x).ravel()
    ly = grey_levels(y).ravel()
    hx = _entropy_of_counts(np.bincount(lx, minlength=256))
    hy = _entropy_of_counts(np.bincount(ly, minlength=256))
    if merge_top:
        jx, jy = np.minimum(lx, 254), np.minimum(ly, 254)
    else:
        jx, jy = lx, ly
    hxy = _entropy_of_counts(np.bincount(jx * 256 + jy, minlength=256 * 256))
    return hx + hy - hxy


def _mi(a: np.ndarray, b: np.ndarray, f: np.ndarray, merge_top: bool) -> float:
    return _mi_pair(f, a, merge_top) + _mi_pair(f, b, merge_top)


def mi(a: ArrayLike, b: ArrayLike, f: ArrayLike, profile: str = DEFAULT_PROFILE) -> float:
    """MI = MI(F, A) + MI(F, B) in bits, 256 grey-level bins (float input rounded to levels).

    ``standard``: plain joint histogram. ``toolbox2022``: levels 254 and 255 merged in the
    joint histogram only (a uint8 saturation quirk), which slightly raises H(X)+H(Y)-H(X,Y)
    for bright images. Always defined: a constant image has entropy 0 and MI 0.
    Copying a source maximises MI, so never read it alone.
    """
    p = check_profile(profile)
    ai, bi, fi = prepare(a, p, "A"), prepare(b, p, "B"), prepare(f, p, "F")
    check_same_shape(A=ai, B=bi, F=fi)
    return _mi(ai, bi, fi, merge_top=p == "toolbox2022")
