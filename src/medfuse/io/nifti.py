"""NIfTI (.nii, .nii.gz) in and out with nibabel.

Reading keeps the voxels in their stored dtype (uncompressed files stay memory-mapped) with the
header's scl_slope/scl_inter as the volume's scaling, picks one volume of a 4D file, and
refuses affines that cannot place voxels in space.

Writing puts the fused volume on the MRI's grid with the MRI's affine in both the sform and
the qform (codes copied from the MRI, "scanner" when it had none). Colour results are stored
as the NIfTI **RGB24** datatype (code 128): the file stays a 3D volume with exactly the MRI's
dimensions and affine, and FSLeyes, ITK-SNAP, MRIcroGL and 3D Slicer display it as colour,
whereas a 4D array with three "volumes" would be shown as three grey time points. nibabel
reads RGB24 as a structured array with fields R, G, B. Grey results are stored as uint16
with scl_slope = 1/65535, so readers get values in [0, 1] at 16-bit precision.
"""

from __future__ import annotations

import contextlib
import gzip
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.errors import InputError, UsageError
from medfuse.io.geometry import check_affine
from medfuse.io.outputs import atomic_output
from medfuse.io.volume import Volume

#: nibabel's structured dtype for NIFTI_TYPE_RGB24.
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
#: sform/qform code written when the source had none: NIFTI_XFORM_SCANNER_ANAT.
SCANNER_ANAT = 1
#: Most voxels one NIfTI file may declare (checked from the header before reading).
MAX_VOXELS = 1024**3


#: How much more than its header declares a ``.nii.gz`` may decompress to (padding some
#: writers add) before it is refused: the CRC check reads the whole stream, and a few KB of
#: gzip must not make it decompress gigabytes.
GZIP_SLACK = 1 << 20
#: Largest finite float32: scaled voxels (stored * slope + intercept) must stay below it.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_gzip(path: Path, declared: int | None = None) -> None:
    """Decompress a ``.nii.gz`` to its end once, which verifies its CRC and length: nibabel
    reads only what it needs and never notices a corrupted stream. With ``declared`` (the
    bytes header and voxels need), a stream that ends before them or runs on far past them
    is refused as soon as that is known, before nibabel allocates anything."""
    import zlib

    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while block := fh.read(1 << 24):
                total += len(block)
                if declared is not None and total > declared + GZIP_SLACK:
                    raise InputError(f"{path}: the gzip stream holds more than the "
                                     f"{declared} bytes its NIfTI header declares")
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt gzip data ({_first_line(exc)})") from exc
    if declared is not None and total < declared:
        raise InputError(f"{path}: header declares {declared} bytes of header and voxels, "
                         f"the file holds {total} (truncated, or the header lies)")


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__


@contextlib.contextmanager
def _nibabel_quiet() -> Iterator[list[str]]:
    """Hold back what nibabel logs while it reads a header ("pixdim[1,2,3] should be
    non-zero; setting 0 dims to 1", "sizeof_hdr should be 348"...), which it otherwise prints
    as bare lines on stderr; the messages are yielded (filled in on exit) so the caller can
    warn about them properly once the file has been read."""
    import logging

    from nibabel import imageglobals

    logger = imageglobals.logger
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = " ".join(record.getMessage().split())
            if text and text not in messages:
                messages.append(text)

    keep = Keep()
    handlers, propagate = list(logger.handlers), logger.propagate
    for h in handlers:
        logger.removeHandler(h)
    logger.addHandler(keep)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(keep)
        for h in handlers:
            logger.addHandler(h)
        logger.propagate = propagate


def _declared_bytes(img: Any, path: Path) -> int:
    """Bytes the header says the file holds up to the end of the voxels (refusing a voxel
    count beyond MAX_VOXELS first)."""
    shape = tuple(int(d) for d in img.shape)
    n_voxels = int(np.prod([max(d, 1) for d in shape], dtype=np.float64))
    if n_voxels > MAX_VOXELS:
        raise InputError(f"{path}: header declares {'x'.join(map(str, shape))} voxels, more "
                         f"than medfuse reads ({MAX_VOXELS // 2**20} M)")
    try:
        itemsize = int(img.header.get_data_dtype().itemsize)
        # the image's header copy has vox_offset reset; the array proxy keeps the file's
        offset = int(getattr(img.dataobj, "offset", None) or img.header.get_data_offset())
    except Exception as exc:
        raise InputError(f"{path}: not a readable NIfTI file ({_first_line(exc)})") from exc
    return offset + int(np.prod(shape, dtype=np.int64)) * itemsize


