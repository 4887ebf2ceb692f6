"""From two source images to one fused image: prepare luminance, run the engine, add colour.

This is the library behind ``medfuse fuse``/``batch``/``masks`` and the Python API. It
knows about modalities and colour, and nothing about files or command lines.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medfuse.colour import TAU, fuse_chroma, rgb_to_ycbcr, ycbcr_to_rgb
from medfuse.errors import InputError, UsageError
from medfuse.io.images import ImageData, read_image

if TYPE_CHECKING:
    from medfuse.engine import Engine

MODALITIES = ("ct", "pet", "spect")


@dataclass
class PreparedPair:
    """What the network and the chroma rule need from one registered pair."""

    mri_y: np.ndarray  # (H, W) float32
    other_y: np.ndarray  # (H, W) float32
    chroma: list[tuple[np.ndarray, np.ndarray]]  # (Cb, Cr) of each colour source
    modality: str
    name: str = ""

    @property
    def colour(self) -> bool:
        return bool(self.chroma)


@dataclass
class FusionResult:
    """Fused image in [0, 1] (grey (H, W) or RGB (H, W, 3)), its luminance and masks."""

    image: np.ndarray
    fused_y: np.ndarray
    modality: str
    mask_mri: np.ndarray | None = None
    mask_functional: np.ndarray | None = None


def _as_image(x: ImageData | np.ndarray | str | Path) -> ImageData:
    if isinstance(x, ImageData):
        return x
    if isinstance(x, (str, Path)):
        return read_image(x)
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise InputError(f"expected an (H, W) or (H, W, 3) array, got shape {arr.shape}")
    return ImageData(arr)


def _check_finite(img: ImageData, label: str) -> None:
    if not np.isfinite(img.pixels).all():
        raise InputError(f"{label} ({img.path or 'array'}) holds NaN or infinite values")
    lo, hi = float(img.pixels.min()), float(img.pixels.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(f"{label} values must lie in [0, 1], found [{lo:.3g}, {hi:.3g}]")


def resize_to(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample onto another grid: area averaging when shrinking (no aliasing), bilinear
    when enlarging."""
    import cv2

    h, w = shape
    shrinking = pixels.shape[0] > h or pixels.shape[1] > w
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(pixels, np.float32), (w, h), interpolation=interp)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def infer_modality(other: ImageData) -> str:
    """Grey second images behave like CT, colour ones like PET/SPECT pseudo-colour."""
    return "pet" if other.is_colour else "ct"


def prepare_pair(
    mri: ImageData | np.ndarray | str | Path,
    other: ImageData | np.ndarray | str | Path,
    modality: str | None = None,
    resize: bool = False,
    name: str = "",
) -> PreparedPair:
    """Validate a pair and split it into the network's luminance inputs and chroma.

    The MRI must be grey. The second image is grey (CT-like) or colour (PET/SPECT
    pseudo-colour); ``modality`` overrides the guess. With ``modality='ct'`` a colour
    image's chroma is dropped (CT has no colour meaning).
    """
    a, b = _as_image(mri), _as_image(other)
    if modality is not None:
        modality = modality.lower()
        if modality not in MODALITIES:
            raise UsageError(f"--modality {modality!r}: expected one of {', '.join(MODALITIES)}")
    if a.is_colour:
        raise InputError(
            f"the MRI must be grey, but {a.path or 'the MRI array'} is a colour image "
            "(R, G and B differ)"
        )
    _check_finite(a, "MRI")
    _check_finite(b, "second image")
    for img, label in ((a, "MRI"), (b, "second image")):
        if min(img.shape) < 8:
            raise InputError(f"{label} is {img.shape[0]}x{img.shape[1]}: medfuse needs 8x8 or more")
    if a.shape != b.shape:
        if not resize:
            raise InputError(
                f"size mismatch: MRI {a.path or 'array'} is {a.shape[1]}x{a.shape[0]} but "
                f"{b.path or 'second image'} is {b.shape[1]}x{b.shape[0]} (use --resize to "
                "resample the second image onto the MRI grid)"
            )
        b = ImageData(resize_to(b.pixels, a.shape), b.path, b.bit_depth)
    mod = modality or infer_modality(b)
    if b.is_colour:
        y, cb, cr = rgb_to_ycbcr(b.pixels)
        chroma = [] if mod == "ct" else [(cb.astype(np.float32), cr.astype(np.float32))]
    else:
        y, chroma = b.pixels, []
    return PreparedPair(a.pixels.astype(np.float32), y.astype(np.float32), chroma, mod, name)


def colourise(fused_y: np.ndarray, pair: PreparedPair) -> np.ndarray:
    """Apply the tau chroma rule over both sources (the grey MRI contributes neutral
    chroma, so with one colour source its chroma passes through); grey stays grey."""
    if not pair.colour:
        return np.clip(fused_y, 0.0, 1.0).astype(np.float32)
    neutral = np.full_like(fused_y, TAU)
    sources = [(neutral, neutral), *pair.chroma]
    cb = fuse_chroma([c[0] for c in sources])
    cr = fuse_chroma([c[1] for c in sources])
    return ycbcr_to_rgb(fused_y, cb, cr).astype(np.float32)


def stretch(image: np.ndarray) -> np.ndarray:
    """Min-to-max contrast stretch over all channels, as the authors' script does."""
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return image.copy()
    return ((image - lo) / (hi - lo)).astype(np.float32)


def fuse_prepared(
    pairs: list[PreparedPair],
    engine: Engine,
    with_masks: bool = False,
    do_stretch: bool = False,
) -> list[FusionResult]:
    """Fuse many prepared pairs, batching same-sized ones through the network together."""
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by_shape[p.mri_y.shape].append(i)
    results: list[FusionResult | None] = [None] * len(pairs)
    for idx in by_shape.values():
        mri = np.stack([pairs[i].mri_y for i in idx])
        oth = np.stack([pairs[i].other_y for i in idx])
        fused, mm, mf = engine.fuse_luminance(mri, oth, with_masks=with_masks)
        for j, i in enumerate(idx):
            img = colourise(fused[j], pairs[i])
            results[i] = FusionResult(
                image=stretch(img) if do_stretch else img,
                fused_y=fused[j],
                modality=pairs[i].modality,
                mask_mri=None if mm is None else mm[j],
                mask_functional=None if mf is None else mf[j],
            )
    return [r for r in results if r is not None]


def fuse(
    mri: ImageData | np.ndarray | str | Path,
    other: ImageData | np.ndarray | str | Path,
    engine: Engine | None = None,
    modality: str | None = None,
    resize: bool = False,
    do_stretch: bool = False,
    with_masks: bool = False,
) -> FusionResult:
    """Fuse one registered pair (paths, arrays in [0, 1] or ``ImageData``).

    Loads the default weights on the default device when no engine is given.
    """
    if engine is None:
        from medfuse.engine import load_model

        engine = load_model()
    pair = prepare_pair(mri, other, modality=modality, resize=resize)
    return fuse_prepared([pair], engine, with_masks=with_masks, do_stretch=do_stretch)[0]
