"""Classical fusion rules, as methods comparable with GeSeNet.

A number for GeSeNet means little without the simple rules next to it: if pixel averaging
scores as well on a metric, that metric is not measuring what the network adds. Each rule
here fuses the *luminance* the network sees (the MRI and Y of the second image, as
:func:`medfuse.prepare.pair.prepare_pair` produces them) and goes through the same chroma rule
(:func:`medfuse.prepare.pair.colourise`), so every method's output is the same kind of image
and differences in the scores come from the luminance rule alone.

Rules (all on float images in [0, 1], same shape; output float32 in [0, 1]):

* ``average``: (A + B) / 2.
* ``max``: the brighter pixel, max(A, B).
* ``laplacian``: Laplacian pyramid (Burt & Adelson 1983), detail coefficients chosen by
  largest magnitude, coarsest level averaged (Burt & Kolczynski 1993 without the
  window-based activity measure).
* ``gff``: guided-filter fusion (Li, Kang & Hu 2013, IEEE TIP 22(7)), the strongest
  classical rule in most medical-fusion comparisons: two-scale decomposition with a box
  filter, saliency by smoothed Laplacian magnitude, winner-take-all weights refined by
  guided filtering with a large, smooth filter for the base and a small, edge-tight one
  for the detail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medfuse.colour import DEFAULT_GAMUT_MAP
from medfuse.errors import UsageError
from medfuse.fusion import FusionResult
from medfuse.prepare.pair import PreparedPair, colourise, prepare_pair

if TYPE_CHECKING:
    from medfuse.io.volume import Volume

LuminanceRule = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _pair_of(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 2-D arrays of one shape: the rules do their arithmetic in
    double precision so that, e.g., a pyramid of identical inputs reconstructs exactly."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"expected two 2-D luminance images of one shape, got {x.shape} and {y.shape}")
    return x, y


def _finish(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def average(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel average: the floor any learned method must clear; halves each source's
    contrast where only one source has structure."""
    x, y = _pair_of(a, b)
    return _finish(0.5 * (x + y))


def maximum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel maximum: keeps bright structure of both (bone in CT, uptake in PET) at full
    contrast, but discards dark detail wherever the other source is brighter."""
    x, y = _pair_of(a, b)
    return _finish(np.maximum(x, y))


# -- Laplacian pyramid ---------------------------------------------------------------------

#: The coarsest pyramid level keeps at least this many pixels per side; below that the
#: 5-tap pyramid kernel sees mostly border.
MIN_PYRAMID_SIDE = 8


def pyramid_levels(shape: tuple[int, int], requested: int = 4) -> int:
    """Number of detail levels that fit an image, so small images still work."""
    side = min(shape)
    fit = int(math.floor(math.log2(side / MIN_PYRAMID_SIDE))) if side >= MIN_PYRAMID_SIDE else 0
    return max(0, min(requested, fit))


def laplacian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """Detail levels (finest first) and the low-pass residual last; exact inverse is
    :func:`reconstruct_pyramid` (each level stores what upsampling the next one misses)."""
    import cv2

    g = np.ascontiguousarray(img, dtype=np.float64)
    out: list[np.ndarray] = []
    for _ in range(levels):
        down = cv2.pyrDown(g, borderType=cv2.BORDER_REFLECT101)
        up = cv2.pyrUp(down, dstsize=(g.shape[1], g.shape[0]), borderType=cv2.BORDER_REFLECT101)
        out.append(g - up)
        g = down
    out.append(g)
    return out


def reconstruct_pyramid(pyramid: list[np.ndarray]) -> np.ndarray:
    """Collapse a Laplacian pyramid back into an image."""
    import cv2

    g = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        up = cv2.pyrUp(g, dstsize=(detail.shape[1], detail.shape[0]), borderType=cv2.BORDER_REFLECT101)
        g = up + detail
    return g


def laplacian(a: np.ndarray, b: np.ndarray, levels: int = 4) -> np.ndarray:
    """Laplacian-pyramid fusion: at every detail level keep the coefficient of larger
    magnitude (the sharper local structure, whichever source has it), average the
    low-pass residual (overall brightness of both)."""
    x, y = _pair_of(a, b)
    n = pyramid_levels(x.shape, levels)
    px, py = laplacian_pyramid(x, n), laplacian_pyramid(y, n)
    fused = [np.where(np.abs(dx) >= np.abs(dy), dx, dy) for dx, dy in zip(px[:-1], py[:-1])]
    fused.append(0.5 * (px[-1] + py[-1]))
    return _finish(reconstruct_pyramid(fused))


# -- Guided-filter fusion (Li, Kang & Hu 2013) ---------------------------------------------


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window around each pixel, clipped at the border (each
    window averages only the pixels it covers, as in He et al.'s reference). Integral
    image, so the cost does not depend on r and r may exceed the image."""
    h, w = x.shape
    c = np.zeros((h + 1, w + 1), np.float64)
    np.cumsum(np.cumsum(x, axis=0, dtype=np.float64), axis=1, out=c[1:, 1:])
    rows, cols = np.arange(h), np.arange(w)
    y0, y1 = np.clip(rows - r, 0, h), np.clip(rows + r + 1, 0, h)
    x0, x1 = np.clip(cols - r, 0, w), np.clip(cols + r + 1, 0, w)
    s = c[y1][:, x1] - c[y0][:, x1] - c[y1][:, x0] + c[y0][:, x0]
    count = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return s / count


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He, Sun & Tang's guided filter (ECCV 2010): a local linear model q = a I + b fitted
    in each window, so ``src`` is smoothed except where ``guide`` has edges."""
    mean_i = box_mean(guide, r)
    mean_p = box_mean(src, r)
    var_i = np.maximum(box_mean(guide * guide, r) - mean_i * mean_i, 0.0)
    cov_ip = box_mean(guide * src, r) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, r) * guide + box_mean(b, r)


def _saliency(img: np.ndarray, sigma: float = 5.0, radius: int = 5) -> np.ndarray:
    """|3x3 Laplacian| smoothed by a (2*radius+1)^2 Gaussian: local edge energy."""
    from scipy import ndimage

    high = np.abs(ndimage.laplace(img, mode="reflect"))
    return ndimage.gaussian_filter(high, sigma, mode="reflect", truncate=radius / sigma)


def _normalise(wa: np.ndarray, wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Guided filtering can overshoot below 0 or above 1: clip, then make the two weights
    sum to one (equal weights where both vanish)."""
    wa, wb = np.clip(wa, 0.0, 1.0), np.clip(wb, 0.0, 1.0)
    total = wa + wb
    share = np.full_like(total, 0.5)
    np.divide(wa, total, out=share, where=total > 1e-12)
    return share, 1.0 - share


