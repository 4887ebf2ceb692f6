"""DICOM in: single files, multi-frame files and series folders as a
:class:`~medfuse.io.volume.Volume`.

Pixel data decoded by pydicom's handlers, slices ordered by their position along the slice
normal (Instance Number when positions are missing), Rescale Slope/Intercept kept as the
volume's scaling, MONOCHROME1 inverted so that high always means bright, colour (RGB, YBR,
palette) returned as RGB. Patient coordinates (LPS) become the RAS+ affine every other module
uses. What a header states beyond pixels and geometry (SUV facts, identity, the source
series an output refers to) is read by :mod:`medfuse.io.dicom.facts`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.errors import InputError, UsageError
from medfuse.io.dicom.facts import source_series, suv_facts
from medfuse.io.geometry import RAS_TO_LPS, check_affine
from medfuse.io.volume import Volume, Window
from medfuse.vocabulary import modality_from_dicom

#: pip packages that give pydicom a decoder for each compressed transfer syntax family.
_DECODERS = {
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)",
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "High-Throughput JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "JPEG": "pylibjpeg pylibjpeg-libjpeg",
    "Deflate": "(nothing: a zlib problem)",
    "RLE": "pylibjpeg pylibjpeg-rle",
}
#: Optional extra of medfuse that installs the decoders (medfuse[dicom]).
INSTALL_EXTRA = "dicom"
#: Tolerances when deciding that a folder's slices form one regular grid.
ORIENTATION_TOLERANCE = 1e-4
SPACING_TOLERANCE = 0.01  # relative
#: Most voxels (times samples) one DICOM object may declare: 1024^3, e.g. 1000 slices of
#: 1024x1024, far beyond any clinical series.
MAX_VOXELS = 1024**3
#: Largest coordinate or spacing (mm) taken from a header: 1 km. Larger values (a header
#: claiming 1e300 mm) are treated as missing geometry rather than overflowing later.
MAX_MM = 1e6
#: Largest finite float32: pixels in scanner units (stored * slope + intercept) stay below.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def looks_like_dicom(path: Path) -> bool:
    """True when the file has the DICOM preamble signature ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read(path: Path, pixels: bool) -> Any:
    """dcmread with every failure turned into one InputError line."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels, force=False)
    except InvalidDicomError:
        # Files without the 128-byte preamble are still DICOM if they parse as a dataset.
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=not pixels, force=True)
        except Exception as exc:
            raise InputError(f"{path}: not a DICOM file ({_first_line(exc)})") from exc
        if "SOPClassUID" not in ds and "PixelData" not in ds:
            raise InputError(f"{path}: not a DICOM file") from None
        return ds
    except Exception as exc:  # truncated or corrupt files raise many types
        raise InputError(f"{path}: corrupt DICOM file ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _has_pixels(ds: Any) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _decode(ds: Any, path: Path) -> np.ndarray:
    """Decoded pixels (stored values), naming the package to install when a decoder is
    missing."""
    if not _has_pixels(ds):
        raise InputError(f"{path}: no pixel data (not an image: {ds.get('Modality', '?')} object)")
    element = next(ds[k] for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
                   if k in ds)
    if element.value is None or len(element.value) == 0:
        raise InputError(f"{path}: the pixel data element is empty")
    _check_declared_size(ds, path)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        text = str(exc)
        try:
            name = ts.name if ts is not None else "unknown transfer syntax"
            compressed = ts is not None and bool(ts.is_compressed)
        except Exception:  # not a transfer syntax at all (unknown, multi-valued, damaged)
            name, compressed = f"invalid transfer syntax {ts}", False
        if compressed and (
            "missing" in text or "plugin" in text or "support" in text or "decod" in text.lower()
        ):
            hint = next((v for k, v in _DECODERS.items() if k in name), "pylibjpeg")
            raise InputError(
                f"{path}: cannot decode '{name}' pixel data with the installed decoders; "
                f"install one with: pip install {hint} (or medfuse's optional '{INSTALL_EXTRA}' "
                "extra)"
            ) from exc
        raise InputError(f"{path}: cannot decode pixel data ({_first_line(exc)})") from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise InputError(f"{path}: cannot apply the colour palette ({_first_line(exc)})") from exc
    return np.asarray(arr)


def _check_declared_size(ds: Any, path: Path) -> None:
    """Refuse a header declaring more voxels than medfuse reads, before any decoding (a
    small file can declare gigabytes)."""
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except _HEADER_ERRORS as exc:
        raise InputError(f"{path}: unreadable image size in the header ({_first_line(exc)})") from exc
    if min(rows, cols, frames, samples) < 1:
        raise InputError(f"{path}: header declares {cols}x{rows} pixels, {frames} frame(s)")
    if rows * cols * frames * samples > MAX_VOXELS:
        raise InputError(f"{path}: header declares {cols}x{rows}x{frames} voxels, more than "
                         f"medfuse reads ({MAX_VOXELS // 2**20} M)")


def _floats(value: Any, n: int) -> np.ndarray | None:
    """``n`` finite numbers of at most MAX_MM in size, else None (treated as missing: a
    header claiming a 1e300 mm pixel describes no place in a patient)."""
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    if out.shape != (n,) or not np.isfinite(out).all() or (np.abs(out) > MAX_MM).any():
        return None
    return out


def _functional(ds: Any, sequence: str, attribute: str, frame: int | None = None) -> Any:
    """An attribute from the shared functional groups, or the frame's per-frame group."""
    groups = []
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        per = ds.PerFrameFunctionalGroupsSequence
        if frame < len(per):
            groups.append(per[frame])
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        if sequence in group and len(group[sequence]) and attribute in group[sequence][0]:
            return group[sequence][0][attribute].value
    return None


