"""Family 3 and 4: headers that lie (PNG/TIFF/BMP/JPEG sizes and modes, NIfTI dims and
datatypes, DICOM Rows/Columns/BitsAllocated/NumberOfFrames...), and extreme sizes and
decompression bombs in every reader: a file of a few hundred bytes declaring gigapixels is
refused from its header, before anything is allocated (each bomb runs under an address-
space cap, so a reader that believed it would fail the test rather than the machine).

A lie is refused (exit 1) whenever the data contradicts it; a few lies no reader can see are
accepted and fused as the data decodes (marked ``0`` below, see docs/reliability.md).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from helpers import hostile_files as hf
from helpers.hostile_cli import Box, invoke, memory_guard
from medfuse.io.layout import IMAGE_SUFFIXES

Case = tuple[str, Callable[[], bytes], str, int, str | None]  # id, bytes, suffix, exit, match


def _png() -> bytes:
    return hf.image_bytes("png")


def _jpg() -> bytes:
    return hf.image_bytes("jpeg")


def _bmp() -> bytes:
    return hf.image_bytes("bmp")


def _nii() -> bytes:
    return hf.nifti_bytes()


def _e(**fields: Any) -> Callable[[], bytes]:
    return lambda: hf.nifti_edit(_nii(), **fields)


def _d(**attrs: Any) -> Callable[[], bytes]:
    def edit(ds: Any) -> None:
        for k, v in attrs.items():
            if v is None:
                delattr(ds, k)
            else:
                setattr(ds, k, v)

    return lambda: hf.dicom_bytes(edit)


NAN, INF = float("nan"), float("inf")
BIG = "more than medfuse reads"

LIES: list[Case] = [
    # PNG: IHDR (CRC recomputed, so only the data can tell)
    ("png-0x0", lambda: hf.png_set_size(_png(), 0, 0), ".png", 1, "0x0"),
    ("png-0x64", lambda: hf.png_set_size(_png(), 0, 64), ".png", 1, None),
    ("png-64x0", lambda: hf.png_set_size(_png(), 64, 0), ".png", 1, None),
    ("png-taller", lambda: hf.png_set_size(_png(), 64, 65), ".png", 1, "corrupt PNG"),
    ("png-shorter", lambda: hf.png_set_size(_png(), 64, 63), ".png", 1, "corrupt PNG"),
    ("png-wider", lambda: hf.png_set_size(_png(), 65, 64), ".png", 1, "corrupt PNG"),
    ("png-narrower", lambda: hf.png_set_size(_png(), 63, 64), ".png", 1, "corrupt PNG"),
    ("png-double", lambda: hf.png_set_size(_png(), 128, 128), ".png", 1, "corrupt PNG"),
    ("png-stale-crc", lambda: hf.png_set_size(_png(), 128, 128, fix_crc=False), ".png", 1, "CRC"),
    ("png-depth-16", lambda: hf.png_set_ihdr_byte(_png(), 8, 16), ".png", 1, "corrupt PNG"),
    ("png-depth-3", lambda: hf.png_set_ihdr_byte(_png(), 8, 3), ".png", 1, "bit depth"),
    ("png-depth-0", lambda: hf.png_set_ihdr_byte(_png(), 8, 0), ".png", 1, "bit depth"),
    ("png-palette-missing", lambda: hf.png_set_ihdr_byte(_png(), 9, 3), ".png", 1, "palette"),
    ("png-colour-5", lambda: hf.png_set_ihdr_byte(_png(), 9, 5), ".png", 1, None),
    ("png-colour-rgb", lambda: hf.png_set_ihdr_byte(_png(), 9, 2), ".png", 1, None),
    ("png-compression-1", lambda: hf.png_set_ihdr_byte(_png(), 10, 1), ".png", 1, "method"),
    ("png-filter-1", lambda: hf.png_set_ihdr_byte(_png(), 11, 1), ".png", 1, "method"),
    ("png-interlace-1", lambda: hf.png_set_ihdr_byte(_png(), 12, 1), ".png", 1, "corrupt PNG"),
    ("png-interlace-2", lambda: hf.png_set_ihdr_byte(_png(), 12, 2), ".png", 1, "method"),
    ("png-no-idat", lambda: _png()[:33] + hf._chunk(b"IEND", b""), ".png", 1, "no image data"),
    ("png-chunk-length", lambda: _png()[:33] + b"\xff\xff\xff\xffIDAT" + _png()[41:], ".png", 1,
     "corrupt PNG"),
    # JPEG: SOF size (no checksum: a decodable lie is fused as decoded)
    ("jpeg-0x64", lambda: hf.jpeg_set_size(_jpg(), 0, 64), ".jpg", 1, None),
    ("jpeg-64x0", lambda: hf.jpeg_set_size(_jpg(), 64, 0), ".jpg", 1, None),
    ("jpeg-larger", lambda: hf.jpeg_set_size(_jpg(), 128, 128), ".jpg", 0, None),
    ("jpeg-smaller", lambda: hf.jpeg_set_size(_jpg(), 32, 32), ".jpg", 0, None),
    # TIFF: tags written by hand
    ("tiff-taller", lambda: hf.tiff_raw(64, 65, b"\x40" * 4096), ".tif", 1, "corrupt TIFF"),
    ("tiff-strip-short", lambda: hf.tiff_raw(64, 64, b"\x40" * 4096, strip_bytes=100), ".tif",
     1, "corrupt TIFF"),
    ("tiff-strip-long", lambda: hf.tiff_raw(64, 64, b"\x40" * 4096, strip_bytes=1 << 31),
     ".tif", 1, "end of the file"),
    ("tiff-0x0", lambda: hf.tiff_raw(0, 0, b"\x00" * 16), ".tif", 1, None),
    ("tiff-bits-0", lambda: hf.tiff_raw(64, 64, b"\x40" * 4096, bits=0), ".tif", 1, None),
    ("tiff-bits-12", lambda: hf.tiff_raw(64, 64, b"\x40" * 4096, bits=12), ".tif", 1, None),
    ("tiff-bits-64", lambda: hf.tiff_raw(64, 64, b"\x40" * 4096, bits=64, sample_format=3),
     ".tif", 1, None),
    ("tiff-complex", lambda: hf.tiff_raw(64, 64, b"\x40" * 4096, bits=32, sample_format=6),
     ".tif", 1, None),
    ("tiff-compression-99", lambda: hf.tiff_raw(64, 64, b"\x40" * 4096, compression=99),
     ".tif", 1, None),
    ("tiff-lzw-garbage", lambda: hf.tiff_raw(64, 64, b"\x40" * 4096, compression=5), ".tif", 1,
     None),
    ("tiff-deflate-garbage", lambda: hf.tiff_raw(64, 64, b"\x40" * 4096, compression=8),
     ".tif", 1, None),
    ("tiff-samples-5", lambda: hf.tiff_raw(64, 64, b"\x40" * 20480, samples=5), ".tif", 1, None),
    ("tiff-photometric-9", lambda: hf.tiff_raw(64, 64, b"\x40" * 4096, photometric=9), ".tif",
     1, None),
    # BMP: BITMAPINFOHEADER
    ("bmp-0x64", lambda: hf.bmp_set_size(_bmp(), 0, 64), ".bmp", 1, None),
    ("bmp-64x0", lambda: hf.bmp_set_size(_bmp(), 64, 0), ".bmp", 1, None),
    ("bmp-negative-width", lambda: hf.bmp_set_size(_bmp(), -64, 64), ".bmp", 1, None),
    ("bmp-top-down", lambda: hf.bmp_set_size(_bmp(), 64, -64), ".bmp", 0, None),
    ("bmp-double", lambda: hf.bmp_set_size(_bmp(), 128, 128), ".bmp", 1, "truncated"),
    ("bmp-bits-0", lambda: hf.bmp_set_bits(_bmp(), 0), ".bmp", 1, None),
    ("bmp-bits-7", lambda: hf.bmp_set_bits(_bmp(), 7), ".bmp", 1, None),
    ("bmp-bits-64", lambda: hf.bmp_set_bits(_bmp(), 64), ".bmp", 1, None),
    ("bmp-bits-2", lambda: hf.bmp_set_bits(_bmp(), 2), ".bmp", 1, None),
    ("bmp-bits-4", lambda: hf.bmp_set_bits(_bmp(), 4), ".bmp", 0, None),
    # NIfTI: dims, datatype, offsets, header size and magic
    ("nii-dim-more", _e(dim=(3, 32, 32, 8, 1, 1, 1, 1)), ".nii", 1, "header declares"),
    ("nii-dim-less", _e(dim=(3, 32, 32, 2, 1, 1, 1, 1)), ".nii", 0, None),
    ("nii-dim-zero", _e(dim=(3, 32, 0, 4, 1, 1, 1, 1)), ".nii", 1, None),
    ("nii-dim-negative", _e(dim=(3, 32, -32, 4, 1, 1, 1, 1)), ".nii", 1, None),
    ("nii-ndim-0", _e(dim=(0, 32, 32, 4, 1, 1, 1, 1)), ".nii", 1, None),
    ("nii-ndim-8", _e(dim=(8, 32, 32, 4, 1, 1, 1, 1)), ".nii", 1, None),
    ("nii-ndim-negative", _e(dim=(-1, 32, 32, 4, 1, 1, 1, 1)), ".nii", 1, None),
    ("nii-5d", _e(dim=(5, 32, 32, 4, 1, 2, 1, 1)), ".nii", 1, None),
    ("nii-7d", _e(dim=(7, 32, 32, 4, 1, 1, 1, 1)), ".nii", 1, None),
    ("nii-datatype-unknown", _e(datatype=9999), ".nii", 1, None),
    ("nii-datatype-complex", _e(datatype=32, bitpix=64), ".nii", 1, None),
    ("nii-datatype-float64", _e(datatype=64, bitpix=64), ".nii", 1, "header declares"),
    ("nii-datatype-rgb", _e(datatype=128, bitpix=24), ".nii", 1, None),
    ("nii-datatype-binary", _e(datatype=1, bitpix=1), ".nii", 1, None),
    ("nii-bitpix-lie", _e(bitpix=8), ".nii", 0, None),
    ("nii-vox-offset-past-end", _e(vox_offset=8000.0), ".nii", 1, "header declares"),
    ("nii-vox-offset-huge", _e(vox_offset=3e9), ".nii", 1, "header declares"),
    ("nii-vox-offset-negative", _e(vox_offset=-100.0), ".nii", 1, None),
    ("nii-vox-offset-nan", _e(vox_offset=NAN), ".nii", 1, None),
    ("nii-sizeof-hdr", _e(sizeof_hdr=540), ".nii", 0, None),
    ("nii-magic", _e(magic=b"xx1\x00"), ".nii", 1, None),
    ("nii-magic-nifti2", _e(magic=b"n+2\x00"), ".nii", 1, None),
    ("niigz-dim-more", lambda: hf.nifti_edit(_nii(), gz=True, dim=(3, 32, 32, 8, 1, 1, 1, 1)),
     ".nii.gz", 1, "header declares"),
    ("niigz-datatype-float64", lambda: hf.nifti_edit(_nii(), gz=True, datatype=64, bitpix=64),
     ".nii.gz", 1, "header declares"),
    ("niigz-crc", lambda: hf.gzip_corrupt_crc(hf.nifti_bytes(gz=True)), ".nii.gz", 1, "CRC"),
    ("niigz-length", lambda: hf.gzip_corrupt_length(hf.nifti_bytes(gz=True)), ".nii.gz", 1,
     "gzip"),
    ("niigz-trailing-garbage", lambda: hf.nifti_bytes(gz=True) + b"garbage", ".nii.gz", 1,
     "gzip"),
    ("niigz-runs-on", lambda: __import__("gzip").compress(_nii() + b"\x00" * (3 << 20), mtime=0),
     ".nii.gz", 1, "more than"),
    # DICOM: image pixel module
    ("dcm-rows-more", _d(Rows=65), ".dcm", 1, "less than expected"),
    ("dcm-rows-zero", _d(Rows=0), ".dcm", 1, None),
    ("dcm-columns-zero", _d(Columns=0), ".dcm", 1, None),
    ("dcm-rows-missing", _d(Rows=None), ".dcm", 1, None),
    ("dcm-bits-12", _d(BitsAllocated=12), ".dcm", 1, "Bits Allocated"),
    ("dcm-bits-0", _d(BitsAllocated=0), ".dcm", 1, None),
    ("dcm-bits-8", _d(BitsAllocated=8), ".dcm", 1, None),
    ("dcm-bits-32", _d(BitsAllocated=32), ".dcm", 1, None),
    ("dcm-bits-64", _d(BitsAllocated=64), ".dcm", 1, None),
    ("dcm-bits-1", _d(BitsAllocated=1), ".dcm", 1, None),
    ("dcm-bits-stored-20", _d(BitsStored=20), ".dcm", 1, None),
    ("dcm-pixel-representation-2", _d(PixelRepresentation=2), ".dcm", 1, None),
    ("dcm-frames-2", _d(NumberOfFrames=2), ".dcm", 1, None),
    ("dcm-frames-negative", _d(NumberOfFrames=-3), ".dcm", 1, None),
    ("dcm-frames-fraction", _d(NumberOfFrames="1.5"), ".dcm", 1, None),
    ("dcm-samples-3", _d(SamplesPerPixel=3), ".dcm", 1, None),
    ("dcm-samples-0", _d(SamplesPerPixel=0), ".dcm", 1, None),
    ("dcm-samples-4", _d(SamplesPerPixel=4), ".dcm", 1, None),
    ("dcm-photometric-unknown", _d(PhotometricInterpretation="BOGUS"), ".dcm", 1, None),
    ("dcm-palette-without-lut", _d(PhotometricInterpretation="PALETTE COLOR"), ".dcm", 1,
     None),
    ("dcm-ybr-16-bit", _d(PhotometricInterpretation="YBR_FULL"), ".dcm", 1, None),
    ("dcm-pixel-data-missing", _d(PixelData=None), ".dcm", 1, "no pixel data"),
    ("dcm-pixel-data-empty", _d(PixelData=b""), ".dcm", 1, "empty"),
    ("dcm-pixel-data-double", _d(PixelData=b"\x00" * 16384), ".dcm", 1, None),
    ("dcm-transfer-syntax-invalid",
     lambda: hf.dicom_bytes(lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4.5.6")),
     ".dcm", 1, "Transfer Syntax"),
    ("dcm-transfer-syntax-garbage",
     lambda: hf.dicom_bytes(lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "not-a-uid")),
     ".dcm", 1, "Transfer Syntax"),
    ("dcm-frames-lie-more", lambda: hf.dicom_multiframe_bytes(4, declared=8), ".dcm", 1, None),
    ("dcm-frames-zero", _d(NumberOfFrames=0), ".dcm", 0, None),
    ("dcm-rows-less", _d(Rows=63), ".dcm", 0, None),
    ("dcm-high-bit-40", _d(HighBit=40), ".dcm", 0, None),
]


def _output(suffix: str) -> str:
    return "fused.nii.gz" if suffix.startswith(".nii") else "fused.png"


@pytest.mark.parametrize(("data", "suffix", "code", "match"),
                         [pytest.param(*c[1:], id=c[0]) for c in LIES])
def test_header_that_lies(box: Box, data: Callable[[], bytes], suffix: str, code: int,
                          match: str | None) -> None:
    """The lying file is both inputs (a NIfTI) or beside a partner image of the size it is
    read at, so an accepted lie meets a partner of its own size."""
    bad = box.put(f"bad{suffix}", data())
    out = box.out / _output(suffix)
    partner = box.partner(bad) if suffix in IMAGE_SUFFIXES else bad
    box.snap()
    res = invoke("fuse", bad, partner, "-o", out, "--modality", "ct")
    if code:
        box.refused(res, code, match, absent=(box.out,))
    else:
        box.accepted(res, (out,))


@pytest.mark.parametrize("case", ["png-taller", "nii-dim-more", "dcm-rows-more", "tiff-taller"])
def test_lying_second_input_is_named(box: Box, case: str) -> None:
    _, data, suffix, code, _ = next(c for c in LIES if c[0] == case)
    good = {".png": _png, ".nii": _nii, ".dcm": lambda: hf.dicom_bytes(),
            ".tif": lambda: hf.image_bytes("tiff")}[suffix]()
    mri = box.put(f"good{suffix}", good)
    bad = box.put(f"liar{suffix}", data())
    box.snap()
    line = box.refused(invoke("fuse", mri, bad, "-o", box.out / _output(suffix)), code,
                       absent=(box.out,))
    assert "liar" in line


# -- extreme sizes and decompression bombs --------------------------------------------------

BOMBS: list[tuple[str, Callable[[], bytes], str]] = [
    ("png-8193x8193", lambda: hf.png_raw(8193, 8193), ".png"),
    ("png-100k-square", lambda: hf.png_raw(100000, 100000), ".png"),
    ("png-2^31-square", lambda: hf.png_raw(2**31 - 1, 2**31 - 1), ".png"),
    ("png-4G-wide", lambda: hf.png_raw(2**32 - 1, 1), ".png"),
    ("png-30k-rgba16", lambda: hf.png_raw(30000, 30000, 16, 6), ".png"),
    ("jpeg-65535-square", lambda: hf.jpeg_set_size(_jpg(), 65535, 65535), ".jpg"),
    ("jpeg-9000-square", lambda: hf.jpeg_set_size(_jpg(), 9000, 9000), ".jpg"),
    ("tiff-100k-square", lambda: hf.tiff_raw(100000, 100000, b"\x00" * 4096), ".tif"),
    ("tiff-9000-square", lambda: hf.tiff_raw(9000, 9000, b"\x00" * 4096), ".tif"),
    ("tiff-10000-square", lambda: hf.tiff_raw(10000, 10000, b"\x00" * 4096), ".tif"),
    ("tiff-4G-wide", lambda: hf.tiff_raw(2**32 - 1, 2, b"\x00" * 4096), ".tif"),
    ("bmp-100k-square", lambda: hf.bmp_set_size(_bmp(), 100000, 100000), ".bmp"),
    ("bmp-2^31-square", lambda: hf.bmp_set_size(_bmp(), 2**31 - 1, 2**31 - 1), ".bmp"),
    ("bmp-9000-square", lambda: hf.bmp_set_size(_bmp(), 9000, 9000), ".bmp"),
    ("bmp-2^31-tall-top-down", lambda: hf.bmp_set_size(_bmp(), 64, -(2**31)), ".bmp"),
    ("nii-32767-cube", _e(dim=(3, 32767, 32767, 32767, 1, 1, 1, 1)), ".nii"),
    ("nii-1000-cube", _e(dim=(3, 1000, 1000, 1000, 1, 1, 1, 1)), ".nii"),
    ("nii-4d-32767", _e(dim=(4, 32, 32, 4, 32767, 1, 1, 1)), ".nii"),
    ("nii-1000-cube-float64",
     lambda: hf.nifti_edit(hf.nifti_bytes(hf.nifti_volume((4, 4, 4)))[:352] + b"\x00" * 4096,
                           dim=(3, 1000, 1000, 1000, 1, 1, 1, 1), datatype=64, bitpix=64), ".nii"),
    ("niigz-1000-cube-float64", lambda: hf.gzip_bomb_nifti((1000, 1000, 1000)), ".nii.gz"),
    ("niigz-1000-cube-uint8", lambda: hf.gzip_bomb_nifti((1000, 1000, 1000), 2, 8), ".nii.gz"),
    ("niigz-32767-cube", lambda: hf.gzip_bomb_nifti((32767, 32767, 32767)), ".nii.gz"),
    ("dcm-65535-square", _d(Rows=65535, Columns=65535), ".dcm"),
    ("dcm-30000-square", _d(Rows=30000, Columns=30000), ".dcm"),
    ("dcm-2^31-frames", _d(NumberOfFrames=2**31 - 1), ".dcm"),
    ("dcm-100k-frames", lambda: hf.dicom_multiframe_bytes(2, declared=100000), ".dcm"),
    ("dcm-rgb-20000-square", _d(Rows=20000, Columns=20000, SamplesPerPixel=3,
                                PhotometricInterpretation="RGB", PlanarConfiguration=0,
                                BitsAllocated=8, BitsStored=8, HighBit=7,
                                PixelRepresentation=0), ".dcm"),
]


@pytest.mark.parametrize(("data", "suffix"), [pytest.param(*b[1:], id=b[0]) for b in BOMBS])
def test_bomb_is_refused_from_its_header(box: Box, data: Callable[[], bytes], suffix: str) -> None:
    bomb = box.put(f"bomb{suffix}", data())
    assert bomb.stat().st_size < 1 << 20
    box.snap()
    with memory_guard():
        res = invoke("fuse", bomb, bomb, "-o", box.out / _output(suffix))
    line = box.refused(res, 1, absent=(box.out,))
    assert "MemoryError" not in line and "allocate" not in line.lower(), line
    assert any(w in line for w in ("declares", "larger", "more than", "less than expected")), line


@pytest.mark.parametrize("n", [2, 4])
def test_series_of_bombs_is_refused(box: Box, n: int) -> None:
    def edit(ds: Any, k: int) -> None:
        ds.Rows, ds.Columns = 60000, 60000

    mri = hf.dicom_series(box.inp / "mri", n, edit)
    box.snap()
    with memory_guard():
        res = invoke("fuse", mri, mri, "-o", box.out / "f.nii.gz", "--modality", "ct")
    box.refused(res, 1, "more than medfuse reads", absent=(box.out,))


SMALL: list[tuple[str, int, int, int]] = [  # id, width, height, exit
    ("1x1", 1, 1, 1), ("7x7", 7, 7, 1), ("1x64", 1, 64, 1), ("64x1", 64, 1, 1), ("8x7", 8, 7, 1),
    ("8x8", 8, 8, 0), ("8x2000", 8, 2000, 0), ("2000x8", 2000, 8, 0),
]


@pytest.mark.parametrize(("w", "h", "code"), [pytest.param(*s[1:], id=s[0]) for s in SMALL])
def test_extreme_image_sizes(box: Box, w: int, h: int, code: int) -> None:
    """Below 8x8 the network has nothing to work on: refused with one line; thin strips at
    the limit are fused."""
    rows = bytes(np.tile(np.concatenate([[0], (np.arange(w) * 7) % 256]).astype(np.uint8), h))
    img = box.put("tiny.png", hf.png_raw(w, h, rows=rows))
    out = box.out / "f.png"
    partner = box.partner(img)
    box.snap()
    res = invoke("fuse", img, partner, "-o", out)
    if code:
        box.refused(res, code, "8x8", absent=(box.out,))
    else:
        box.accepted(res, (out,))


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 64, 64), (64, 1, 64), (3, 3, 40), (9, 9, 1)])
def test_extreme_volume_shapes(box: Box, shape: tuple[int, int, int]) -> None:
    """Volumes thinner than the network's 8x8 minimum in the slicing plane are refused;
    single slices along any axis are read as 2D images."""
    vol = box.put("v.nii", hf.nifti_bytes(hf.nifti_volume(shape)))
    out = box.out / "f.nii.gz"
    box.snap()
    res = invoke("fuse", vol, vol, "-o", out, "--modality", "ct")
    thin = sorted(shape)[1] < 8 if 1 in shape else min(shape[:2]) < 8
    if thin:
        box.refused(res, 1, absent=(box.out,))
    else:
        box.accepted(res, (out,))


def test_struct_helpers_are_consistent() -> None:
    """The byte builders write what they say (a guard for this suite itself)."""
    png = hf.png_set_size(_png(), 300, 200)
    assert struct.unpack(">II", png[16:24]) == (300, 200)
    nii = hf.nifti_edit(_nii(), dim=(3, 5, 6, 7, 1, 1, 1, 1))
    assert struct.unpack("<8h", nii[40:56])[:4] == (3, 5, 6, 7)
    assert hf.pixel_data_offset(hf.dicom_bytes()) > 0
