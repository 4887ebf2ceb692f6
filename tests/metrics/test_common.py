"""medfuse.metrics._common: the MATLAB conversions the toolbox2022 profile depends on."""

from __future__ import annotations

import numpy as np

from medfuse.metrics import (
    matlab_uint8,
    round_half_away,
    to_grey,
)


def test_round_half_away_from_zero() -> None:
    got = round_half_away(np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999]))
    np.testing.assert_array_equal(got, [1.0, 2.0, 3.0, -1.0, -2.0, 0.0])


def test_matlab_uint8_rounds_and_saturates() -> None:
    got = matlab_uint8(np.array([-3.0, 12.5, 254.5, 300.0]))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, [0, 13, 255, 255])


def test_rgb2gray_is_rounded_matlab_weights() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(8, 9, 3), dtype=np.uint8)
    w = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    expected = np.floor(rgb.astype(np.float64) @ w + 0.5).clip(0, 255).astype(np.uint8)
    got = to_grey(rgb, "toolbox2022")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    grey_rgb = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    np.testing.assert_array_equal(to_grey(grey_rgb, "toolbox2022")[0], np.arange(256))
