"""Byte-level builders for the hostile-input suite (tests/hostile): valid files of every
format medfuse reads, and the ways to break them (truncate, corrupt, headers that lie).

Everything is deterministic (fixed content, fixed seeds) and small: a valid file is a few
kilobytes, a "bomb" is a few hundred bytes declaring gigapixels. No tests here.
"""

from __future__ import annotations

import copy
import functools
import gzip
import io
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Side of the ordinary test images (the DICOM template MR_small.dcm is 64x64 too).
SIZE = 64

# ---------------------------------------------------------------------------------- images


def phantom(size: int = SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(grey MRI, RGB PET) float32 in [0, 1]."""
    from medfuse.phantom import brain_phantom

    return brain_phantom(size, seed)


def _pil_bytes(arr: np.ndarray, fmt: str, **kw: Any) -> bytes:
    from PIL import Image

    if arr.dtype != np.uint8 and arr.dtype != np.float32:
        raise ValueError(arr.dtype)
    if arr.dtype == np.float32 and fmt != "TIFF":
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


@functools.lru_cache(maxsize=64)
def image_bytes(fmt: str, colour: bool = False, size: int = SIZE, seed: int = 0) -> bytes:
    """A valid phantom image (grey MRI or colour PET) in ``fmt`` (png, jpeg, tiff, bmp)."""
    mri, pet = phantom(size, seed)
    arr = (np.clip(pet if colour else mri, 0, 1) * 255 + 0.5).astype(np.uint8)
    return _pil_bytes(arr, {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}[fmt])


def float_tiff_bytes(values: np.ndarray) -> bytes:
    """A 32-bit float TIFF (Pillow mode F) holding ``values`` as given (NaN, inf, 3e38...)."""
    return _pil_bytes(np.ascontiguousarray(values, dtype=np.float32), "TIFF")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_raw(width: int, height: int, bit_depth: int = 8, colour_type: int = 0,
            rows: bytes | None = None, idat_rows: int | None = None) -> bytes:
    """A PNG assembled chunk by chunk with correct CRCs, declaring ``width`` x ``height``
    whatever the data: ``rows`` is the raw (filter byte + samples) stream to compress, by
    default ``idat_rows`` (all rows if None, capped at 64) rows of zeros. Used for headers
    that lie and decompression bombs (a tiny file declaring a huge image)."""
    if rows is None:
        channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour_type, 1)
        row_len = 1 + (width * channels * bit_depth + 7) // 8
        n = min(height, 64) if idat_rows is None else idat_rows
        rows = b"\x00" * (row_len * n) if row_len * n < 1 << 22 else b"\x00" * (1 << 22)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(rows, 9)) + _chunk(b"IEND", b""))


def png_set_size(data: bytes, width: int, height: int, fix_crc: bool = True) -> bytes:
    """A PNG whose IHDR declares another size (CRC recomputed unless ``fix_crc`` is False)."""
    assert data[12:16] == b"IHDR"
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width & 0xFFFFFFFF, height & 0xFFFFFFFF)
    crc = zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF if fix_crc else struct.unpack(
        ">I", data[29:33])[0]
    return data[:16] + bytes(ihdr) + struct.pack(">I", crc) + data[33:]


def png_set_ihdr_byte(data: bytes, offset: int, value: int) -> bytes:
    """Set one IHDR byte (8: bit depth, 9: colour type, 10-12: methods), CRC recomputed."""
    ihdr = bytearray(data[16:29])
    ihdr[offset] = value
    crc = zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF
    return data[:16] + bytes(ihdr) + struct.pack(">I", crc) + data[33:]


def jpeg_set_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose SOF marker declares another size."""
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        i = data.find(marker)
        if i >= 0:
            b = bytearray(data)
            b[i + 5 : i + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
            return bytes(b)
    raise ValueError("no SOF marker")


def tiff_raw(width: int, height: int, pixels: bytes | None = None, bits: int = 8,
             samples: int = 1, sample_format: int = 1, photometric: int | None = None,
             compression: int = 1, strip_bytes: int | None = None) -> bytes:
    """A little-endian baseline TIFF with one strip, written by hand so that every tag can
    lie: the declared size, bits, sample format, compression and strip length are taken as
    given, whatever ``pixels`` holds (zeros of the declared size, capped at 4 MiB, by
    default)."""
    if pixels is None:
        n = width * height * samples * max(bits, 8) // 8
        pixels = b"\x00" * min(max(n, 0), 1 << 22)
    if photometric is None:
        photometric = 2 if samples >= 3 else 1
    tags: list[tuple[int, int, int, int]] = []  # (tag, type, count, value)
    data_offset = 8
    ifd_offset = data_offset + len(pixels) + (len(pixels) & 1)
    n_tags = 10 + (1 if samples > 1 else 0)
    extra_offset = ifd_offset + 2 + n_tags * 12 + 4
    extra = b""
    if samples > 1:
        bps_value = extra_offset
        extra = struct.pack(f"<{samples}H", *([bits] * samples))
    else:
        bps_value = bits
    tags += [
        (256, 4, 1, width & 0xFFFFFFFF),
        (257, 4, 1, height & 0xFFFFFFFF),
        (258, 3, samples, bps_value),
        (259, 3, 1, compression),
        (262, 3, 1, photometric),
        (273, 4, 1, data_offset),
        (277, 3, 1, samples),
        (278, 4, 1, max(height, 1) & 0xFFFFFFFF),
        (279, 4, 1, (len(pixels) if strip_bytes is None else strip_bytes) & 0xFFFFFFFF),
        (339, 3, 1, sample_format),
    ]
    if samples > 1:
        tags.append((284, 3, 1, 1))  # planar configuration: chunky
    tags.sort()
    ifd = struct.pack("<H", len(tags))
    for tag, typ, count, value in tags:
        if typ == 3 and count == 1:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", 0)
    pad = b"\x00" * (len(pixels) & 1)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + pixels + pad + ifd + extra


def bmp_set_size(data: bytes, width: int, height: int) -> bytes:
    """A BMP whose BITMAPINFOHEADER declares another size (signed 32-bit fields)."""
    b = bytearray(data)
    b[18:26] = struct.pack("<ii", width, height)
    return bytes(b)


def bmp_set_bits(data: bytes, bits: int) -> bytes:
    b = bytearray(data)
    b[28:30] = struct.pack("<H", bits)
    return bytes(b)


# ---------------------------------------------------------------------------------- NIfTI

#: Offsets of NIfTI-1 header fields (bytes) used to make headers lie.
NII = {"sizeof_hdr": 0, "dim": 40, "datatype": 70, "bitpix": 72, "pixdim": 76,
       "vox_offset": 108, "scl_slope": 112, "scl_inter": 116, "qform_code": 252,
       "sform_code": 254, "quatern": 256, "qoffset": 268, "srow_x": 280, "srow_y": 296,
       "srow_z": 312, "magic": 344}
NII_AFFINE = np.array([[-2.0, 0, 0, 31.0], [0, 2.0, 0, -31.0], [0, 0, 3.0, 0.0], [0, 0, 0, 1.0]])


def nifti_volume(shape: tuple[int, ...] = (32, 32, 4), seed: int = 0,
                 dtype: Any = np.int16) -> np.ndarray:
    """A small smooth volume of scanner-like values."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape[:3], dtype=np.float32)
    centre = np.array(shape[:3], dtype=np.float32).reshape(3, 1, 1, 1) / 2
    ball = (((idx - centre) / np.maximum(centre, 1)) ** 2).sum(0) < 0.8
    vals = ball * 600.0 + rng.normal(0, 20, shape[:3]) * ball
    if len(shape) == 4:
        vals = np.repeat(vals[..., None], shape[3], -1)
    return vals.astype(dtype)


def nifti_bytes(data: np.ndarray | None = None, affine: np.ndarray | None = None,
                gz: bool = False, codes: tuple[int, int] = (1, 1)) -> bytes:
    """A valid NIfTI-1 file (``gz``: gzip-compressed, mtime 0) as bytes."""
    import nibabel as nib

    data = nifti_volume() if data is None else data
    affine = NII_AFFINE if affine is None else affine
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=codes[0])
    img.set_qform(affine, code=codes[1])
    raw = img.to_bytes()
    return gzip.compress(raw, mtime=0) if gz else raw


def nifti_edit(raw: bytes, gz: bool = False, **fields: Any) -> bytes:
    """Rewrite NIfTI-1 header fields of an *uncompressed* file ``raw`` (dim: 8 ints,
    pixdim: 8 floats, srow_x/y/z: 4 floats, scalars otherwise), then gzip if ``gz``."""
    b = bytearray(raw)
    for name, value in fields.items():
        off = NII[name]
        if name == "dim":
            b[off : off + 16] = struct.pack("<8h", *value)
        elif name == "pixdim":
            b[off : off + 32] = struct.pack("<8f", *value)
        elif name in ("srow_x", "srow_y", "srow_z"):
            b[off : off + 16] = struct.pack("<4f", *value)
        elif name in ("quatern", "qoffset"):
            b[off : off + 12] = struct.pack("<3f", *value)
        elif name in ("datatype", "bitpix", "qform_code", "sform_code"):
            b[off : off + 2] = struct.pack("<h", value)
        elif name == "sizeof_hdr":
            b[off : off + 4] = struct.pack("<i", value)
        elif name == "magic":
            b[off : off + 4] = value
        else:
            b[off : off + 4] = struct.pack("<f", value)
    out = bytes(b)
    return gzip.compress(out, mtime=0) if gz else out


def gzip_corrupt_crc(gz_data: bytes) -> bytes:
    """A .gz whose CRC-32 trailer is wrong (the deflate stream itself is intact)."""
    b = bytearray(gz_data)
    b[-8] ^= 0xFF
    return bytes(b)


def gzip_corrupt_length(gz_data: bytes) -> bytes:
    """A .gz whose ISIZE trailer is wrong."""
    b = bytearray(gz_data)
    b[-1] ^= 0x01
    return bytes(b)


def gzip_bomb_nifti(shape: tuple[int, int, int], datatype: int = 64, bitpix: int = 64,
                    payload: int = 1 << 16) -> bytes:
    """A .nii.gz a few KB long whose header declares ``shape`` voxels of ``datatype``
    (default float64): only ``payload`` bytes of voxels follow the header."""
    raw = nifti_bytes(nifti_volume((4, 4, 4)))
    head = nifti_edit(raw[:352], dim=(3, *shape, 1, 1, 1, 1), datatype=datatype, bitpix=bitpix)
    return gzip.compress(head + b"\x00" * payload, mtime=0)


# ---------------------------------------------------------------------------------- DICOM


@functools.lru_cache(maxsize=1)
def _template() -> Any:
    import pydicom
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file("MR_small.dcm"))


def dicom_template() -> Any:
    """pydicom's MR_small.dcm (64x64 int16 MR slice with full geometry), a fresh copy."""
    return copy.deepcopy(_template())


def dicom_bytes(edit: Callable[[Any], None] | None = None, validate: bool = False) -> bytes:
    """MR_small.dcm with ``edit(ds)`` applied (attributes may be set to lies), as bytes.
    Written without pydicom's value checks so that invalid values reach the file."""
    from pydicom import config

    ds = dicom_template()
    old = config.settings.writing_validation_mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every invalid value we set
        config.settings.writing_validation_mode = config.IGNORE
        try:
            if edit is not None:
                edit(ds)
            config.settings.writing_validation_mode = config.RAISE if validate else config.IGNORE
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=False)
        finally:
            config.settings.writing_validation_mode = old
    return buf.getvalue()


def raw_element(tag: int, vr: str, value: bytes) -> Callable[[Any], None]:
    """An edit that stores ``value`` as the raw bytes of ``tag`` (no conversion, so a DS of
    ``b"abc "`` or a US of the wrong length reaches the file)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    def edit(ds: Any) -> None:
        t = Tag(tag)
        ds._dict[t] = RawDataElement(t, vr, len(value), value, 0, False, True)

    return edit


def dicom_multiframe_bytes(frames: int = 4, declared: int | None = None) -> bytes:
    """MR_small turned into a multi-frame file of ``frames`` frames (NumberOfFrames says
    ``declared`` if given)."""
    def edit(ds: Any) -> None:
        arr = ds.pixel_array
        ds.NumberOfFrames = declared if declared is not None else frames
        ds.PixelData = np.repeat(arr[None], frames, 0).astype("<i2").tobytes()

    return dicom_bytes(edit)


def dicom_series(folder: Path, n: int = 4, edit: Callable[[Any, int], None] | None = None) -> Path:
    """An axial series of ``n`` MR_small slices 5 mm apart in ``folder`` (``edit(ds, k)``
    may alter slice k before it is written)."""
    from pydicom import config

    folder.mkdir(parents=True, exist_ok=True)
    base = dicom_template()
    series_uid = "1.2.826.0.1.3680043.8.498.1"
    for k in range(n):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.2.{k + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -100.0, 5.0 * k]
        ds.SliceThickness = 5.0
        old = config.settings.writing_validation_mode
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config.settings.writing_validation_mode = config.IGNORE
            try:
                if edit is not None:
                    edit(ds, k)
                ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=False)
            finally:
                config.settings.writing_validation_mode = old
    return folder


def pixel_data_offset(data: bytes) -> int:
    """Byte offset of the (7FE0,0010) Pixel Data element's value in an explicit-VR LE file."""
    i = data.rfind(b"\xe0\x7f\x10\x00")
    if i < 0:
        raise ValueError("no pixel data element")
    vr = data[i + 4 : i + 6]
    return i + (12 if vr in (b"OB", b"OW", b"OF", b"UN") else 8)


# ---------------------------------------------------------------------------------- mutations


def truncate(data: bytes, fraction: float) -> bytes:
    """The first ``fraction`` of ``data`` (at least 0 bytes, at most all but one)."""
    return data[: max(0, min(len(data) - 1, int(len(data) * fraction)))]


def flip(data: bytes, offset: int, mask: int = 0xFF) -> bytes:
    b = bytearray(data)
    b[offset % len(b)] ^= mask
    return bytes(b)


def splat(data: bytes, start: int, length: int, value: int = 0xA5) -> bytes:
    """Overwrite ``length`` bytes from ``start`` (clamped) with ``value``."""
    b = bytearray(data)
    start = max(0, min(start, len(b) - 1))
    b[start : start + length] = bytes([value]) * len(b[start : start + length])
    return bytes(b)


__all__ = [
    "NII",
    "NII_AFFINE",
    "SIZE",
    "bmp_set_bits",
    "bmp_set_size",
    "dicom_bytes",
    "dicom_multiframe_bytes",
    "dicom_series",
    "dicom_template",
    "flip",
    "float_tiff_bytes",
    "gzip_bomb_nifti",
    "gzip_corrupt_crc",
    "gzip_corrupt_length",
    "image_bytes",
    "jpeg_set_size",
    "nifti_bytes",
    "nifti_edit",
    "nifti_volume",
    "phantom",
    "pixel_data_offset",
    "raw_element",
    "png_raw",
    "png_set_ihdr_byte",
    "png_set_size",
    "splat",
    "tiff_raw",
    "truncate",
]
