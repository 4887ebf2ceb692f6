"""From a planned pair of planes to what the network and the chroma rule need.

The MRI plane is the network's first luminance input as it is; the other plane is split into
luminance (the network's second input) and chroma (what the fused luminance is coloured with
afterwards). Planes coming from a :class:`~medfuse.prepare.plan.FusionPlan` were validated
there and are split without a second check; arrays handed in directly by Python callers go
through :func:`prepare_pair`, which checks them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medfuse.colour import (
    DEFAULT_GAMUT_MAP,
    GAMUT_MAPS,
    TAU,
    fit_luminance,
    fuse_chroma,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from medfuse.errors import InputError, UsageError
from medfuse.vocabulary import MIN_SIDE, parse_modality

if TYPE_CHECKING:
    from medfuse.io.volume import Volume

#: Chroma within this of neutral (half an 8-bit level) counts as grey for the gamut map.
_GREY_CHROMA = 0.5 / 255


@dataclass
class PreparedPair:
    """What the network and the chroma rule need from one registered pair of planes."""

    mri_y: np.ndarray  # (H, W) float32 in [0, 1]
    other_y: np.ndarray  # (H, W) float32 in [0, 1]
    chroma: list[tuple[np.ndarray, np.ndarray]]  # (Cb, Cr) of each colour source
    modality: str
    name: str = ""
    #: The other plane as it is shown (after window and colour map): grey (H, W) or RGB
    #: (H, W, 3) in [0, 1]; what metrics compare the fused image with.
    other_image: np.ndarray | None = None
    #: (H, W) bool: where the other image is at or below its transparency floor (or has no
    #: data); there the fused pixel is the MRI's, uncoloured. None: nothing is transparent
    #: (ordinary images, CT).
    transparent: np.ndarray | None = None
    #: How :func:`colourise` brings colours outside RGB back: ``fit`` or ``clip``
    #: (:data:`medfuse.colour.GAMUT_MAPS`).
    gamut_map: str = DEFAULT_GAMUT_MAP

    @property
    def colour(self) -> bool:
        return bool(self.chroma)


def split_pair(mri: np.ndarray, other: np.ndarray, modality: str, name: str = "",
               transparent: np.ndarray | None = None,
               gamut_map: str = DEFAULT_GAMUT_MAP) -> PreparedPair:
    """Split planes already checked by the plan: the other's luminance and, for PET/SPECT
    colour, its chroma (CT has no colour meaning, so a colour CT's chroma is dropped).
    ``transparent`` marks the pixels at or below the other's floor and ``gamut_map`` says
    how colours outside RGB come back (see :func:`colourise`)."""
    if other.ndim == 3:
        y, cb, cr = rgb_to_ycbcr(other)
        chroma = [] if modality == "ct" else [(cb.astype(np.float32), cr.astype(np.float32))]
    else:
        y, chroma = other, []
    return PreparedPair(mri.astype(np.float32), y.astype(np.float32), chroma, modality, name,
                        other, transparent, gamut_map)


def check_gamut_map(name: str) -> str:
    """``name`` (any case, spaces around ignored) as one of
    :data:`medfuse.colour.GAMUT_MAPS`; a usage error for anything else."""
    value = str(name).strip().lower()
    if value not in GAMUT_MAPS:
        raise UsageError(f"--gamut-map {name!r}: expected one of {', '.join(GAMUT_MAPS)}")
    return value


def _as_plane(x: Volume | np.ndarray | str | Path, label: str) -> tuple[np.ndarray, str]:
    """Pixels of a single-slice input in [0, 1] and a label for messages."""
    from medfuse.io.read import read
    from medfuse.io.volume import Volume

    if isinstance(x, (str, Path)):
        x = read(x)
    if isinstance(x, Volume):
        if x.format != "image":
            raise InputError(f"{x.label}: DICOM/NIfTI inputs need a window; use "
                             "medfuse.fuse_files (or read them through a FusionPlan)")
        return x.pixels, x.label
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise InputError(f"expected an (H, W) or (H, W, 3) array, got shape {arr.shape}")
    return arr, f"the {label} array"


def _check_plane(pixels: np.ndarray, label: str, where: str) -> None:
    if not np.isfinite(pixels).all():
        raise InputError(f"{label} ({where}) holds NaN or infinite values")
    lo, hi = float(pixels.min()), float(pixels.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(f"{label} values must lie in [0, 1], found [{lo:.3g}, {hi:.3g}]")
    if min(pixels.shape[:2]) < MIN_SIDE:
        raise InputError(f"{label} is {pixels.shape[0]}x{pixels.shape[1]}: medfuse needs "
                         f"{MIN_SIDE}x{MIN_SIDE} or more")


def resize_to(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample onto another grid: area averaging when shrinking (no aliasing), bilinear
    when enlarging."""
    import cv2

    h, w = shape
    shrinking = pixels.shape[0] > h or pixels.shape[1] > w
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(pixels, np.float32), (w, h), interpolation=interp)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def size_mismatch(mri_shape: tuple[int, ...], other_shape: tuple[int, ...], mri: str,
                  other: str) -> InputError:
    """The one message for planes of different sizes."""
    return InputError(
        f"size mismatch: MRI {mri} is {mri_shape[1]}x{mri_shape[0]} but {other} is "
        f"{other_shape[1]}x{other_shape[0]} (use --resize to resample the second image onto "
        "the MRI grid)"
    )


