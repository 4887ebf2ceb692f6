"""One type for every medical input: a ``Volume`` (voxels as stored, plus geometry and units).

Readers (DICOM, NIfTI, ordinary images) all return a ``Volume``; everything downstream cuts
it into stacks of slices through :func:`medfuse.io.geometry.stack_view`, so the pixel order a
file happened to use never leaks out. Voxels stay in their stored dtype (int16 for most
scanners) and are scaled to scanner units (``slope``/``inter``) one slab at a time: a
512x512x300 volume is held once, not as several float32 copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.errors import InputError, UsageError
from medfuse.io.geometry import check_axis, stack_view, thin_axis
from medfuse.io.layout import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES
from medfuse.prepare.windowing import Window


@dataclass
class Volume:
    """Voxels and where they are.

    ``data`` is ``(i, j, k)`` or ``(i, j, k, 3)`` RGB in the stored dtype; ``affine`` maps
    ``(i, j, k)`` to RAS+ mm; scanner units are ``data * slope + inter``. A single slice is
    a volume one voxel thick along one axis.
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    format: str = "nifti"  # "dicom", "nifti" or "image"
    modality: str | None = None  # "mri", "ct", "pet", "spect" (medfuse.vocabulary) or None
    slope: float = 1.0
    inter: float = 0.0
    header_window: Window | None = None
    #: False when the file had no usable position/orientation (ordinary images, some
    #: secondary captures): the grid is then laid out as a 1 mm axial slice stack.
    has_geometry: bool = True
    #: First DICOM dataset of a series (headers only), to carry patient/study attributes.
    dicom: Any = None
    #: The NIfTI header, to carry sform/qform codes and units to the output.
    nifti_header: Any = None
    description: str = ""
    #: Bits per channel of an ordinary image file (None for DICOM/NIfTI).
    bit_depth: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape[:3])  # type: ignore[return-value]

    @property
    def is_rgb(self) -> bool:
        return self.data.ndim == 4

    @property
    def is_2d(self) -> bool:
        """A single slice: exactly one voxel thick along one axis."""
        return 1 in self.shape

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else "volume"

    @property
    def pixels(self) -> np.ndarray:
        """The one plane of a single-slice volume as float32 ``(H, W)`` or ``(H, W, 3)`` in
        display order and scanner units (for an ordinary image: the file's [0, 1] pixels)."""
        if not self.is_2d:
            raise InputError(f"{self.label} is a volume ({'x'.join(map(str, self.shape))}), "
                             "not a single slice")
        return np.ascontiguousarray(self.stack(self.default_axis(None)).values(0, 1)[0])

    def default_axis(self, requested: str | None) -> str:
        """Slicing axis: a single slice is cut along its thin axis whatever was asked."""
        if self.is_2d:
            thin = thin_axis(self.shape, self.affine)
            if thin is not None:
                return thin
        return check_axis(requested or "axial")

    def stack(self, axis: str) -> Stack:
        view, aff = stack_view(self.data, self.affine, axis)
        return Stack(view, aff, self, check_axis(axis))


@dataclass
class Stack:
    """A volume as ``(slice, row, column[, rgb])`` in display order (see io.geometry)."""

    data: np.ndarray
    affine: np.ndarray
    volume: Volume
    axis: str

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def plane_shape(self) -> tuple[int, int]:
        return int(self.data.shape[1]), int(self.data.shape[2])

    def values(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` in scanner units as float32 (a slab-sized copy)."""
        slab = np.asarray(self.data[start:stop], dtype=np.float32)
        v = self.volume
        if v.slope != 1.0:
            slab *= np.float32(v.slope)
        if v.inter != 0.0:
            slab += np.float32(v.inter)
        return slab


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
    from medfuse.io.dicom import looks_like_dicom

    if looks_like_dicom(path):
        return "dicom"
    raise InputError(
        f"{path}: not a format medfuse reads (DICOM file or folder, .nii, .nii.gz, "
        f"or an image: {', '.join(IMAGE_SUFFIXES)})"
    )


def image_volume(pixels: np.ndarray, path: Path | None = None, bit_depth: int | None = 8) -> Volume:
    """Wrap an ordinary image (grey (H, W) or RGB (H, W, 3) in [0, 1]) as a one-slice volume.

    It is given the geometry of a standard DICOM axial slice with 1 mm pixels (columns
    towards the patient's left, rows towards posterior), so its axial stack shows the image
    exactly as stored.
    """
    arr = np.asarray(pixels, dtype=np.float32)
    data = np.swapaxes(arr, 0, 1)[:, :, None]  # (W, H, 1[, 3])
    return Volume(
        data=np.ascontiguousarray(data),
        affine=np.diag([-1.0, -1.0, 1.0, 1.0]),
        path=path,
        format="image",
        header_window=Window(0.5, 1.0, "image [0, 1]"),
        has_geometry=False,
        bit_depth=bit_depth,
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
        from medfuse.io.dicom import read_dicom

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


__all__ = [
    "Stack",
    "Volume",
    "image_volume",
    "input_format",
    "read",
]
