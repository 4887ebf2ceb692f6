"""medfuse.prepare.floor: the transparency floor decided by regions, not single pixels."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.prepare.floor import MIN_REGION_PIXELS, coherent, min_region_pixels


def test_region_size_follows_the_pixel_size() -> None:
    assert min_region_pixels((2.0, 2.0)) == 4
    assert min_region_pixels((1.0, 1.0)) == 16
    assert min_region_pixels((8.0, 8.0)) == MIN_REGION_PIXELS  # never a single pixel


def test_lone_pixels_follow_their_surroundings() -> None:
    below = np.zeros((1, 20, 20), bool)
    below[0, :, :8] = True  # air on the left: a large transparent region
    below[0, 10, 14] = True  # a lone grey pixel inside the coloured field
    below[0, 4, 15:17] = True  # two of them
    below[0, 15, 3] = False  # a lone coloured speck in air
    out = coherent(below, 4)
    assert not out[0, 10, 14] and not out[0, 4, 15:17].any()
    assert out[0, 15, 3]
    expected = np.zeros((20, 20), bool)
    expected[:, :8] = True
    np.testing.assert_array_equal(out[0], expected)  # boundaries stay where they were


def test_regions_at_the_size_limit_stay() -> None:
    below = np.zeros((1, 20, 20), bool)
    below[0, 5:7, 5:7] = True  # 4 pixels: not smaller than 4
    np.testing.assert_array_equal(coherent(below, 4), below)
    assert not coherent(below, 5).any()


def test_no_data_stays_transparent_and_slices_are_separate() -> None:
    below = np.zeros((2, 12, 12), bool)
    no_data = np.zeros_like(below)
    no_data[0, 3, 3] = True  # one voxel outside the field of view
    below |= no_data
    below[1, 6, 6] = True
    out = coherent(below, 4, no_data)
    assert out[0, 3, 3] and not out[1, 6, 6]
    assert out.sum() == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_near_the_floor_leaves_no_lone_pixel(seed: int) -> None:
    """Noisy activity just above the floor: the pixel rule leaves scattered grey pixels,
    the region rule none (every region left is at least the minimum size)."""
    from scipy import ndimage

    values = 1.2 + np.random.default_rng(seed).normal(0, 0.15, (1, 48, 48))
    below = values <= 1.0
    assert below.sum() > 10
    out = coherent(below, 4)
    for mask in (out[0], ~out[0]):
        labels, n = ndimage.label(mask, np.ones((3, 3), bool))
        assert n == 0 or np.bincount(labels.ravel())[1:].min() >= 4
