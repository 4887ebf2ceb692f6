"""One type for every medical input: a ``Volume`` (voxels as stored, plus geometry and units),
and the typed facts a file states beside it: its header :class:`Window` and, for a PET, its
:class:`SuvFacts`.

Readers (DICOM, NIfTI, ordinary images) all return a ``Volume``; everything downstream cuts
it into stacks of slices through :func:`medfuse.io.geometry.stack_view`, so the pixel order a
file happened to use never leaks out. Voxels stay in their stored dtype (int16 for most
scanners) and are scaled to scanner units (``slope``/``inter``) one slab at a time: a
512x512x300 volume is held once, not as several float32 copies.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.errors import InputError
from medfuse.io.geometry import check_axis, stack_view, thin_axis


@dataclass(frozen=True)
class Window:
    """A linear map ``[centre - width/2, centre + width/2] -> [0, 1]`` and how it was chosen.

    ``curve``, when set, replaces the linear map: a DICOM header's own VOI transform
    (VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID, or a VOI LUT Sequence) applied by
    pydicom, a callable from scanner units to float32 [0, 1]; ``centre`` and ``width``
    then only describe it (and place the transparency floor)."""

    centre: float
    width: float
    source: str = "explicit"
    curve: Any = field(default=None, compare=False, repr=False)

    @property
    def low(self) -> float:
        return self.centre - self.width / 2.0

    @property
    def high(self) -> float:
        return self.centre + self.width / 2.0

    @classmethod
    def from_range(cls, low: float, high: float, source: str) -> Window:
        return cls((low + high) / 2.0, high - low, source)

    def describe(self) -> str:
        return f"centre {self.centre:.6g}, width {self.width:.6g} ({self.source})"


@dataclass(frozen=True)
class SuvFacts:
    """What a PET series states that SUV (body weight) needs, read as it is: no judgement
    here (``medfuse.prepare.windowing.suv_factor`` decides whether it suffices). Times are
    naive datetimes in the scanner's local time, as DICOM stores them."""

    units: str | None = None  # Units (0054,1001): BQML, GML, CNTS ...
    weight_kg: float | None = None  # PatientWeight (0010,1030)
    dose_bq: float | None = None  # RadionuclideTotalDose (0018,1074)
    half_life_s: float | None = None  # RadionuclideHalfLife (0018,1075)
    injection: _dt.datetime | None = None  # RadiopharmaceuticalStart(Date)Time
    #: RadiopharmaceuticalStartTime alone (no date) was combined with the series date.
    injection_time_only: bool = False
    series_time: _dt.datetime | None = None  # SeriesDate + SeriesTime
    acquisition_time: _dt.datetime | None = None  # earliest AcquisitionDate/Time of the slices
    decay_correction: str | None = None  # DecayCorrection (0054,1102): START, ADMIN, NONE
    corrected_image: tuple[str, ...] = ()  # CorrectedImage (0028,0051)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (datetimes as ISO text), for the provenance record."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = value.isoformat() if isinstance(value, _dt.datetime) else (
                list(value) if isinstance(value, tuple) else value)
        return out


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
    #: What a PET series states that SUV needs (None for other modalities and formats).
    suv: SuvFacts | None = None
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


__all__ = [
    "Stack",
    "SuvFacts",
    "Volume",
    "Window",
    "image_volume",
]
