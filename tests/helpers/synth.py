"""Small synthetic images, DICOM series and NIfTI volumes with known geometry.

No tests here: the builders are imported by the test modules. Geometry used
throughout: an axial MRI of 32x32 pixels at 2 mm and 8 slices 3 mm apart, whose voxel
centres span x, y in [-31, 31] mm and z in [0, 21] mm (RAS), and a bright marker at the
world point MARKER_RAS that every derived volume shares.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medfuse.io.volume import Volume

MR_SHAPE = (32, 32, 8)  # (columns, rows, slices)
MR_SPACING = (2.0, 2.0, 3.0)
#: LPS position of the first voxel of the first slice.
MR_ORIGIN_LPS = np.array([-31.0, -31.0, 0.0])
#: RAS affine of the MRI's (column, row, slice) array: columns go to patient left (-x),
#: rows to posterior (-y), slices superior (+z).
MR_AFFINE = np.array(
    [[-2.0, 0, 0, 31.0], [0, -2.0, 0, 31.0], [0, 0, 3.0, 0.0], [0, 0, 0, 1.0]]
)
MARKER_RAS = np.array([9.0, -11.0, 9.0])
#: An oblique affine whose voxel axes are permuted against RAS (for geometry round trips).
OBLIQUE_PERMUTED = np.array(
    [[0.0, -2.0, 0.1, 40.0], [0.0, 0.1, 3.0, -20.0], [1.5, 0.0, 0.0, 5.0], [0, 0, 0, 1.0]]
)


def rng_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Seeded uniform float32 pixels in [0, 1)."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def pydicom_sample(name: str) -> Path:
    """A file bundled inside pydicom (never downloaded: these ship with the wheel); the
    calling test is skipped when it is missing."""
    import pytest
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom sample {name} not bundled")
    return Path(str(path))


def image_task(root: Path, n: int = 3, size: int = 32) -> Path:
    """``root/MRI/p<i>.png`` and ``root/PET/p<i>.png``: built-in phantom pairs (colour PET)."""
    from medfuse.io.images import write_image
    from medfuse.phantom import brain_phantom

    for i in range(n):
        mri, pet = brain_phantom(size, seed=i)
        write_image(root / "MRI" / f"p{i}.png", mri)
        write_image(root / "PET" / f"p{i}.png", pet)
    return root


def world_grid(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """RAS coordinates (3, i, j, k) of every voxel centre."""
    idx = np.indices(shape, dtype=np.float64)
    return np.einsum("ij,j...->i...", affine[:3, :3], idx) + affine[:3, 3].reshape(3, 1, 1, 1)


def head(shape: tuple[int, int, int], affine: np.ndarray, marker: float = 1.0) -> np.ndarray:
    """A 'head' in world space: an ellipsoid of radius 26 mm (value 0.5) with a 5 mm ball of
    value ``marker`` at MARKER_RAS; 0 outside. Same anatomy whatever the grid."""
    x, y, z = world_grid(shape, affine)
    out = np.where((x / 26) ** 2 + (y / 26) ** 2 + ((z - 10) / 20) ** 2 <= 1, 0.5, 0.0)
    d2 = (x - MARKER_RAS[0]) ** 2 + (y - MARKER_RAS[1]) ** 2 + (z - MARKER_RAS[2]) ** 2
    out[d2 <= 25.0] = marker
    return out


def mr_values() -> np.ndarray:
    """The MRI as int16 scanner values (0..1000), indexed (column, row, slice)."""
    return np.round(head(MR_SHAPE, MR_AFFINE) * 1000).astype(np.int16)


def write_mr_series(folder: Path, values: np.ndarray | None = None, *, series_uid: str | None = None,
                    shuffle: bool = True, modality: str = "MR", patient: str = "Doe^Jane") -> Path:
    """Write an axial DICOM series (one file per slice) from pydicom's MR_small.dcm template,
    files named and numbered in shuffled order so readers must sort by position."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    vals = mr_values() if values is None else values
    template = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    order = list(range(vals.shape[2]))
    if shuffle:
        random.Random(0).shuffle(order)
    for n, k in enumerate(order):
        ds = copy.deepcopy(template)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.Modality = modality
        ds.PatientName = patient
        ds.PatientID = "ID-42"
        ds.InstanceNumber = n + 1  # deliberately unrelated to position
        ds.Rows, ds.Columns = vals.shape[1], vals.shape[0]
        ds.PixelSpacing = [MR_SPACING[1], MR_SPACING[0]]
        ds.SliceThickness = MR_SPACING[2]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = list(MR_ORIGIN_LPS + np.array([0, 0, MR_SPACING[2] * k]))
        ds.WindowCenter, ds.WindowWidth = 500, 1000
        ds.PixelData = np.ascontiguousarray(vals[:, :, k].T.astype("<i2")).tobytes()
        ds.save_as(folder / f"file{n:03d}.dcm", enforce_file_format=True)
    return folder


#: A PET grid: 4 mm voxels, 6 mm slices, stored in RAS order, a different origin.
PET_SHAPE = (16, 16, 4)
PET_AFFINE = np.array(
    [[4.0, 0, 0, -30.0], [0, 4.0, 0, -30.0], [0, 0, 6.0, 0.5], [0, 0, 0, 1.0]]
)


def pet_values(nan_corner: bool = True) -> np.ndarray:
    """A PET activity volume (float32, kBq/ml-like) on PET_AFFINE with a hot marker and NaNs
    in one corner (background by contract)."""
    vals = (head(PET_SHAPE, PET_AFFINE, marker=8.0) * 2).astype(np.float32)
    if nan_corner:
        vals[:2, :2, :] = np.nan
    return vals


def pet_volume(affine: np.ndarray = PET_AFFINE, values: np.ndarray | None = None) -> Volume:
    """The PET as an in-memory NIfTI-like Volume (no file)."""
    from medfuse.io.volume import Volume

    return Volume(data=pet_values() if values is None else values, affine=affine, format="nifti")


def write_nifti(path: Path, values: np.ndarray, affine: np.ndarray) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(values, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path