def _detector(ds: Any, attribute: str) -> Any:
    """An attribute of the first item of the Detector Information Sequence, where NM
    (gamma camera, RECON TOMO) objects keep their image position and orientation."""
    seq = ds.get("DetectorInformationSequence")
    if seq is not None and len(seq) and attribute in seq[0]:
        return seq[0][attribute].value
    return None


def _orientation(ds: Any, frame: int | None = None) -> np.ndarray | None:
    value = (ds.get("ImageOrientationPatient")
             or _functional(ds, "PlaneOrientationSequence", "ImageOrientationPatient", frame)
             or _detector(ds, "ImageOrientationPatient"))
    iop = _floats(value, 6) if value is not None else None
    if iop is None:
        return None
    r, c = iop[:3], iop[3:]
    if not (
        abs(np.linalg.norm(r) - 1) < 1e-3
        and abs(np.linalg.norm(c) - 1) < 1e-3
        and abs(float(r @ c)) < 1e-3
    ):
        return None
    return iop


def _position(ds: Any, frame: int | None = None) -> np.ndarray | None:
    value = _functional(ds, "PlanePositionSequence", "ImagePositionPatient", frame)
    if value is None:
        value = ds.get("ImagePositionPatient")
    if value is None:
        value = _detector(ds, "ImagePositionPatient")
    return _floats(value, 3) if value is not None else None


def _spacing(ds: Any) -> tuple[float, float] | None:
    for value in (
        ds.get("PixelSpacing"),
        _functional(ds, "PixelMeasuresSequence", "PixelSpacing"),
        ds.get("ImagerPixelSpacing"),
    ):
        sp = _floats(value, 2) if value is not None else None
        if sp is not None and (sp > 0).all():
            return float(sp[0]), float(sp[1])
    return None


def _thickness(ds: Any) -> float | None:
    for value in (
        ds.get("SpacingBetweenSlices"),
        _functional(ds, "PixelMeasuresSequence", "SpacingBetweenSlices"),
        ds.get("SliceThickness"),
        _functional(ds, "PixelMeasuresSequence", "SliceThickness"),
    ):
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            continue
        if np.isfinite(v) and 0 < v <= MAX_MM:
            return v
    return None


