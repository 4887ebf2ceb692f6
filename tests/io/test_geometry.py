"""medfuse.io.geometry: stacks in display order, affines, resampling, slice planes, boxes."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.synth import MR_AFFINE, MR_SHAPE, OBLIQUE_PERMUTED
from medfuse.errors import InputError, UsageError
from medfuse.io.geometry import (
    box_overlap,
    check_affine,
    check_axis,
    resample_slab,
    same_grid,
    slice_plane,
    stack_view,
    thin_axis,
    world_box,
)


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_stack_view_keeps_every_voxel_in_place(axis: str) -> None:
    data = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    view, aff = stack_view(data, OBLIQUE_PERMUTED, axis)
    assert np.shares_memory(view, data)  # a view, never a copy
    for n, r, c in [(0, 0, 0), (1, 2, 3), (view.shape[0] - 1, view.shape[1] - 1, 0)]:
        i, j, k = np.argwhere(data == view[n, r, c])[0]
        np.testing.assert_allclose(aff @ [n, r, c, 1], OBLIQUE_PERMUTED @ [i, j, k, 1])


def test_stack_display_convention() -> None:
    """Axial: anterior at the top, patient right on the image left; slices go up."""
    _, aff = stack_view(np.zeros((3, 4, 5)), np.eye(4), "axial")
    assert aff[1, 1] < 0 and aff[0, 2] < 0 and aff[2, 0] > 0
    _, aff = stack_view(np.zeros((3, 4, 5)), np.eye(4), "sagittal")
    assert aff[2, 1] < 0 and aff[1, 2] < 0 and aff[0, 0] > 0  # superior top, anterior left


def test_same_anatomy_any_storage_order_gives_same_slices() -> None:
    """--axis/--slice mean the same thing whatever voxel order a file used (RAS canonical)."""
    ras = np.random.default_rng(0).random((6, 7, 8))
    aff_ras = np.diag([2.0, 2.0, 3.0, 1.0])
    # the same anatomy stored slice axis first, x and y reversed:
    # stored[a, b, c] = ras[5 - b, 6 - c, a]
    stored = np.ascontiguousarray(ras[::-1, ::-1, :].transpose(2, 0, 1))
    aff_stored = aff_ras @ np.array(
        [[0, -1, 0, 5], [0, 0, -1, 6], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float
    )
    for axis in ("axial", "coronal", "sagittal"):
        a, aa = stack_view(ras, aff_ras, axis)
        b, ab = stack_view(stored, aff_stored, axis)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(aa, ab)


def test_thin_axis_and_bad_affines() -> None:
    assert thin_axis((5, 6, 1), np.eye(4)) == "axial"
    assert thin_axis((1, 6, 5), np.eye(4)) == "sagittal"
    with pytest.raises(InputError, match="singular"):
        check_affine(np.zeros((4, 4)))
    with pytest.raises(InputError, match="singular"):
        check_affine(np.diag([1.0, 1.0, 0.0, 1.0]))
    with pytest.raises(InputError, match="NaN"):
        check_affine(np.full((4, 4), np.nan))


def test_check_axis() -> None:
    assert check_axis("axial") == "axial"
    with pytest.raises(UsageError, match="--axis"):
        check_axis("oblique")


def test_resample_slab_trilinear_and_outside_is_nan() -> None:
    src = np.arange(4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4)  # linear in i, j, k
    aff = np.eye(4)
    target = np.eye(4)
    target[:3, 3] = [0.5, 0.0, 0.0]  # half a voxel along i
    # target stack axes (n, r, c) = (i, j, k) here
    out = resample_slab(src, aff, target, 0, 4, (4, 4))
    np.testing.assert_allclose(out[:3], src[:3] + 8.0)  # +0.5 voxel * 16 per i step
    assert np.isnan(out[3]).all()  # beyond the last voxel: no data


def test_resample_slab_rgb_keeps_channels() -> None:
    src = np.zeros((4, 4, 4, 3), np.float32)
    src[..., 0], src[..., 2] = 1.0, 0.5
    out = resample_slab(src, np.eye(4), np.eye(4), 1, 3, (4, 4))
    assert out.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(out[..., 0], 1.0)
    np.testing.assert_allclose(out[..., 2], 0.5)


def test_slice_plane_geometry() -> None:
    _, aff = stack_view(np.zeros(MR_SHAPE), MR_AFFINE, "axial")
    plane = slice_plane(aff, 2)
    np.testing.assert_allclose(plane.position_lps, [-31.0, -31.0, 6.0])
    np.testing.assert_allclose(plane.row_cosine_lps, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(plane.column_cosine_lps, [0, 1, 0], atol=1e-12)
    assert plane.pixel_spacing == (2.0, 2.0) and plane.slice_spacing == 3.0


def test_boxes_and_grids() -> None:
    lo, hi = world_box((4, 4, 1), np.eye(4))
    np.testing.assert_allclose(lo, [-0.5, -0.5, -0.5])
    np.testing.assert_allclose(hi, [3.5, 3.5, 0.5])  # one slice still has thickness
    a = (np.zeros(3), np.full(3, 2.0))
    assert box_overlap(a, a) == pytest.approx(1.0)
    assert box_overlap(a, (np.ones(3), np.full(3, 3.0))) == pytest.approx(1 / 8)
    assert box_overlap(a, (np.full(3, 5.0), np.full(3, 6.0))) == 0.0
    assert same_grid((4, 4, 4), np.eye(4), (4, 4, 4), np.eye(4) + 1e-5)
    assert not same_grid((4, 4, 4), np.eye(4), (4, 4, 5), np.eye(4))
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    assert not same_grid((4, 4, 4), np.eye(4), (4, 4, 4), shifted)
