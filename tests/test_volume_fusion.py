"""Volume fusion as a library: grids, resampling, windows, colour maps, batching, warnings.

A stand-in engine (mean of the two luminance inputs) replaces the network, so these tests
check the data flow around GeSeNet, not GeSeNet itself, and run in milliseconds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from medfuse.prepare.colormaps import DEFAULT_COLORMAP, apply_colormap, pseudo_colour, resolve_colormap
from medfuse.errors import InputError, UsageError
from medfuse.io.volume import Volume, image_volume, read_volume
from medfuse.prepare.plan import (
    RegistrationWarning,
    fuse_plan,
    guess_modality,
    parse_slices,
    plan_fusion,
    take_slice,
)
from helpers.synth import (
    MR_AFFINE,
    MR_SHAPE,
    PET_AFFINE,
    pet_values,
    write_mr_series,
)


class MeanEngine:
    """Fuses by averaging; records the batch sizes it was given."""

    batch_size = 3

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def fuse_luminance(self, mri, other, with_masks=False):  # type: ignore[no-untyped-def]
        self.calls.append(tuple(mri.shape))
        return (mri + other) / 2, None, None


def pet_volume(affine: np.ndarray = PET_AFFINE, values: np.ndarray | None = None) -> Volume:
    return Volume(data=pet_values() if values is None else values, affine=affine, format="nifti")


@pytest.fixture
def mri(tmp_path: Path) -> Volume:
    return read_volume(write_mr_series(tmp_path / "mr"))


def peak(img: np.ndarray) -> np.ndarray:
    """Centroid of the marker: voxels above 70% of the maximum (robust to a flat-topped
    ball on the fine grid and a blurred one on the coarse grid)."""
    return np.argwhere(img >= 0.7 * img.max()).mean(axis=0)


def test_pet_on_coarser_grid_is_resampled_onto_mri(mri: Volume) -> None:
    plan = plan_fusion(mri, pet_volume(), "axial", modality="pet", colormap="none")
    assert plan.resampled and not plan.colour
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


def test_2d_against_3d(mri: Volume) -> None:
    flat = image_volume(np.zeros((32, 32), np.float32))
    with pytest.raises(InputError, match="2D image.*3D volume.*--slice"):
        plan_fusion(flat, mri)
    one = take_slice(mri, "axial", 3)
    assert one.is_2d and one.shape[0] == 1
    np.testing.assert_array_equal(one.stack("axial").data[0], mri.stack("axial").data[3])
    with pytest.raises(UsageError, match="slices 0 to 7"):
        take_slice(mri, "axial", 8)


def test_batches_are_bounded_and_nan_never_propagates(mri: Volume) -> None:
    engine = MeanEngine()
    plan = plan_fusion(mri, pet_volume(), modality="pet")
    results = list(fuse_plan(plan, engine))  # type: ignore[arg-type]
    assert [i for i, _ in results] == list(range(8))
    assert max(c[0] for c in engine.calls) <= 3  # one batch of slices at a time
    for _, res in results:
        assert res.image.shape == (32, 32, 3) and np.isfinite(res.image).all()


def test_slices_subset(mri: Volume) -> None:
    engine = MeanEngine()
    plan = plan_fusion(mri, pet_volume(), modality="pet")
    got = [i for i, _ in fuse_plan(plan, engine, [6, 1, 2])]  # type: ignore[arg-type]
    assert got == [1, 2, 6]


def test_parse_slices() -> None:
    assert parse_slices(None, 4) == [0, 1, 2, 3]
    assert parse_slices("3", 10) == [3]
    assert parse_slices("2:5,8", 10) == [2, 3, 4, 8]
    assert parse_slices("0:10:4", 10) == [0, 4, 8]
    assert parse_slices(":2", 10) == [0, 1]
    for bad, needle in (("12", "out of range"), ("5:20", "out of range"), ("a", "cannot read"),
                        ("1:5:0", "cannot read"), ("-1", "out of range")):
        with pytest.raises(UsageError, match=needle):
            parse_slices(bad, 10)


def test_modality_guess_and_windows(mri: Volume) -> None:
    ct = pet_volume(MR_AFFINE, np.where(np.ones(MR_SHAPE), -1000.0, 0).astype(np.float32))
    ct.data[8:24, 8:24, :] = 40.0
    mod, note = guess_modality(ct, None)
    assert mod == "ct" and "CT" in (note or "")
    with pytest.warns(UserWarning, match="look like CT"):
        plan = plan_fusion(mri, ct)
    assert plan.other_window.source == "CT default: preset brain"
    assert plan.mri_window.source == "DICOM header"
    assert not plan.colour
    assert guess_modality(pet_volume(), None)[0] == "pet"
    assert guess_modality(pet_volume(), "spect") == ("spect", None)
    with pytest.raises(UsageError):
        guess_modality(pet_volume(), "xray")


def test_colormaps() -> None:
    assert resolve_colormap("pet") == "rainbow" and resolve_colormap("spect") == "sunset"
    assert resolve_colormap("ct") is None and resolve_colormap("pet", "none") is None
    assert resolve_colormap("pet", "HOT") == "hot"
    with pytest.raises(UsageError, match="--colormap"):
        resolve_colormap("pet", "viridis")
    ramp = np.linspace(0, 1, 11, dtype=np.float32)
    for name in ("rainbow", "sunset", "hot"):
        rgb = apply_colormap(ramp, name)
        assert rgb.shape == (11, 3) and rgb[0].max() == 0.0  # background stays black
        lum = rgb @ np.array([0.299, 0.587, 0.114])
        assert lum[-1] > lum[0]
    grey = pseudo_colour(ramp, "pet", "none")
    assert grey is ramp