def _rescale(ds: Any, frame: int | None = None) -> tuple[float, float]:
    slope = ds.get("RescaleSlope")
    inter = ds.get("RescaleIntercept")
    if slope is None:
        slope = _functional(ds, "PixelValueTransformationSequence", "RescaleSlope", frame)
        inter = _functional(ds, "PixelValueTransformationSequence", "RescaleIntercept", frame)
    try:
        s = float(slope) if slope is not None else 1.0
        i = float(inter) if inter is not None else 0.0
    except (TypeError, ValueError):
        s, i = 1.0, 0.0
    return (s if np.isfinite(s) and s != 0 else 1.0), (i if np.isfinite(i) else 0.0)


def _window(ds: Any) -> Window | None:
    def first(v: Any) -> float | None:
        if v is None:
            return None
        if not isinstance(v, (str, bytes)) and hasattr(v, "__len__"):
            v = v[0] if len(v) else None
        try:
            out = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
        # a window beyond the float32 range is no window (values are float32 throughout)
        return out if np.isfinite(out) and abs(out) <= FLOAT32_MAX / 2 else None

    lut = _voi_lut(ds)
    c = first(ds.get("WindowCenter") or _functional(ds, "FrameVOILUTSequence", "WindowCenter"))
    w = first(ds.get("WindowWidth") or _functional(ds, "FrameVOILUTSequence", "WindowWidth"))
    if lut is not None:
        return Window(lut.centre, lut.width, "DICOM header VOI LUT", curve=lut)
    if c is None or w is None or w <= 0:
        return None
    function = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    if "WindowCenter" not in ds or function not in VOI_FUNCTIONS:
        return Window(c, w, "DICOM header")  # enhanced per-frame windows: linear
    curve = HeaderVoi(_voi_dataset(ds, WindowCenter=c, WindowWidth=w, VOILUTFunction=function),
                      function)
    source = "DICOM header" if function == "LINEAR" else f"DICOM header, {function}"
    return Window(c, w, source, curve=curve)


#: VOILUTFunction values pydicom applies (PS3.3 C.11.2.1.3).
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def _voi_dataset(ds: Any, **elements: Any) -> Any:
    """A minimal dataset pydicom's ``apply_voi_lut`` reads: the VOI elements, unsigned
    16-bit MONOCHROME2 output range, no rescale (our values are already scanner units)."""
    from pydicom.dataset import Dataset

    voi = Dataset()
    if getattr(ds, "file_meta", None) is not None:
        voi.file_meta = ds.file_meta  # the LUT Data's byte order, when it is OW
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.BitsStored, voi.PixelRepresentation = 16, 0
    for key, value in elements.items():
        setattr(voi, key, value)
    return voi


@dataclass(frozen=True)
class HeaderVoi:
    """A DICOM header's VOI transform through ``pydicom.pixels.apply_voi_lut``, as a
    callable from scanner units (after Modality LUT / rescale) to float32 [0, 1]: pydicom
    knows LINEAR (DICOM's half-value offsets), LINEAR_EXACT and SIGMOID, and VOI LUT
    Sequences, which a linear centre/width cannot express. ``invert``: the volume holds
    MONOCHROME1 values negated (so higher is brighter); the VOI then applies to the stored
    sense and the result is inverted, as a MONOCHROME1 display does."""

    ds: Any
    kind: str
    invert: bool = False
    centre: float = 0.0
    width: float = 1.0
    #: The transform's output range: 0 to 2**bits - 1.
    bits: int = 16

    def __call__(self, values: np.ndarray) -> np.ndarray:
        from pydicom.pixels import apply_voi_lut

        arr = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(arr)
        x = np.where(bad, 0.0, -arr if self.invert else arr)
        if self.kind == "LUT":
            # LUT entries are indexed by integer values; clipped to the LUT's range here
            # because pydicom 3.0 indexes in the LUT's own 8/16-bit type, where a value
            # beyond it wraps around instead of taking the last entry
            first = self.centre - self.width / 2.0
            x = np.clip(np.rint(x), first, first + self.width - 1).astype(np.int64)
        with np.errstate(all="ignore"):
            y = np.asarray(apply_voi_lut(x, self.ds, prefer_lut=True), dtype=np.float64)
            out = np.clip(y / (2.0**self.bits - 1), 0.0, 1.0)
        if self.invert:
            out = 1.0 - out
        out[bad] = 0.0
        return out.astype(np.float32)

    def inverted(self) -> HeaderVoi:
        return dataclasses.replace(self, invert=not self.invert, centre=-self.centre)