def _load(path: Path) -> Any:
    import nibabel as nib

    if not path.exists():
        raise UsageError(f"no such file: {path}")
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    with _nibabel_quiet() as notes:
        try:
            img = nib.load(str(path))
        except Exception as exc:  # nibabel, gzip and numpy raise many types for a bad file
            if gzipped:
                _check_gzip(path)  # a damaged stream says so more clearly than nibabel
            raise InputError(f"{path}: not a readable NIfTI file ({_first_line(exc)})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI image ({type(img).__name__})")
    # The header is all that has been read: check what it declares against the file
    # before nibabel allocates the voxels (a few KB must not claim gigabytes).
    declared = _declared_bytes(img, path)
    if gzipped:
        _check_gzip(path, declared)
    elif path.stat().st_size < declared:
        raise InputError(f"{path}: header declares {declared} bytes of header and voxels, "
                         f"the file holds {path.stat().st_size} (truncated, or the header lies)")
    for note in notes:
        warnings.warn(f"{path}: NIfTI header: {note}", stacklevel=3)
    return img


def _check_scaling(raw: np.ndarray, slope: float, inter: float, path: Path) -> None:
    """Refuse voxels that do not fit float32 in scanner units (float64 data beyond +-3.4e38,
    or a scl_slope/scl_inter that takes the stored values there): medfuse computes in
    float32, where they would become infinite."""
    kind = raw.dtype.kind
    wide = kind == "f" and raw.dtype.itemsize > 4
    if slope == 1.0 and inter == 0.0 and not wide:
        return
    if kind in "iub":
        info = np.iinfo(raw.dtype) if kind != "b" else np.iinfo(np.uint8)
        if abs(slope) * max(abs(int(info.min)), abs(int(info.max))) + abs(inter) <= FLOAT32_MAX:
            return
        peak = max(abs(float(raw.min(initial=0))), abs(float(raw.max(initial=0))))
    else:
        finite = raw[np.isfinite(raw)]
        peak = float(np.abs(finite).max(initial=0.0))
    if abs(slope) * peak + abs(inter) > FLOAT32_MAX:
        if slope == 1.0 and inter == 0.0:
            raise InputError(f"{path}: voxel values up to {peak:.3g} lie beyond the float32 "
                             "range medfuse computes in")
        raise InputError(f"{path}: scl_slope {slope:g} and scl_inter {inter:g} take the stored "
                         "values beyond the float32 range (the header lies about the scaling)")


def _rgb_from_structured(arr: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(arr[c]) for c in ("R", "G", "B")], axis=-1)


def read_nifti(path: str | Path, volume_index: int | None = None) -> Volume:
    """Read a 2D, 3D or 4D NIfTI file (``volume_index`` picks one volume of a 4D file and is
    ignored for others, so one ``--volume`` serves a 3D MRI beside a 4D PET)."""
    p = Path(path)
    img = _load(p)
    header = img.header
    try:
        with _nibabel_quiet():
            raw = img.dataobj.get_unscaled()
            slope = float(img.dataobj.slope)
            inter = float(img.dataobj.inter)
    except Exception as exc:
        raise InputError(f"{p}: cannot read the voxel data ({_first_line(exc)})") from exc
    if not np.isfinite(slope) or slope == 0:
        slope = 1.0
    if not np.isfinite(inter):
        inter = 0.0
    structured = raw.dtype.names is not None
    shape = raw.shape
    if len(shape) == 2:
        raw = raw[:, :, None]
    elif len(shape) == 4:
        n = shape[3]
        if volume_index is None:
            if n != 1:
                raise UsageError(
                    f"{p} is 4D with {n} volumes: pick one with --volume N (0 to {n - 1})"
                )
            volume_index = 0
        if not 0 <= volume_index < n:
            raise UsageError(f"--volume {volume_index}: {p} has volumes 0 to {n - 1}")
        raw = raw[..., volume_index]
    elif len(shape) == 5 and shape[3] == 1 and shape[4] == 3 and not structured:
        raw = raw[:, :, :, 0, :]  # vector-valued RGB
    elif len(shape) != 3:
        raise InputError(f"{p}: {len(shape)}D data of shape {shape}; medfuse reads 2D, 3D and 4D")
    # (``volume_index`` concerns 4D files only; a 3D MRI beside a 4D PET ignores it.)
    if structured:
        if not {"R", "G", "B"} <= set(raw.dtype.names or ()):
            raise InputError(f"{p}: unsupported structured datatype {raw.dtype}")
        raw = _rgb_from_structured(raw)
        slope, inter = 1.0, 0.0
    if raw.dtype.kind not in "biuf":
        raise InputError(f"{p}: unsupported voxel type {raw.dtype} (complex or other)")
    _check_scaling(raw, slope, inter, p)
    if min(raw.shape[:3]) < 1:
        raise InputError(f"{p}: empty volume of shape {raw.shape}")
    affine = check_affine(img.affine, str(p))
    sform, qform = int(header["sform_code"]), int(header["qform_code"])
    from medfuse.io.volume import Window

    window = Window.from_range(0.0, 255.0, "RGB full range") if raw.ndim == 4 else None
    return Volume(
        data=raw,
        affine=affine,
        path=p,
        format="nifti",
        modality=None,
        slope=slope,
        inter=inter,
        header_window=window,
        has_geometry=sform > 0 or qform > 0,
        nifti_header=header,
        description=header["descrip"].tobytes().decode("latin-1").rstrip("\x00").strip(),
    )


