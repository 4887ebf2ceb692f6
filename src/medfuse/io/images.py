"""Ordinary image files (PNG, JPEG, TIFF, BMP) in and out.

Every reader returns float32 in [0, 1], grey (H, W) or RGB (H, W, 3), whatever the file's
mode or bit depth, so nothing downstream cares how a file was stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medfuse.errors import InputError, UsageError
from medfuse.io.outputs import atomic_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Largest channel spread (in 8-bit levels) for which an RGB file still counts as grey.
#: Lossless files of grey content have spread 0; JPEG's chroma subsampling adds 1-2 levels.
GREY_TOLERANCE = 2 / 255


@dataclass
class ImageData:
    """Pixels in [0, 1] and where they came from."""

    pixels: np.ndarray  # float32, (H, W) grey or (H, W, 3) RGB
    path: Path | None = None
    bit_depth: int = 8

    @property
    def is_colour(self) -> bool:
        return self.pixels.ndim == 3

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape[0], self.pixels.shape[1]


def as_grey_if_grey(rgb: np.ndarray, tolerance: float = GREY_TOLERANCE) -> np.ndarray:
    """Collapse an RGB array whose channels agree (within ``tolerance``) to one channel."""
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    if spread.size and float(spread.max()) <= tolerance + 1e-7:
        if float(spread.max()) == 0.0:
            return rgb[..., 0].copy()
        # JPEG's small chroma noise: the channel mean is the least biased grey.
        return rgb.mean(axis=-1, dtype=np.float32)
    return rgb


def _pil_to_array(img: object, path: Path) -> tuple[np.ndarray, int]:
    """Convert any Pillow mode to float32 [0, 1]; returns (array, bit depth)."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float64).astype(np.float32) / 65535.0, 16
    if mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return (np.clip(arr, 0, peak) / peak).astype(np.float32), 16 if peak > 255 else 8
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise InputError(f"{path}: image holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        return ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)), 32
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0, 1
    if mode in ("L",):
        return np.asarray(img, dtype=np.float32) / 255.0, 8
    if mode == "LA":
        la = np.asarray(img, dtype=np.float32) / 255.0
        return la[..., 0] * la[..., 1], 8
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        rgba = np.asarray(img, dtype=np.float32) / 255.0
        # Transparent pixels carry no signal: composite over black (background).
        return rgba[..., :3] * rgba[..., 3:4], 8
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0, 8


def _png_is_16bit_colour(path: Path) -> bool:
    """PNG header check: bit depth 16 with colour type RGB (2) or RGBA (6). Pillow reads
    such files as 8-bit, so they go through OpenCV to keep their precision."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
    except OSError:
        return False
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[24] == 16 and head[25] in (2, 6)


def _read_16bit_colour(path: Path) -> np.ndarray:
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3:
        raise InputError(f"{path}: cannot decode 16-bit colour PNG")
    rgb = data[..., 2::-1].astype(np.float32) / 65535.0
    if data.shape[-1] == 4:
        rgb = rgb * (data[..., 3:4].astype(np.float32) / 65535.0)
    return rgb


def read_image(path: str | Path) -> ImageData:
    """Read a PNG/JPEG/TIFF/BMP file as float32 in [0, 1]; grey-looking RGB becomes grey."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such file: {p}")
    if p.is_dir():
        raise UsageError(f"expected an image file, got a folder: {p}")
    try:
        if _png_is_16bit_colour(p):
            arr, depth = _read_16bit_colour(p), 16
        else:
            with Image.open(p) as img:
                img.load()
                arr, depth = _pil_to_array(img, p)
    except UnidentifiedImageError as exc:
        raise InputError(f"{p}: not an image file medfuse can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{p}: cannot decode image ({exc})") from exc
    if arr.ndim == 3:
        arr = as_grey_if_grey(arr)
    return ImageData(np.ascontiguousarray(arr, dtype=np.float32), p, depth)


def to_uint(rgb_or_grey: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Quantise [0, 1] floats to uint8/uint16 with rounding (not truncation)."""
    if bit_depth not in (8, 16):
        raise UsageError(f"bit depth must be 8 or 16, got {bit_depth}")
    peak = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return (np.clip(rgb_or_grey, 0.0, 1.0) * peak + 0.5).astype(dtype)


def write_image(path: str | Path, pixels: np.ndarray, bit_depth: int = 8, force: bool = False) -> Path:
    """Write grey (H, W) or RGB (H, W, 3) pixels in [0, 1] atomically.

    16-bit is written for grey images only where Pillow can (PNG/TIFF); 16-bit RGB PNG is
    written through OpenCV, which Pillow cannot do.
    """
    from PIL import Image

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise UsageError(f"cannot write {p.name}: use one of {', '.join(IMAGE_SUFFIXES)}")
    if bit_depth == 16 and suffix not in (".png", ".tif", ".tiff"):
        raise UsageError(f"16-bit output needs .png or .tif, not {suffix}")
    data = to_uint(pixels, bit_depth)
    with atomic_output(p, force=force) as tmp:
        if bit_depth == 16 and data.ndim == 3:
            import cv2

            ok = cv2.imwrite(str(tmp) + suffix, np.ascontiguousarray(data[..., ::-1]))
            if not ok:
                raise OSError("OpenCV could not write the 16-bit image")
            Path(str(tmp) + suffix).replace(tmp)
        elif bit_depth == 16:
            Image.fromarray(data).save(tmp, format="PNG" if suffix == ".png" else "TIFF")
        else:
            fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF",
                   ".tiff": "TIFF", ".bmp": "BMP"}[suffix]
            Image.fromarray(data).save(tmp, format=fmt)
    return p