def _voi_lut(ds: Any) -> HeaderVoi | None:
    """The header's first VOI LUT Sequence item as a transform, when it is usable."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    item = seq[0]
    desc = item.get("LUTDescriptor")
    if desc is None or item.get("LUTData") is None or len(desc) != 3:
        return None
    entries, first_map, bits = int(desc[0]) or 65536, int(desc[1]), int(desc[2])
    if bits not in (8, *range(10, 17)):
        return None
    voi = _voi_dataset(ds)
    voi.VOILUTSequence = seq
    return HeaderVoi(voi, "LUT", centre=first_map + entries / 2.0, width=float(entries),
                     bits=bits)


@dataclass
class _Slice:
    """One 2D image of a series: where it comes from and where it lies."""

    path: Path
    frame: int | None
    position: np.ndarray | None
    instance: int
    slope: float
    inter: float


@dataclass
class SeriesInfo:
    """What a folder's scan found for one series."""

    uid: str
    files: list[tuple[Path, Any]]

    def describe(self) -> str:
        ds = self.files[0][1]
        desc = str(ds.get("SeriesDescription", "")).strip()
        bits = [str(ds.get("Modality", "?"))] + ([repr(desc)] if desc else [])
        return f"{self.uid} ({', '.join(bits)}, {len(self.files)} files)"


def scan_folder(folder: Path) -> dict[str, SeriesInfo]:
    """Headers of every DICOM image file under ``folder``, grouped by Series Instance UID.

    Files that are not DICOM are skipped (a folder often holds a DICOMDIR, notes or
    thumbnails); DICOM objects without pixel data (reports, RT plans) are skipped too. A
    file named or signed as DICOM that does not parse is an InputError: skipping it could
    drop a slice of the series without a word.
    """
    found: dict[str, SeriesInfo] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            p = Path(root) / name
            if name.startswith(".") or name.upper() == "DICOMDIR" or not p.is_file():
                continue  # hidden files, the index, and pipes/devices (opening one may block)
            if not (looks_like_dicom(p) or p.suffix.lower() in (".dcm", ".dicom", ".ima")):
                continue
            # A file that says it is DICOM (signature or suffix) but does not parse is
            # refused, not skipped: skipping it could silently drop a slice of the series.
            ds = _read(p, pixels=False)
            if "Rows" not in ds or "Columns" not in ds:
                if _image_class(ds) or "SOPClassUID" not in ds:
                    # pydicom parses a cut-off file up to where it ends, without a word
                    raise InputError(f"{p}: incomplete DICOM file (no image size; truncated "
                                     "or damaged?)")
                continue  # a report, RT plan or other object without pixels
            uid = str(ds.get("SeriesInstanceUID", "") or "(no series UID)")
            found.setdefault(uid, SeriesInfo(uid, [])).files.append((p, ds))
    return found


def _image_class(ds: Any) -> bool:
    """Whether the SOP class (dataset or file meta) is an image storage class."""
    meta = getattr(ds, "file_meta", None)
    for uid in (ds.get("SOPClassUID"), meta.get("MediaStorageSOPClassUID") if meta else None):
        with contextlib.suppress(Exception):
            if uid is not None and "Image Storage" in uid.name:
                return True
    return False