def prepare_pair(
    mri: Volume | np.ndarray | str | Path,
    other: Volume | np.ndarray | str | Path,
    modality: str | None = None,
    resize: bool = False,
    name: str = "",
    gamut_map: str = DEFAULT_GAMUT_MAP,
) -> PreparedPair:
    """Check a pair of single planes (paths of ordinary images, arrays in [0, 1] or one-slice
    image volumes) and split it for the network.

    The MRI must be grey. The other image is grey (CT-like) or colour (PET/SPECT
    pseudo-colour); ``modality`` overrides that guess. ``gamut_map``: see :func:`colourise`.
    """
    a, a_where = _as_plane(mri, "MRI")
    b, b_where = _as_plane(other, "other")
    mod = parse_modality(modality) if modality is not None else None
    gamut_map = check_gamut_map(gamut_map)
    if a.ndim == 3:
        raise InputError(f"the MRI must be grey, but {a_where} is a colour image "
                         "(R, G and B differ)")
    _check_plane(a, "MRI", a_where)
    _check_plane(b, "other image", b_where)
    if a.shape[:2] != b.shape[:2]:
        if not resize:
            raise size_mismatch(a.shape, b.shape, a_where, b_where)
        b = resize_to(b, a.shape[:2])
    return split_pair(a, b, mod or ("pet" if b.ndim == 3 else "ct"), name,
                      gamut_map=gamut_map)


def colourise(fused_y: np.ndarray, pair: PreparedPair) -> np.ndarray:
    """Apply the tau chroma rule over both sources (the grey MRI contributes neutral
    chroma, so with one colour source its chroma passes through); grey stays grey.

    Where ``pair.transparent`` is set, the other image is at or below its floor: the pixel
    takes the MRI's luminance and neutral chroma, so it shows the MRI exactly as it is. This
    is done here, after the network, rather than by blanking the other's colour beforehand,
    because a colour map whose low end is not black (jet) would otherwise still tint air
    through the luminance it gives the network, and because the network's fused luminance
    over air is not exactly the MRI's.

    A strong colour on bright luminance falls outside RGB. ``pair.gamut_map`` ``fit`` (the
    default) lowers the luminance there smoothly so the colour keeps its hue and strength
    (:func:`medfuse.colour.fit_luminance`), leaving grey and transparent pixels as they
    are; ``clip`` clips each channel, as the paper's code does (reproducing published
    tables needs it). Grey output is never changed.
    """
    if pair.transparent is not None:
        fused_y = np.where(pair.transparent, pair.mri_y, fused_y)
    if not pair.colour:
        return np.clip(fused_y, 0.0, 1.0).astype(np.float32)
    neutral = np.full_like(fused_y, TAU)
    chroma = pair.chroma
    if pair.transparent is not None:
        chroma = [(np.where(pair.transparent, TAU, cb), np.where(pair.transparent, TAU, cr))
                  for cb, cr in chroma]
    sources = [(neutral, neutral), *chroma]
    cb = fuse_chroma([c[0] for c in sources])
    cr = fuse_chroma([c[1] for c in sources])
    if pair.gamut_map == "fit":
        # Grey pixels keep their luminance: the fit only makes room for colour.
        # Transparent pixels were given neutral chroma above, so they are grey here too.
        keep = (np.abs(cb - TAU) < _GREY_CHROMA) & (np.abs(cr - TAU) < _GREY_CHROMA)
        fused_y = fit_luminance(fused_y, cb, cr, keep=keep)
    return ycbcr_to_rgb(fused_y, cb, cr).astype(np.float32)


def stretch(image: np.ndarray) -> np.ndarray:
    """Min-to-max contrast stretch over all channels, as the authors' script does."""
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return image.copy()
    return ((image - lo) / (hi - lo)).astype(np.float32)


__all__ = [
    "MIN_SIDE",
    "PreparedPair",
    "check_gamut_map",
    "colourise",
    "prepare_pair",
    "resize_to",
    "size_mismatch",
    "split_pair",
    "stretch",
]
