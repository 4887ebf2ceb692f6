"""Colour path of GeSeNet: full-range BT.601 YCbCr in [0, 1] and the tau chroma rule.

The network sees luminance only; colour comes back through the chroma rule (paper eq. 5),
which weights each source's chroma by its distance from neutral grey, so a grey source
contributes nothing and a strongly coloured one dominates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TAU = 0.5  # 128 of 255: neutral chroma in [0, 1] units

#: How colours that fall outside RGB are brought back (see :func:`fit_luminance`):
#: ``fit`` lowers the luminance smoothly until they fit, ``clip`` clips each channel (the
#: paper's code).
GAMUT_MAPS = ("fit", "clip")
DEFAULT_GAMUT_MAP = "fit"
#: Gaussian width of the luminance scale of ``fit``: this fraction of the plane's longer
#: side, and never under FIT_SIGMA_MIN pixels (a scale that varies as fast as the anatomy's
#: edges would flatten them).
FIT_SIGMA = 1 / 16
FIT_SIGMA_MIN = 16.0

# Forward: Y = 0.299R + 0.587G + 0.114B; Cr = 0.713(R - Y) + .5; Cb = 0.564(B - Y) + .5
_KR, _KG, _KB = 0.299, 0.587, 0.114
_CR_SCALE, _CB_SCALE = 0.713, 0.564
# Inverse coefficients as the paper's code states them (not the exact matrix inverse).
_R_CR, _G_CR, _G_CB, _B_CB = 1.403, 0.714, 0.344, 1.773


def luma(r: Any, g: Any, b: Any) -> Any:
    """BT.601 Y from separate R, G, B planes. Plain arithmetic, so NumPy arrays and torch
    tensors (the training losses) share this one definition."""
    return _KR * r + _KG * g + _KB * b


def ycbcr_planes(y: Any, cb: Any, cr: Any) -> tuple[Any, Any, Any]:
    """Unclipped R, G, B planes from Y, Cb, Cr with the paper's inverse coefficients.
    Plain arithmetic like :func:`luma`, for the same reason."""
    dcr, dcb = cr - TAU, cb - TAU
    return y + _R_CR * dcr, y - _G_CR * dcr - _G_CB * dcb, y + _B_CB * dcb


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y of an (..., 3) RGB array in [0, 1]."""
    rgb = np.asarray(rgb)
    return luma(rgb[..., 0], rgb[..., 1], rgb[..., 2])


def rgb_to_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split (..., 3) RGB in [0, 1] into Y, Cb, Cr, each (...) in [0, 1]."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected (..., 3) RGB, got shape {rgb.shape}")
    y = luminance(rgb)
    cr = _CR_SCALE * (rgb[..., 0] - y) + TAU
    cb = _CB_SCALE * (rgb[..., 2] - y) + TAU
    return y, cb, cr


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, clip: bool = True) -> np.ndarray:
    """Merge Y, Cb, Cr back into (..., 3) RGB, clipped to [0, 1] unless ``clip=False``."""
    rgb = np.stack(ycbcr_planes(np.asarray(y), np.asarray(cb), np.asarray(cr)), axis=-1)
    return np.clip(rgb, 0.0, 1.0) if clip else rgb