def choose_series(found: dict[str, SeriesInfo], folder: Path, series: Iterable[str]) -> SeriesInfo:
    """The one series to read: the only one, or the one named by ``--series``."""
    wanted = [s.strip() for s in series if s and s.strip()]
    if not found:
        raise InputError(f"{folder}: no DICOM images in this folder")
    picked = [found[u] for u in wanted if u in found]
    if picked:
        return picked[0]
    listing = "; ".join(info.describe() for info in found.values())
    if wanted:
        raise UsageError(
            f"--series {', '.join(wanted)}: not in {folder}, which holds: {listing}"
        )
    if len(found) > 1:
        raise InputError(
            f"{folder} holds {len(found)} series; pick one with --series UID: {listing}"
        )
    return next(iter(found.values()))


def _affine(
    iop: np.ndarray | None,
    first: np.ndarray | None,
    step: np.ndarray | None,
    spacing: tuple[float, float] | None,
    thickness: float | None,
) -> tuple[np.ndarray, bool]:
    """RAS+ affine of a (column, row, slice) indexed array, and whether it is real geometry."""
    dr, dc = spacing or (1.0, 1.0)
    if iop is None or first is None:
        # No patient geometry: a standard axial layout, so the image shows as stored.
        dk = thickness or 1.0
        return np.diag([-dc, -dr, dk, 1.0]), False
    row_cos, col_cos = iop[:3], iop[3:]
    if step is None:
        step = np.cross(row_cos, col_cos) * (thickness or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * dc
    lps[:3, 1] = col_cos * dr
    lps[:3, 2] = step
    lps[:3, 3] = first
    return RAS_TO_LPS @ lps, spacing is not None


def _order(slices: list[_Slice], iop: np.ndarray | None, label: str) -> tuple[list[_Slice], np.ndarray | None]:
    """Sort slices along the slice normal (Instance Number as fallback), check that they
    form a regular grid, and return them with the step between neighbours (LPS mm)."""
    if len(slices) == 1:
        return slices, None
    if iop is None or any(s.position is None for s in slices):
        return sorted(slices, key=lambda s: (s.instance, s.frame or 0)), None
    normal = np.cross(iop[:3], iop[3:])
    dist = np.array([float(s.position @ normal) for s in slices])  # type: ignore[operator]
    order = np.argsort(dist, kind="stable")
    slices = [slices[i] for i in order]
    dist = dist[order]
    gaps = np.diff(dist)
    if (gaps < 1e-3).any():
        raise InputError(
            f"{label}: several images share one slice position (echoes, phases or time points "
            "mixed in one series?); medfuse needs one image per position"
        )
    mean = float(gaps.mean())
    if float(gaps.max() - gaps.min()) > SPACING_TOLERANCE * mean + 1e-3:
        raise InputError(
            f"{label}: the slice spacing is irregular ({gaps.min():.4g} to {gaps.max():.4g} mm; "
            "missing slices?); medfuse needs a regular grid"
        )
    step = (slices[-1].position - slices[0].position) / (len(slices) - 1)  # type: ignore[operator]
    return slices, step


def _modality_and_window(ds: Any, invert: bool) -> tuple[str | None, Window | None]:
    window = _window(ds)
    if window is not None and invert:
        curve = window.curve.inverted() if window.curve is not None else None
        window = Window(-window.centre, window.width, window.source, curve=curve)
    return modality_from_dicom(ds.get("Modality")), window


def _rgb_window(ds: Any, arr: np.ndarray) -> Window:
    peak = 65535.0 if arr.dtype.itemsize > 1 else 255.0
    if str(ds.get("PhotometricInterpretation", "")).upper() != "PALETTE COLOR":
        bits = int(ds.get("BitsStored", 8) or 8)
        peak = float(2**bits - 1)
    return Window.from_range(0.0, peak, "RGB full range")


def _build(
    pixels: np.ndarray,
    slices: list[_Slice],
    ds: Any,
    iop: np.ndarray | None,
    step: np.ndarray | None,
    label: Path,
) -> Volume:
    """Assemble a Volume from (slice, row, column[, rgb]) pixels already in sorted order."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    rgb = pixels.ndim == 4
    invert = photometric == "MONOCHROME1"
    slopes = np.array([s.slope for s in slices])
    inters = np.array([s.inter for s in slices])
    slope, inter = 1.0, 0.0
    if rgb:
        header_window = _rgb_window(ds, pixels)
    else:
        _check_rescale(pixels, slopes, inters, label)
        if np.ptp(slopes) == 0 and np.ptp(inters) == 0:
            slope, inter = float(slopes[0]), float(inters[0])
        else:
            # Per-slice scaling (common in PET): one float32 copy in scanner units.
            pixels = pixels.astype(np.float32)
            pixels *= slopes.astype(np.float32)[:, None, None]
            pixels += inters.astype(np.float32)[:, None, None]
        if invert:
            if slope == 1.0 and inter == 0.0 and pixels.dtype == np.float32:
                np.negative(pixels, out=pixels)
            else:
                slope, inter = -slope, -inter
        header_window = None
    modality, window = _modality_and_window(ds, invert)
    first = slices[0].position
    affine, has_geometry = _affine(iop, first, step, _spacing(ds), _thickness(ds))
    affine = check_affine(affine, str(label))
    data = np.swapaxes(pixels, 0, 2) if not rgb else pixels.transpose(2, 1, 0, 3)
    return Volume(
        data=data,
        affine=affine,
        path=label,
        format="dicom",
        modality=modality,
        slope=slope,
        inter=inter,
        header_window=header_window or window,
        has_geometry=has_geometry,
        dicom=_headers_only(ds),
        description=str(ds.get("SeriesDescription", "")),
    )


def _check_rescale(pixels: np.ndarray, slopes: np.ndarray, inters: np.ndarray,
                   label: Path) -> None:
    """Refuse Rescale Slope/Intercept values that take the stored pixels beyond the float32
    range (scanner units would be infinite)."""
    if (slopes == 1.0).all() and (inters == 0.0).all():
        return
    if pixels.dtype.kind == "f":
        finite = pixels[np.isfinite(pixels)]
        peak = float(np.abs(finite).max(initial=0.0))
    else:
        peak = max(abs(float(pixels.min(initial=0))), abs(float(pixels.max(initial=0))))
    if float(np.abs(slopes).max()) * peak + float(np.abs(inters).max()) > FLOAT32_MAX:
        raise InputError(f"{label}: Rescale Slope/Intercept take the stored values beyond "
                         "the float32 range (the header lies about the scaling)")


def _headers_only(ds: Any) -> Any:
    """A copy of the dataset without pixel data or functional groups (kept for copying
    patient and study attributes into outputs, so it must stay small)."""
    import copy

    keep = copy.copy(ds)
    for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData",
                "PerFrameFunctionalGroupsSequence"):
        if key in keep:
            del keep[key]
    return keep


def _with_facts(volume: Volume, datasets: Iterable[Any]) -> Volume:
    facts = suv_facts(datasets)
    if facts is not None:
        volume.suv = facts
    return volume


def _read_file(path: Path) -> Volume:
    ds = _read(path, pixels=True)
    arr = _decode(ds, path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    colour = samples == 3 or str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR"
    if frames == 1:
        arr = arr[None]
    if arr.ndim != (4 if colour else 3):
        raise InputError(f"{path}: unexpected pixel array shape {arr.shape}")
    iop = _orientation(ds, 0)
    offsets = ds.get("GridFrameOffsetVector")
    slices: list[_Slice] = []
    for f in range(arr.shape[0]):
        pos = _position(ds, f if frames > 1 else None)
        if frames > 1 and "PerFrameFunctionalGroupsSequence" not in ds and offsets is not None:
            # RT dose / NM style: one position plus offsets along the normal.
            base = _position(ds)
            offs = _floats(offsets, frames)
            pos = None
            if base is not None and iop is not None and offs is not None:
                pos = base + np.cross(iop[:3], iop[3:]) * offs[f]
        elif frames > 1 and "PerFrameFunctionalGroupsSequence" not in ds:
            pos = None  # the top-level position belongs to the first frame only
        s, i = _rescale(ds, f if frames > 1 else None)
        slices.append(_Slice(path, f, pos, f, s, i))
    if frames > 1 and iop is not None and any(s.position is None for s in slices):
        # Frames without positions: stack them along the normal at the slice spacing.
        start = _position(ds)
        if start is not None:
            step = np.cross(iop[:3], iop[3:]) * (_thickness(ds) or 1.0)
            for f, s in enumerate(slices):
                s.position = start + step * f
    ordered, step = _order(slices, iop, str(path))
    order = [s.frame for s in ordered]
    if order != sorted(order):
        arr = arr[order]
    volume = _with_facts(_build(arr, ordered, ds, iop, step, path), [ds])
    volume.extra["source_series"] = source_series(ds, [(ds, None)], iop)
    return volume


def _read_series(folder: Path, series: Iterable[str]) -> Volume:
    info = choose_series(scan_folder(folder), folder, series)
    if len(info.files) == 1:
        return _read_file(info.files[0][0])
    first = info.files[0][1]
    rows, cols = int(first.Rows), int(first.Columns)
    iop = _orientation(first)
    slices: list[_Slice] = []
    for p, ds in info.files:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise InputError(
                f"{folder}: series {info.uid} mixes several multi-frame files; "
                f"read one file at a time (e.g. {p})"
            )
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise InputError(
                f"{folder}: series {info.uid} mixes image sizes ({cols}x{rows} and "
                f"{int(ds.Columns)}x{int(ds.Rows)} in {p.name})"
            )
        other = _orientation(ds)
        if (iop is None) != (other is None) or (
            iop is not None and other is not None
            and np.abs(iop - other).max() > ORIENTATION_TOLERANCE
        ):
            raise InputError(f"{folder}: series {info.uid} mixes slice orientations ({p.name})")
        s, i = _rescale(ds)
        slices.append(_Slice(p, None, _position(ds), int(ds.get("InstanceNumber", 0) or 0), s, i))
    ordered, step = _order(slices, iop, f"{folder} (series {info.uid})")
    pixels: np.ndarray | None = None
    for n, s in enumerate(ordered):
        arr = _decode(_read(s.path, pixels=True), s.path)
        if pixels is None:
            pixels = np.empty((len(ordered), *arr.shape), dtype=arr.dtype)
        if arr.shape != pixels.shape[1:]:
            raise InputError(f"{s.path}: decoded shape {arr.shape} differs from the series")
        pixels[n] = arr
    assert pixels is not None
    ref = next(ds for p, ds in info.files if p == ordered[0].path)
    volume = _with_facts(_build(pixels, ordered, ref, iop, step, folder),
                         [ref, *(ds for _, ds in info.files if ds is not ref)])
    headers = dict(info.files)
    volume.extra["source_series"] = source_series(
        ref, [(headers[s.path], s.position) for s in ordered], iop)
    return volume


#: What pydicom and the header arithmetic raise for a damaged header (a value of the wrong
#: type or multiplicity, an unknown VR met when an element is first accessed...).
_HEADER_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError,
                  NotImplementedError, OverflowError, EOFError, UnicodeError)


def read_dicom(path: str | Path, series: Iterable[str] = ()) -> Volume:
    """Read a DICOM file (single- or multi-frame) or a folder holding a series.

    pydicom converts element values lazily, on first access, so a damaged header can fail
    anywhere it is read: those failures become one InputError naming the path."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such file or folder: {p}")
    try:
        if p.is_dir():
            return _read_series(p, series)
        return _read_file(p)
    except _HEADER_ERRORS as exc:
        raise InputError(f"{p}: damaged DICOM header ({type(exc).__name__}: "
                         f"{_first_line(exc)})") from exc
