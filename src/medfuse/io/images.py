"""Ordinary image files (PNG, JPEG, TIFF, BMP) in and out.

Pixels are read as float32 in [0, 1], grey (H, W) or RGB (H, W, 3), whatever the file's
mode or bit depth, and handed on as a one-slice :class:`~medfuse.io.volume.Volume`, so
nothing downstream cares how a file was stored. Every decoder is guarded by the same pixel
limit, checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medfuse.errors import InputError, UsageError
from medfuse.io.layout import IMAGE_SUFFIXES
from medfuse.io.outputs import atomic_output

if TYPE_CHECKING:
    from medfuse.io.volume import Volume

#: Largest channel spread (in 8-bit levels) for which an RGB file still counts as grey.
#: Lossless files of grey content have spread 0; JPEG's chroma subsampling adds 1-2 levels.
GREY_TOLERANCE = 2 / 255
#: Largest image medfuse decodes (width x height): 8192 x 8192 (64 megapixels). The header is checked
#: before decoding, so a small file declaring a huge image is refused at once.
MAX_PIXELS = 8192 * 8192
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
        # float64: a float32 range near +-3e38 overflows when its span is taken.
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise InputError(f"{path}: image holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return scaled.astype(np.float32), 32
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


def _png_header(path: Path) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG's IHDR, None if not a PNG."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(29)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width = int.from_bytes(head[16:20], "big")
    height = int.from_bytes(head[20:24], "big")
    return width, height, head[24], head[25]


#: Legal bit depths per PNG colour type (PNG spec, table 11.1) and samples per pixel.
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def _png_data_size(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """Bytes the decompressed IDAT stream of a PNG with this header holds (filter bytes
    included)."""
    bits = _PNG_CHANNELS[colour] * depth
    if not interlace:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        cols = (width - x0 + dx - 1) // dx if width > x0 else 0
        rows = (height - y0 + dy - 1) // dy if height > y0 else 0
        if cols and rows:
            total += rows * (1 + (cols * bits + 7) // 8)
    return total


def _check_png(path: Path) -> None:
    """Walk a PNG's chunks before decoding it and refuse what Pillow would decode silently
    wrong: a chunk whose CRC does not match (a flipped bit), a chunk cut short, an IHDR with
    illegal values, a palette image without PLTE, and image data whose length is not what
    IHDR declares (a header that lies about the size). Pillow checks none of these for the
    image data, and fills what is missing with black."""
    import zlib

    def bad(reason: str) -> InputError:
        return InputError(f"{path}: corrupt PNG ({reason})")

    with open(path, "rb") as fh:
        if fh.read(8) != PNG_SIGNATURE:
            return  # not a PNG after all: Pillow says what it is
        header: tuple[int, ...] | None = None
        palette = False
        inflate = zlib.decompressobj()
        produced = expected = 0
        seen_idat = ended_idat = False
        broken = ""
        while True:
            head = fh.read(8)
            if not head:
                break  # end of file on a chunk boundary: IEND missing, data judged below
            if len(head) < 8:
                raise bad("file cut short inside a chunk header")
            length = int.from_bytes(head[:4], "big")
            kind = head[4:8]
            if length > 0x7FFFFFFF or not kind.isalpha():
                raise bad(f"invalid chunk at byte {fh.tell() - 8}")
            crc = zlib.crc32(kind)
            left, data = length, bytearray() if kind in (b"IHDR", b"PLTE") else None
            while left:
                block = fh.read(min(left, 1 << 20))
                if not block:
                    raise bad(f"file cut short inside the {kind.decode('latin-1')} chunk")
                crc = zlib.crc32(block, crc)
                left -= len(block)
                if data is not None:
                    data += block
                if kind == b"IDAT" and header is not None and not broken:
                    try:
                        produced += len(inflate.decompress(block, 1 << 20))
                        while inflate.unconsumed_tail and produced <= expected:
                            produced += len(inflate.decompress(inflate.unconsumed_tail, 1 << 20))
                    except zlib.error as exc:
                        broken = f"image data does not decompress ({exc})"
                    if produced > expected:
                        broken = (f"more image data than the {header[0]}x{header[1]} pixels "
                                  "its header declares")
            stored = fh.read(4)
            if len(stored) < 4:
                raise bad(f"file cut short inside the {kind.decode('latin-1')} chunk")
            if int.from_bytes(stored, "big") != crc & 0xFFFFFFFF:
                raise bad(f"CRC mismatch in the {kind.decode('latin-1')} chunk: the file is "
                          "damaged")
            if broken:  # reported once the chunk's CRC has been checked (a CRC says more)
                raise bad(broken)
            if kind == b"IHDR":
                if header is not None or length != 13:
                    raise bad("invalid IHDR chunk")
                width, height = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
                depth, colour, method, filt, interlace = data[8], data[9], data[10], data[11], data[12]
                if depth not in _PNG_DEPTHS.get(colour, ()):
                    raise bad(f"bit depth {depth} with colour type {colour}")
                if method or filt or interlace not in (0, 1):
                    raise bad("unknown compression, filter or interlace method")
                _check_size(path, width, height)
                header = (width, height, depth, colour, interlace)
                expected = _png_data_size(*header)
            elif header is None:
                raise bad("the first chunk is not IHDR")
            elif kind == b"PLTE":
                palette = True
            elif kind == b"IDAT":
                if ended_idat:
                    raise bad("image data chunks are not consecutive")
                if header[3] == 3 and not palette:
                    raise bad("palette image without a palette")
                seen_idat = True
            elif kind == b"IEND":
                break
            if seen_idat and kind != b"IDAT":
                ended_idat = True
    if header is None or not seen_idat:
        raise bad("no image data")
    if not inflate.eof:
        raise bad("image data cut short")
    if produced != expected:
        raise bad(f"{produced} bytes of image data where its {header[0]}x{header[1]} header "
                  f"declares {expected}")


def _check_tiff_strips(img: object, path: Path) -> None:
    """Refuse a TIFF whose strips or tiles lie beyond the end of the file, or (uncompressed)
    hold fewer bytes than the image size its tags declare: Pillow would read whatever
    follows in the file (the directory, other pages) as pixels, without a word."""
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return
    offsets = tags.get(273) or tags.get(324)  # StripOffsets or TileOffsets
    counts = tags.get(279) or tags.get(325)  # StripByteCounts or TileByteCounts
    if not offsets or not counts:
        return
    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
    counts = counts if isinstance(counts, tuple) else (counts,)
    size = path.stat().st_size
    if any(int(o) + int(c) > size for o, c in zip(offsets, counts)):
        raise InputError(f"{path}: corrupt TIFF (image data beyond the end of the file: "
                         "truncated, or the tags lie)")
    if int(tags.get(259, 1)) != 1 or 273 not in tags:  # compressed or tiled: the codec checks
        return
    bits = tags.get(258, 1)
    bits = sum(bits) if isinstance(bits, tuple) else int(bits)
    width, height = img.size  # type: ignore[attr-defined]
    planes = int(tags.get(277, 1)) if int(tags.get(284, 1)) == 2 else 1
    per_plane = bits // planes if planes > 1 else bits
    needed = planes * height * ((width * per_plane + 7) // 8)
    if sum(int(c) for c in counts) < needed:
        raise InputError(f"{path}: corrupt TIFF ({sum(int(c) for c in counts)} bytes of image "
                         f"data where its {width}x{height} tags declare {needed})")


def _check_size(path: Path, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{path}: image header declares {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{path}: image header declares {width}x{height} pixels, more than medfuse "
            f"reads ({MAX_PIXELS // 2**20} megapixels)"
        )


@contextlib.contextmanager
def _c_stderr() -> Iterator[list[str]]:
    """Divert what C decoders print on file descriptor 2 (libtiff's "Using code not yet in
    table", OpenCV's and libpng's warnings) while a file is decoded, so that a bad file
    costs one error line, not several lines of library chatter. The text is yielded (filled
    in on exit) for the error message. Not meant for threads that write to stderr meanwhile."""
    captured: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to divert
        yield captured
        return
    try:
        with tempfile.TemporaryFile() as tmp:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved, 2)
                tmp.seek(0)
                text = tmp.read(4096).decode("utf-8", "replace")
                captured.extend(ln.strip() for ln in text.splitlines() if ln.strip())
    finally:
        os.close(saved)


def _read_16bit_colour(path: Path) -> np.ndarray:
    import cv2

    with _c_stderr() as noise:
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3:
        detail = f" ({noise[0]})" if noise else ""
        raise InputError(f"{path}: cannot decode 16-bit colour PNG{detail}")
    rgb = data[..., 2::-1].astype(np.float32) / 65535.0
    if data.shape[-1] == 4:
        rgb = rgb * (data[..., 3:4].astype(np.float32) / 65535.0)
    return rgb


def read_pixels(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an image file to float32 [0, 1] (grey-looking RGB becomes grey) and its bit
    depth. Readers above this use :func:`read_image`; this is for code that needs the bare
    array, such as scoring already fused images."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such file: {p}")
    if p.is_dir():
        raise UsageError(f"expected an image file, got a folder: {p}")
    noise: list[str] = []
    try:
        png = _png_header(p)
        if png is not None:
            _check_size(p, png[0], png[1])
            _check_png(p)
        if png is not None and png[2] == 16 and png[3] in (2, 6):
            # Pillow reads 16-bit colour PNG as 8-bit; OpenCV keeps the precision.
            arr, depth = _read_16bit_colour(p), 16
        else:
            with _c_stderr() as noise, warnings.catch_warnings():
                # Pillow only warns about images between its limit and twice that; every
                # such image is beyond MAX_PIXELS anyway, so the warning is a refusal.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(p) as img:
                    _check_size(p, *img.size)
                    if img.format == "TIFF":
                        _check_tiff_strips(img, p)
                    img.load()
                    arr, depth = _pil_to_array(img, p)
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        if not isinstance(exc, UnidentifiedImageError):
            raise InputError(f"{p}: image header declares more pixels than medfuse reads "
                             f"({MAX_PIXELS // 2**20} megapixels)") from exc
        raise InputError(f"{p}: not an image file medfuse can read") from exc
    except (OSError, SyntaxError, ValueError, IndexError, EOFError, MemoryError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else "corrupt data"
        extra = f"; {noise[0]}" if noise else ""
        raise InputError(f"{p}: cannot decode image ({type(exc).__name__}: {first}{extra})"
                         ) from exc
    if arr.ndim == 3:
        arr = as_grey_if_grey(arr)
    return np.ascontiguousarray(arr, dtype=np.float32), depth


def read_image(path: str | Path) -> Volume:
    """Read a PNG/JPEG/TIFF/BMP file as a one-slice volume (float32 in [0, 1])."""
    from medfuse.io.volume import image_volume

    pixels, depth = read_pixels(path)
    return image_volume(pixels, Path(path), bit_depth=depth)


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

            with _c_stderr() as noise:  # libpng reports a failed write on stderr itself
                ok = cv2.imwrite(str(tmp) + suffix, np.ascontiguousarray(data[..., ::-1]))
            if not ok:
                detail = f" ({noise[0]})" if noise else ""
                raise OSError(f"OpenCV could not write the 16-bit image{detail}")
            Path(str(tmp) + suffix).replace(tmp)
        elif bit_depth == 16:
            Image.fromarray(data).save(tmp, format="PNG" if suffix == ".png" else "TIFF")
        else:
            fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF",
                   ".tiff": "TIFF", ".bmp": "BMP"}[suffix]
            Image.fromarray(data).save(tmp, format=fmt)
    return p
