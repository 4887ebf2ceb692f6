"""DeviceResampler (torch grid_sample) against resample_slab (scipy), on CPU torch: the
same geometry, the same NaN-outside rule, values within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from helpers.synth import MR_AFFINE, OBLIQUE_PERMUTED, PET_AFFINE, pet_values, rng_image
from medfuse.io.geometry import DeviceResampler, resample_slab, resample_slab_device

torch = pytest.importorskip("torch")

CASES = {
    "pet-on-mri": (PET_AFFINE, MR_AFFINE, (32, 32)),
    "oblique-permuted": (OBLIQUE_PERMUTED, MR_AFFINE, (32, 32)),
    "same-grid": (MR_AFFINE, MR_AFFINE, (16, 16)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("rgb", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_scipy(case: str, rgb: bool, dtype: str) -> None:
    source_affine, target_affine, plane = CASES[case]
    src = rng_image((16, 16, 4), seed=5)
    if rgb:
        src = np.stack([src, 1 - src, src * 0.5], axis=-1)
    want = resample_slab(src, source_affine, target_affine, 1, 7, plane)
    got = DeviceResampler(src, source_affine, target_affine, plane,
                          dtype=getattr(torch, dtype)).slab(1, 7)
    assert got.shape == want.shape and got.dtype == np.float32
    nan = np.isnan(want)
    assert nan.any() and (~nan).any()  # both rules exercised
    np.testing.assert_array_equal(np.isnan(got), nan)
    assert np.abs(got - want)[~nan].max() <= (1e-6 if dtype == "float64" else 1e-4)


def test_one_slice_source_and_slabs_anywhere() -> None:
    """A source one voxel thick is inside only on its plane (the 1e-6 face rule); slabs
    can start anywhere in the target stack."""
    src = rng_image((16, 16, 1), seed=1)
    aff = PET_AFFINE.copy()
    for start, stop in ((0, 3), (2, 5), (7, 8)):
        want = resample_slab(src, aff, MR_AFFINE, start, stop, (32, 32))
        got = resample_slab_device(src, aff, MR_AFFINE, start, stop, (32, 32))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        both = ~np.isnan(want)
        assert not both.any() or np.abs(got - want)[both].max() <= 1e-6


def test_nan_in_the_source_spreads_like_scipy() -> None:
    """NaN voxels (no data) spread to their trilinear neighbourhood in both; the device may
    add only points next to a NaN voxel that sit exactly on a voxel centre (a zero-weight
    corner after rounding), never anywhere else."""
    src = pet_values()
    for source_affine, target_affine, plane in CASES.values():
        want = resample_slab(src, source_affine, target_affine, 0, 8, plane)
        got = DeviceResampler(src, source_affine, target_affine, plane).slab(0, 8)
        extra = np.isnan(got) & ~np.isnan(want)
        assert not (np.isnan(want) & ~np.isnan(got)).any()
        if extra.any():
            near = ndimage.binary_dilation(np.isnan(src), structure=np.ones((3, 3, 3)))
            coords = DeviceResampler(src, source_affine, target_affine, plane).coordinates(0, 8)
            idx = np.rint(coords.numpy()).astype(int)[(slice(None), *np.nonzero(extra))]
            assert near[tuple(idx)].all()
        both = ~np.isnan(want) & ~np.isnan(got)
        assert np.abs(got - want)[both].max() <= 1e-6


def test_integer_source_is_converted_on_the_device() -> None:
    src = (rng_image((16, 16, 4), seed=2) * 1000).astype(np.int16)
    want = resample_slab(src, PET_AFFINE, MR_AFFINE, 0, 8, (32, 32))
    got = resample_slab_device(src, PET_AFFINE, MR_AFFINE, 0, 8, (32, 32))
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    assert np.abs(got - want)[~nan].max() <= 1e-3  # of values up to 1000
