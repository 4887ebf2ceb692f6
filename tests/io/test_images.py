"""medfuse.io.images: any ordinary image mode to float32 [0, 1], the pixel limit, writing."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.synth import rng_image
from medfuse.errors import InputError, UsageError
from medfuse.io.images import (
    MAX_PIXELS,
    as_grey_if_grey,
    read_image,
    read_pixels,
    to_uint,
    write_image,
)


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (no real data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body + b"\0" * 32)
    return path


@pytest.mark.parametrize(
    "mode,suffix",
    [("L", ".png"), ("RGB", ".png"), ("RGBA", ".png"), ("P", ".png"), ("I;16", ".png"),
     ("L", ".jpg"), ("RGB", ".tif"), ("L", ".bmp")],
)
def test_read_modes(tmp_path: Path, mode: str, suffix: str) -> None:
    base = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 4).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray(base.astype(np.uint16) * 257)
    elif mode == "RGB":
        img = Image.fromarray(np.stack([base] * 3, -1))
    elif mode == "RGBA":
        img = Image.fromarray(np.stack([base] * 3 + [np.full_like(base, 255)], -1))
    elif mode == "P":
        img = Image.new("P", (8, 8))
        img.putpalette([v for i in range(256) for v in (i, i, i)])
        img.putdata(base.ravel().tolist())
    else:
        img = Image.fromarray(base)
    p = tmp_path / f"x{suffix}"
    img.save(p)
    pixels, depth = read_pixels(p)
    assert pixels.dtype == np.float32 and pixels.ndim == 2  # grey content stays grey
    assert 0 <= pixels.min() and pixels.max() <= 1
    if mode == "I;16":
        assert depth == 16
        np.testing.assert_allclose(pixels, base / 255.0, atol=1e-6)
    else:
        assert depth == 8


def test_colour_and_transparency(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    pixels, _ = read_pixels(tmp_path / "a.png")
    assert pixels.shape == (8, 8, 3)
    np.testing.assert_allclose(pixels[:4, :, 0], 1.0)
    np.testing.assert_allclose(pixels[4:], 0.0)  # transparent: composited over black


def test_16bit_colour_keeps_precision(tmp_path: Path) -> None:
    rgb = rng_image((8, 8, 3), 3)
    p = write_image(tmp_path / "c16.png", rgb, bit_depth=16)
    back, depth = read_pixels(p)
    assert depth == 16 and back.shape == (8, 8, 3)
    assert np.abs(back - rgb).max() <= 0.5 / 65535 + 1e-7


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_pixels(tmp_path / "missing.png")
    with pytest.raises(UsageError, match="folder"):
        read_pixels(tmp_path)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(InputError, match="not an image"):
        read_pixels(junk)


def test_truncated_png(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.png", rng_image((32, 32)))
    for n in (10, 60):
        cut = tmp_path / f"cut{n}.png"
        cut.write_bytes(good.read_bytes()[:n])
        with pytest.raises(InputError, match=str(cut.name)):
            read_pixels(cut)


def test_pixel_limit_checked_from_header(tmp_path: Path) -> None:
    side = int(np.sqrt(MAX_PIXELS)) + 1
    with pytest.raises(InputError, match="megapixels"):
        read_pixels(png_declaring(tmp_path / "huge.png", side, side))
    with pytest.raises(InputError, match="0x5"):
        read_pixels(png_declaring(tmp_path / "empty.png", 0, 5))


def test_float_tiff_with_nan_refused(tmp_path: Path) -> None:
    arr = np.ones((8, 8), np.float32)
    arr[2, 2] = np.nan
    Image.fromarray(arr, mode="F").save(tmp_path / "f.tif")
    with pytest.raises(InputError, match="NaN"):
        read_pixels(tmp_path / "f.tif")


def test_as_grey_if_grey() -> None:
    grey = rng_image((4, 4))
    rgb = np.stack([grey] * 3, -1)
    np.testing.assert_array_equal(as_grey_if_grey(rgb), grey)
    noisy = rgb.copy()
    noisy[..., 1] += 1 / 255  # JPEG-like chroma noise: still grey (the channel mean)
    np.testing.assert_allclose(as_grey_if_grey(noisy), rgb.mean(-1) + 1 / 765, atol=1e-6)
    colour = rgb.copy()
    colour[0, 0, 0] += 0.1
    assert as_grey_if_grey(colour).ndim == 3


def test_to_uint_rounds() -> None:
    np.testing.assert_array_equal(to_uint(np.array([0.0, 0.5 / 255, 0.499 / 255, 1.2, -1.0])),
                                  [0, 1, 0, 255, 0])
    assert to_uint(np.array([1.0]), 16)[0] == 65535
    with pytest.raises(UsageError, match="8 or 16"):
        to_uint(np.zeros(2), 12)


def test_write_16bit_and_atomic(tmp_path: Path) -> None:
    p = write_image(tmp_path / "g.png", rng_image((8, 8)), bit_depth=16)
    assert read_pixels(p)[1] == 16
    with pytest.raises(UsageError, match="exists"):
        write_image(p, rng_image((8, 8)))
    assert [f.name for f in tmp_path.iterdir()] == ["g.png"]  # no temp files left
    with pytest.raises(UsageError, match="16-bit output"):
        write_image(tmp_path / "g.jpg", rng_image((8, 8)), bit_depth=16)
    with pytest.raises(UsageError, match="cannot write"):
        write_image(tmp_path / "g.xyz", rng_image((8, 8)))


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_lossless_round_trip(tmp_path: Path, suffix: str) -> None:
    rgb = np.round(rng_image((8, 8, 3), 4) * 255) / 255
    back, depth = read_pixels(write_image(tmp_path / f"c{suffix}", rgb))
    assert depth == 8
    np.testing.assert_allclose(back, rgb, atol=1e-6)


def test_read_image_is_a_one_slice_volume(tmp_path: Path) -> None:
    rgb = np.round(rng_image((6, 9, 3), 5) * 255) / 255
    vol = read_image(write_image(tmp_path / "c.png", rgb))
    assert vol.format == "image" and vol.is_2d and vol.is_rgb and vol.bit_depth == 8
    assert vol.pixels.shape == (6, 9, 3) and vol.pixels.dtype == np.float32
    np.testing.assert_allclose(vol.pixels, rgb, atol=1e-6)
    assert vol.path == tmp_path / "c.png"