def xform_codes(like: Volume | None) -> tuple[int, int]:
    """(sform_code, qform_code) to write: the MRI's, or "scanner" when it had none."""
    header = like.nifti_header if like is not None else None
    if header is None:
        return SCANNER_ANAT, SCANNER_ANAT
    s, q = int(header["sform_code"]), int(header["qform_code"])
    s = s or q or SCANNER_ANAT
    return s, (q or s)


def allocate_output(shape: tuple[int, int, int], rgb: bool) -> np.ndarray:
    """A zeroed output volume in the on-disk (Fortran) order NIfTI uses, so saving it needs
    no reordered copy: RGB24 structured, or uint16 for grey."""
    return np.zeros(shape, dtype=RGB24 if rgb else np.uint16, order="F")


def channel_views(out: np.ndarray) -> list[np.ndarray]:
    """Writable (i, j, k) views of each colour channel (one view for grey)."""
    if out.dtype.names:
        return [out[c] for c in ("R", "G", "B")]
    return [out]


def write_nifti(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray,
    like: Volume | None = None,
    force: bool = False,
    inputs: tuple[Path, ...] = (),
    description: str = "medfuse fused",
    slope: float | None = None,
    inter: float = 0.0,
) -> Path:
    """Write ``data`` (i, j, k) with ``affine`` in sform and qform, atomically.

    ``data`` is RGB24-structured, (i, j, k, 3) uint8 (stored as RGB24), or a numeric array;
    ``slope``/``inter`` are stored as scl_slope/scl_inter (grey fused volumes use 1/65535 so
    readers get [0, 1]). Header codes and spatial units follow ``like`` (the MRI).
    """
    import nibabel as nib

    p = Path(path)
    name = p.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        raise UsageError(f"cannot write {p.name} as NIfTI: use .nii or .nii.gz")
    arr = np.asarray(data)
    if arr.ndim == 4 and arr.shape[3] == 3 and arr.dtype == np.uint8:
        arr = np.ascontiguousarray(arr).view(RGB24)[..., 0]
    affine = check_affine(affine, "output")
    img = nib.Nifti1Image(arr, affine)
    s_code, q_code = xform_codes(like)
    img.set_sform(affine, code=s_code)
    img.set_qform(affine, code=q_code)
    img.header.set_xyzt_units(xyz="mm")
    img.header["descrip"] = description[:79].encode("ascii", "replace")
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    with atomic_output(p, force=force, inputs=inputs) as tmp, open(tmp, "wb") as raw:
        # No file name and no time in the gzip header, so the same fusion gives the same
        # bytes; level 1 as nibabel writes (9 took 0.9 s against 0.1 s for a head volume).
        stream: Any = (gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=1)
                       if name.endswith(".gz") else raw)
        try:
            img.to_file_map(nib.Nifti1Image.make_file_map({"image": stream}))
        finally:
            if stream is not raw:
                stream.close()
    return p


__all__ = [
    "RGB24",
    "allocate_output",
    "channel_views",
    "read_nifti",
    "write_nifti",
    "xform_codes",
]
