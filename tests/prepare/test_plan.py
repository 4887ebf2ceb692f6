"""medfuse.prepare.plan: every decision about a pair made once (grid, windows, modality,
colour map), on tiny synthetic volumes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers.synth import MR_AFFINE, MR_SHAPE, PET_AFFINE, pet_values, pet_volume, write_mr_series
from medfuse.errors import InputError, UsageError
from medfuse.io.volume import Volume, image_volume, read
from medfuse.prepare.colormaps import DEFAULT_COLORMAP
from medfuse.prepare.plan import (
    ModalityWarning,
    RegistrationWarning,
    guess_modality,
    parse_slices,
    plan_fusion,
    take_slice,
)
from medfuse.prepare.windowing import Window


@pytest.fixture
def mri(tmp_path: Path) -> Volume:
    return read(write_mr_series(tmp_path / "mr"))


def peak(img: np.ndarray) -> np.ndarray:
    """Centroid of the marker: voxels above 70% of the maximum (robust to a flat-topped
    ball on the fine grid and a blurred one on the coarse grid)."""
    return np.argwhere(img >= 0.7 * img.max()).mean(axis=0)


def test_pet_on_coarser_grid_is_resampled_onto_mri(mri: Volume) -> None:
    plan = plan_fusion(mri, pet_volume(), "axial", modality="pet", colormap="none")
    assert plan.resampled and not plan.colour and len(plan) == 8
    k = 3  # z = 9 mm, the marker's slice
    mri_slice = plan.mri_slab(k, k + 1)[0]
    pet_slice = plan.other_slab(k, k + 1)[0]
    assert pet_slice.shape == mri_slice.shape == (32, 32)
    assert np.isfinite(pet_slice).all()
    # the PET marker (4 mm voxels) lands within a pixel or so of the MRI marker (2 mm)
    assert np.abs(peak(pet_slice) - peak(mri_slice)).max() <= 1.0
    # display convention: the marker is at patient right (image left), posterior (lower half)
    r, c = peak(mri_slice)
    assert c < 16 and r > 16
    assert "resampled onto the MRI grid" in plan.describe()


@pytest.mark.parametrize("axis", ["coronal", "sagittal"])
def test_other_axes_keep_alignment(mri: Volume, axis: str) -> None:
    plan = plan_fusion(mri, pet_volume(), axis, modality="pet", colormap="none")
    mri_all = plan.mri_slab(0, len(plan))
    pet_all = plan.other_slab(0, len(plan))
    assert np.abs(peak(pet_all) - peak(mri_all)).max() <= 1.0


def test_same_grid_is_not_resampled(mri: Volume) -> None:
    vals = np.random.default_rng(0).random(MR_SHAPE).astype(np.float32)
    plan = plan_fusion(mri, pet_volume(MR_AFFINE, vals), modality="pet")
    assert not plan.resampled
    assert plan.colour and plan.colormap == DEFAULT_COLORMAP["pet"]
    assert plan.other_slab(0, 2).shape == (2, 32, 32, 3)
    assert "modality pet; colour map rainbow" in plan.describe()


def test_no_overlap_is_refused(mri: Volume) -> None:
    far = PET_AFFINE.copy()
    far[0, 3] += 500.0
    with pytest.raises(InputError, match="do not overlap in space.*does not register"):
        plan_fusion(mri, pet_volume(far), modality="pet")


def test_poor_overlap_warns(mri: Volume) -> None:
    shifted = PET_AFFINE.copy()
    shifted[0, 3] += 45.0
    with pytest.warns(RegistrationWarning, match="co-registered"):
        plan_fusion(mri, pet_volume(shifted), modality="pet")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegistrationWarning)
        plan_fusion(mri, pet_volume(), modality="pet")  # aligned: no warning


def test_missing_geometry(mri: Volume) -> None:
    vals = np.random.default_rng(0).random(MR_SHAPE).astype(np.float32)
    same_size = Volume(data=vals, affine=np.eye(4), has_geometry=False)
    with pytest.warns(RegistrationWarning, match="no position/orientation"):
        plan = plan_fusion(mri, same_size, modality="pet")
    assert not plan.resampled
    other_size = Volume(data=pet_values(), affine=np.eye(4), has_geometry=False)
    with pytest.raises(InputError, match="cannot be placed on the MRI grid"):
        plan_fusion(mri, other_size, modality="pet")


def test_2d_against_3d(mri: Volume) -> None:
    flat = image_volume(np.zeros((32, 32), np.float32))
    with pytest.raises(InputError, match="2D image.*3D volume.*--slice"):
        plan_fusion(flat, mri)
    with pytest.raises(InputError, match="2D image.*3D volume.*--slice"):
        plan_fusion(mri, flat)
    one = take_slice(mri, "axial", 3)
    assert one.is_2d and one.shape[0] == 1
    np.testing.assert_array_equal(one.stack("axial").data[0], mri.stack("axial").data[3])
    with pytest.raises(UsageError, match="slices 0 to 7"):
        take_slice(mri, "axial", 8)


def test_slice_of_a_volume_beside_an_image(mri: Volume) -> None:
    """A slice cut from a volume keeps its place in space and plans as a 2D pair."""
    one = take_slice(mri, "axial", 3)
    np.testing.assert_allclose(one.affine @ [0, 0, 0, 1], mri.stack("axial").affine @ [3, 0, 0, 1])
    plan = plan_fusion(one, image_volume(np.full((32, 32), 0.5, np.float32)))
    assert plan.two_d and plan.modality == "ct" and plan.plane_shape == (32, 32)


def test_2d_pairs(tmp_path: Path) -> None:
    grey = image_volume(np.random.default_rng(0).random((16, 16), dtype=np.float32))
    colour = image_volume(np.random.default_rng(1).random((16, 16, 3), dtype=np.float32))
    plan = plan_fusion(grey, colour)
    assert plan.two_d and plan.modality == "pet" and plan.colour and plan.colormap is None
    assert plan.describe().startswith("2D pair; modality pet")
    np.testing.assert_allclose(plan.other_slab(0, 1)[0], colour.pixels, atol=1e-6)
    small = image_volume(np.zeros((8, 12), np.float32))
    with pytest.raises(InputError, match="size mismatch"):
        plan_fusion(grey, small)
    resized = plan_fusion(grey, small, resize=True)
    assert resized.other_slab(0, 1).shape == (1, 16, 16)
    assert "resized onto the MRI grid" in resized.describe()
    tiny = image_volume(np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="8x8 or more"):
        plan_fusion(tiny, tiny)


def test_grey_mri_rule() -> None:
    """An RGB MRI whose channels agree is grey content stored as colour; real colour is not."""
    g = np.random.default_rng(2).random((16, 16), dtype=np.float32)
    as_rgb = image_volume(np.stack([g, g, g], -1))
    plan = plan_fusion(as_rgb, image_volume(g))
    np.testing.assert_allclose(plan.mri_slab(0, 1)[0], g, atol=1e-6)
    coloured = np.stack([g, g, g], -1)
    coloured[..., 0] = 1.0
    with pytest.raises(InputError, match="MRI must be grey"):
        plan_fusion(image_volume(coloured), image_volume(g))


def test_slab_windows_nan_to_background(mri: Volume) -> None:
    plan = plan_fusion(mri, pet_volume(MR_AFFINE, np.full(MR_SHAPE, np.nan, np.float32)),
                       modality="pet", other_window=Window(0.5, 1.0), colormap="none")
    slab = plan.other_slab(0, 8)
    assert np.isfinite(slab).all() and slab.max() == 0.0


def test_modality_guess_and_windows(mri: Volume) -> None:
    ct = pet_volume(MR_AFFINE, np.where(np.ones(MR_SHAPE), -1000.0, 0).astype(np.float32))
    ct.data[8:24, 8:24, :] = 40.0
    mod, note = guess_modality(ct, None)
    assert mod == "ct" and "CT" in (note or "")
    with pytest.warns(ModalityWarning, match="look like CT"):
        plan = plan_fusion(mri, ct)
    assert plan.notes and "look like CT" in plan.notes[0]
    assert plan.other_window.source == "CT default: preset brain"
    assert plan.mri_window.source == "DICOM header"
    assert not plan.colour
    assert guess_modality(pet_volume(), None)[0] == "pet"
    assert guess_modality(pet_volume(), "spect") == ("spect", None)
    tagged = pet_volume()
    tagged.modality = "spect"
    assert guess_modality(tagged, None) == ("spect", None)  # the DICOM Modality
    assert guess_modality(image_volume(np.zeros((8, 8))), None) == ("ct", None)
    assert guess_modality(image_volume(np.zeros((8, 8, 3))), None) == ("pet", None)
    with pytest.raises(UsageError):
        guess_modality(pet_volume(), "xray")


def test_explicit_windows_win(mri: Volume) -> None:
    w = Window(100.0, 50.0, "explicit")
    plan = plan_fusion(mri, pet_volume(), modality="pet", mri_window=w, other_window=w)
    assert plan.mri_window == w and plan.other_window == w


def test_parse_slices() -> None:
    assert parse_slices(None, 4) == [0, 1, 2, 3]
    assert parse_slices("  ", 4) == [0, 1, 2, 3]
    assert parse_slices("3", 10) == [3]
    assert parse_slices("2:5,8", 10) == [2, 3, 4, 8]
    assert parse_slices("0:10:4", 10) == [0, 4, 8]
    assert parse_slices(":2", 10) == [0, 1]
    assert parse_slices("8:", 10) == [8, 9]
    assert parse_slices("3,3,1", 10) == [1, 3]
    for bad, needle in (("12", "out of range"), ("5:20", "out of range"), ("a", "cannot read"),
                        ("1:5:0", "cannot read"), ("-1", "out of range"), (",", "no slices"),
                        ("1:2:3:4", "cannot read")):
        with pytest.raises(UsageError, match=needle):
            parse_slices(bad, 10)
