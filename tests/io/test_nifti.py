"""medfuse.io.nifti: reading 2D/3D/4D and RGB NIfTI, writing with the geometry kept."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from helpers.synth import MR_AFFINE, OBLIQUE_PERMUTED
from medfuse.errors import InputError, UsageError
from medfuse.io.nifti import read_nifti, write_nifti
from medfuse.io.read import read


def nib_data(name: str) -> Path:
    p = Path(nib.__file__).parent / "tests" / "data" / name
    if not p.is_file():
        pytest.skip(f"nibabel test file {name} not installed")
    return p


def test_round_trip_with_nans_and_geometry(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(6, 7, 5)).astype(np.float32)
    data[0, 0, 0] = np.nan
    aff = OBLIQUE_PERMUTED
    path = write_nifti(tmp_path / "v.nii.gz", data, aff)
    vol = read_nifti(path)
    assert vol.format == "nifti" and vol.modality is None and vol.has_geometry
    np.testing.assert_array_equal(np.asarray(vol.data), data)  # NaN kept as stored
    np.testing.assert_allclose(vol.affine, aff, atol=1e-6)
    img = nib.load(path)
    np.testing.assert_allclose(img.get_sform(), aff, atol=1e-6)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    with pytest.raises(UsageError, match="exists"):
        write_nifti(path, data, aff)


def test_rgb24_round_trip(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (5, 6, 4, 3), dtype=np.uint8)
    path = write_nifti(tmp_path / "rgb.nii", rgb, MR_AFFINE)
    img = nib.load(path)
    assert img.header["datatype"] == 128 and img.shape == (5, 6, 4)
    vol = read_nifti(path)
    assert vol.is_rgb
    np.testing.assert_array_equal(np.asarray(vol.data), rgb)


def test_4d_and_2d(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 3 * 2, dtype=np.int16).reshape(4, 5, 3, 2)
    path = write_nifti(tmp_path / "four.nii", data, np.eye(4))
    with pytest.raises(UsageError, match="--volume N"):
        read_nifti(path)
    with pytest.raises(UsageError, match="volumes 0 to 1"):
        read_nifti(path, volume_index=2)
    np.testing.assert_array_equal(np.asarray(read_nifti(path, 1).data), data[..., 1])
    np.testing.assert_array_equal(np.asarray(read(path, volume_index=1).data), data[..., 1])
    flat = read_nifti(write_nifti(tmp_path / "flat.nii", data[..., 0, 0], np.eye(4)))
    assert flat.is_2d and flat.shape == (4, 5, 1)
    assert flat.pixels.shape in ((4, 5), (5, 4))


def test_volume_index_ignored_for_3d(tmp_path: Path) -> None:
    """One --volume serves a 3D MRI beside a 4D PET."""
    data = np.ones((4, 4, 4), np.float32)
    path = write_nifti(tmp_path / "three.nii", data, np.eye(4))
    assert read_nifti(path, volume_index=3).shape == (4, 4, 4)


def test_bad_files(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    img.set_sform(np.zeros((4, 4)), code=1)
    img.set_qform(None, code=0)
    nib.save(img, tmp_path / "zero.nii")
    with pytest.raises(InputError, match="singular"):
        read_nifti(tmp_path / "zero.nii")
    (tmp_path / "junk.nii.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="not a readable NIfTI"):
        read_nifti(tmp_path / "junk.nii.gz")
    with pytest.raises(UsageError, match=".nii"):
        write_nifti(tmp_path / "x.img", np.zeros((2, 2, 2)), np.eye(4))
    with pytest.raises(UsageError, match="no such file"):
        read_nifti(tmp_path / "missing.nii")


def test_nibabel_sample_4d() -> None:
    path = nib_data("example4d.nii.gz")
    img = nib.load(path)
    vol = read_nifti(path, volume_index=1)
    assert vol.shape == img.shape[:3]
    np.testing.assert_allclose(vol.affine, img.affine)
    scaled = vol.stack("axial").values(0, vol.stack("axial").data.shape[0])
    assert np.isfinite(scaled).all()
