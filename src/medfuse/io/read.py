"""``read``: any input medfuse takes (a DICOM file or series folder, a NIfTI file, an
ordinary image) as a :class:`~medfuse.io.volume.Volume`.

Why a module of its own: the readers import the ``Volume`` type, and the one entry point
imports the readers; with both in ``volume.py`` the package would be a circle.
"""

from __future__ import annotations

from pathlib import Path

from medfuse.errors import InputError, UsageError
from medfuse.io.layout import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES
from medfuse.io.volume import Volume


def input_format(path: Path) -> str:
    """``dicom``, ``nifti`` or ``image`` from the path (folders are DICOM series)."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UsageError(f"no such file or folder: {path}") from None
    except OSError as exc:  # a symlink loop, a name too long, no permission
        raise InputError(f"{path}: cannot open ({exc.strerror or exc})") from None
    name = path.name.lower()
    if stat.S_ISDIR(mode):
        return "dicom"
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular file (a pipe, device or socket)")
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    if path.suffix.lower() in DICOM_SUFFIXES:
        return "dicom"
    from medfuse.io.dicom.read import looks_like_dicom

    if looks_like_dicom(path):
        return "dicom"
    raise InputError(
        f"{path}: not a format medfuse reads (DICOM file or folder, .nii, .nii.gz, "
        f"or an image: {', '.join(IMAGE_SUFFIXES)})"
    )


def read(
    path: str | Path,
    series: list[str] | tuple[str, ...] = (),
    volume_index: int | None = None,
    modality: str | None = None,
) -> Volume:
    """Read a DICOM file or series folder, a NIfTI file or an ordinary image as a Volume.

    ``series`` lists Series Instance UIDs to choose from when a folder holds several;
    ``volume_index`` picks a volume of a 4D NIfTI; ``modality`` overrides what the file says.
    """
    p = Path(path)
    kind = input_format(p)
    if kind == "dicom":
        from medfuse.io.dicom.read import read_dicom

        vol = read_dicom(p, series=series)
    elif kind == "nifti":
        from medfuse.io.nifti import read_nifti

        vol = read_nifti(p, volume_index=volume_index)
    else:
        from medfuse.io.images import read_image

        vol = read_image(p)
    if modality is not None:
        vol.modality = modality
    return vol


__all__ = ["input_format", "read"]