def luminance_ceiling(cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """The highest Y at which a pixel of chroma (``cb``, ``cr``) still has R, G and B <= 1."""
    dcr, dcb = np.asarray(cr) - TAU, np.asarray(cb) - TAU
    over = np.maximum.reduce([np.zeros_like(dcr), _R_CR * dcr, -_G_CR * dcr - _G_CB * dcb,
                              _B_CB * dcb])
    return 1.0 - over


def fit_luminance(y: np.ndarray, cb: np.ndarray, cr: np.ndarray,
                  sigma: float | None = None, keep: np.ndarray | None = None) -> np.ndarray:
    """Lower the fused luminance where its colour would leave RGB, smoothly, so it fits.

    A strong colour on a bright pixel (red over white matter) has no RGB value: clipping
    each channel turns it pale (red to pink, blue to white), and the lesion or the low
    uptake it marks fades. Lowering each such pixel to its own ceiling keeps the colour
    but flattens the MRI wherever uptake is high. Instead the per-pixel scale
    ``min(1, ceiling / Y)`` is blurred (Gaussian, ``sigma`` pixels; default 1/16 of the
    longer side, at least 16) and multiplied in: the colour gets its room region by
    region, and the MRI's edges survive as a multiplicative pattern. Pixels in ``keep``
    (a bool mask; the colour path passes the grey ones, transparent pixels included,
    which show the MRI exactly) are left as they are, and the scale eases back to 1 within
    about ``sigma / 2`` of them, so the MRI there meets the coloured part without a step.
    A plane whose colours fit is returned unchanged; some pixels at the edge of a region
    may still clip.
    """
    import cv2

    y = np.asarray(y, dtype=np.float32)
    need = np.minimum(1.0, np.maximum(luminance_ceiling(cb, cr), 0.05)
                      / np.maximum(y, 1e-6)).astype(np.float32)
    if keep is not None:
        need[keep] = 1.0
    if need.min() >= 1.0:
        return y
    if sigma is None:
        sigma = max(FIT_SIGMA_MIN, FIT_SIGMA * max(y.shape[-2:]))
    blur = cv2.BORDER_REPLICATE
    scale = np.minimum(cv2.GaussianBlur(need, (0, 0), sigma, borderType=blur), 1.0)
    if keep is not None and keep.any():
        # 0 on the edge of ``keep`` (where the blurred mask is 1/2), 1 from sigma/2 inside.
        inside = cv2.GaussianBlur((~keep).astype(np.float32), (0, 0), sigma / 2,
                                  borderType=blur)
        scale = 1.0 - (1.0 - scale) * np.clip(2.0 * inside - 1.0, 0.0, 1.0)
        scale[keep] = 1.0
    return (y * scale).astype(np.float32)


def fuse_chroma(channels: list[np.ndarray] | tuple[np.ndarray, ...], tau: float = TAU) -> np.ndarray:
    """Chroma rule over any number of sources: C = sum C_i |C_i - tau| / sum |C_i - tau|,
    and tau where every source is neutral (0/0)."""
    stack = np.stack([np.asarray(c, dtype=np.float64) for c in channels])
    weight = np.abs(stack - tau)
    num = (stack * weight).sum(0)
    den = weight.sum(0)
    out = np.full(den.shape, tau, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out.astype(np.result_type(*channels, np.float32))


def fuse_colour(
    fused_y: np.ndarray,
    chroma_sources: list[tuple[np.ndarray, np.ndarray]],
    tau: float = TAU,
) -> np.ndarray:
    """RGB from the fused luminance and the (Cb, Cr) of each source, by the chroma rule,
    each channel clipped (the paper's rule; :func:`medfuse.prepare.pair.colourise` is
    the product's, with the gamut map)."""
    cb = fuse_chroma([c[0] for c in chroma_sources], tau)
    cr = fuse_chroma([c[1] for c in chroma_sources], tau)
    return ycbcr_to_rgb(fused_y, cb, cr)


#: Window radius of :func:`anatomy_prediction`: this fraction of the plane's longer side,
#: never under MATCH_RADIUS_MIN pixels (about 15 mm on a 1 mm head: wider than a lesion, so
#: a lesion is the minority of every window it sits in and stays in the residual).
MATCH_RADIUS = 1 / 16
MATCH_RADIUS_MIN = 8
#: Regularisation of the local fit (luminance squared): flat MRI regions predict the mean.
MATCH_EPS = 1e-3


def anatomy_prediction(guide: np.ndarray, image: np.ndarray, radius: int | None = None,
                       eps: float = MATCH_EPS) -> np.ndarray:
    """The part of ``image`` that the MRI ``guide`` explains: a local linear fit
    ``a * guide + b`` over (2 radius + 1)^2 windows (a guided filter).

    Why: a functional image's tissue pattern follows the anatomy (FDG is high in grey
    matter, where T1 is dark), so fusing its luminance with the MRI's cancels the MRI's
    grey/white contrast. What the MRI cannot explain, ``image`` minus this prediction, is
    what the functional image adds: lesions, hot foci, defects, a bleed, bone on CT.
    """
    import cv2

    i = np.asarray(guide, dtype=np.float32)
    p = np.asarray(image, dtype=np.float32)
    if radius is None:
        radius = int(max(MATCH_RADIUS_MIN, round(MATCH_RADIUS * max(i.shape[-2:]))))
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT)

    mi, mp = box(i), box(p)
    a = (box(i * p) - mi * mp) / (box(i * i) - mi * mi + np.float32(eps))
    b = mp - a * mi
    return (box(a) * i + box(b)).astype(np.float32)


def matched_luminance(mri_y: np.ndarray, other_y: np.ndarray, strength: float = 1.0,
                      radius: int | None = None, eps: float = MATCH_EPS) -> np.ndarray:
    """A luminance chosen for fusion: the MRI's, plus ``strength`` times what the
    functional luminance holds beyond its :func:`anatomy_prediction` from the MRI, in
    [0, 1]. The tissue contrast is the MRI's (sign and size), and a lesion brighter or
    darker than its tissue predicts is brighter or darker here by that much."""
    mri = np.asarray(mri_y, dtype=np.float32)
    other = np.asarray(other_y, dtype=np.float32)
    residual = other - anatomy_prediction(mri, other, radius, eps)
    return np.clip(mri + np.float32(strength) * residual, 0.0, 1.0).astype(np.float32)


def desaturate_to_fit(y: np.ndarray, cb: np.ndarray, cr: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Chroma (Cb, Cr) pulled towards neutral, per pixel, just enough that R, G and B at
    luminance ``y`` lie in [0, 1]: the luminance (the MRI's tissue contrast) is kept
    exactly and a colour that has no room there turns paler, where ``fit`` would darken
    the pixel and ``clip`` would change both."""
    y = np.clip(np.asarray(y, dtype=np.float64), 0.0, 1.0)
    dcr, dcb = np.asarray(cr, np.float64) - TAU, np.asarray(cb, np.float64) - TAU
    scale = np.ones_like(y)
    for offset in (_R_CR * dcr, -_G_CR * dcr - _G_CB * dcb, _B_CB * dcb):
        room = np.where(offset > 0, 1.0 - y, y)
        with np.errstate(divide="ignore", invalid="ignore"):
            limit = np.where(np.abs(offset) > 1e-9, room / np.abs(offset), 1.0)
        scale = np.minimum(scale, limit)
    scale = np.clip(scale, 0.0, 1.0)
    return ((TAU + scale * dcb).astype(np.float32), (TAU + scale * dcr).astype(np.float32))