def gff(
    a: np.ndarray,
    b: np.ndarray,
    base_radius: int = 45,
    base_eps: float = 0.3,
    detail_radius: int = 7,
    detail_eps: float = 1e-6,
    average_radius: int = 15,
) -> np.ndarray:
    """Guided-filter fusion with the paper's parameters (r1 = 45, eps1 = 0.3, r2 = 7,
    eps2 = 1e-6, a 31x31 mean filter for the base, an 11x11 sigma-5 Gaussian for
    saliency). The winner-take-all map says which source is sharper at each pixel; guided
    filtering with the source as guide makes that choice follow the source's own edges,
    spatially smooth for the base layer (no blotches) and sharp for the detail layer."""
    x, y = _pair_of(a, b)
    base_x, base_y = box_mean(x, average_radius), box_mean(y, average_radius)
    det_x, det_y = x - base_x, y - base_y
    sx, sy = _saliency(x), _saliency(y)
    # Exact ties (flat regions of both, or identical inputs) share equally rather than
    # favouring the MRI.
    px = np.where(sx > sy, 1.0, np.where(sx < sy, 0.0, 0.5))
    py = 1.0 - px
    wbx, wby = _normalise(guided_filter(x, px, base_radius, base_eps),
                          guided_filter(y, py, base_radius, base_eps))
    wdx, wdy = _normalise(guided_filter(x, px, detail_radius, detail_eps),
                          guided_filter(y, py, detail_radius, detail_eps))
    fused = wbx * base_x + wby * base_y + wdx * det_x + wdy * det_y
    return _finish(fused)


# -- registry --------------------------------------------------------------------------------

#: The built-in rules by method name, in the order reports list them.
BASELINES: dict[str, LuminanceRule] = {
    "average": average,
    "max": maximum,
    "laplacian": laplacian,
    "gff": gff,
}

BASELINE_DESCRIPTIONS: dict[str, str] = {
    "average": "pixel average (A + B) / 2",
    "max": "pixel maximum max(A, B)",
    "laplacian": "Laplacian pyramid, 4 levels, max-abs detail, averaged base",
    "gff": "guided-filter fusion (Li, Kang & Hu 2013; r1=45, eps1=0.3, r2=7, eps2=1e-6)",
}

#: Other spellings accepted on the command line.
ALIASES: dict[str, str] = {
    "avg": "average",
    "mean": "average",
    "maximum": "max",
    "lp": "laplacian",
    "pyramid": "laplacian",
    "guided": "gff",
    "guided-filter": "gff",
}


def canonical_name(name: str) -> str:
    """The registry name for a method name or alias; UsageError for an unknown one."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in BASELINES:
        raise UsageError(
            f"unknown fusion rule {name!r}; built-in rules: {', '.join(BASELINES)}"
        )
    return key


def fuse_luminance(method: str, mri_y: np.ndarray, other_y: np.ndarray) -> np.ndarray:
    """Fuse two luminance images in [0, 1] with a built-in rule."""
    return BASELINES[canonical_name(method)](mri_y, other_y)


def fuse_prepared(pairs: list[PreparedPair], method: str) -> list[FusionResult]:
    """The baseline counterpart of :func:`medfuse.fusion.fuse_prepared`: same inputs,
    same colour path, same result type."""
    rule = BASELINES[canonical_name(method)]
    results = []
    for pair in pairs:
        fused_y = rule(pair.mri_y, pair.other_y)
        results.append(FusionResult(image=colourise(fused_y, pair), fused_y=fused_y,
                                    modality=pair.modality))
    return results


def fuse(
    mri: Volume | np.ndarray | str | Path,
    other: Volume | np.ndarray | str | Path,
    method: str = "gff",
    modality: str | None = None,
    resize: bool = False,
    gamut_map: str = DEFAULT_GAMUT_MAP,
) -> FusionResult:
    """Fuse one registered pair with a classical rule (ordinary image paths, arrays in
    [0, 1] or one-slice image volumes), checked and coloured exactly as
    :func:`medfuse.fusion.fuse` does."""
    pair = prepare_pair(mri, other, modality=modality, resize=resize, gamut_map=gamut_map)
    return fuse_prepared([pair], method)[0]


__all__ = [
    "ALIASES",
    "BASELINES",
    "BASELINE_DESCRIPTIONS",
    "average",
    "box_mean",
    "canonical_name",
    "fuse",
    "fuse_luminance",
    "fuse_prepared",
    "gff",
    "guided_filter",
    "laplacian",
    "laplacian_pyramid",
    "maximum",
    "pyramid_levels",
    "reconstruct_pyramid",
]
