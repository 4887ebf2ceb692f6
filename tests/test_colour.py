"""Colour path: hand-computed values, round trips, the chroma rule's edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.colour import TAU, fuse_chroma, fuse_colour, rgb_to_ycbcr, ycbcr_to_rgb


def test_forward_hand_computed() -> None:
    # Pure red: Y = 0.299, Cr = 0.713 * (1 - 0.299) + 0.5, Cb = 0.564 * (0 - 0.299) + 0.5
    y, cb, cr = rgb_to_ycbcr(np.array([[1.0, 0.0, 0.0]]))
    assert y[0] == pytest.approx(0.299)
    assert cr[0] == pytest.approx(0.713 * 0.701 + 0.5)
    assert cb[0] == pytest.approx(0.564 * -0.299 + 0.5)


def test_grey_has_neutral_chroma() -> None:
    g = np.linspace(0, 1, 11)
    y, cb, cr = rgb_to_ycbcr(np.stack([g, g, g], -1))
    np.testing.assert_allclose(y, g, atol=1e-12)
    np.testing.assert_allclose(cb, TAU, atol=1e-12)
    np.testing.assert_allclose(cr, TAU, atol=1e-12)


def test_round_trip_within_coefficient_rounding() -> None:
    rgb = np.random.default_rng(0).random((32, 32, 3))
    back = ycbcr_to_rgb(*rgb_to_ycbcr(rgb), clip=False)
    # The paper's 3-digit coefficients are not an exact inverse: error stays under 1/255.
    assert np.abs(back - rgb).max() < 1 / 255


def test_inverse_clips() -> None:
    out = ycbcr_to_rgb(np.array([1.0]), np.array([1.0]), np.array([1.0]))
    assert out.min() >= 0 and out.max() <= 1


def test_chroma_rule_hand_computed() -> None:
    # C1 = 0.7 (|d| = 0.2), C2 = 0.4 (|d| = 0.1): (0.7*0.2 + 0.4*0.1) / 0.3 = 0.6
    out = fuse_chroma([np.array([0.7]), np.array([0.4])])
    assert out[0] == pytest.approx(0.6)


def test_chroma_rule_zero_over_zero_is_tau() -> None:
    out = fuse_chroma([np.array([0.5, 0.5]), np.array([0.5, 0.9])])
    assert out[0] == pytest.approx(TAU)
    assert out[1] == pytest.approx(0.9)  # one neutral source: the other passes through


def test_grey_plus_grey_gives_grey() -> None:
    y = np.random.default_rng(1).random((8, 8))
    neutral = np.full_like(y, TAU)
    rgb = fuse_colour(y, [(neutral, neutral), (neutral, neutral)])
    np.testing.assert_allclose(rgb[..., 0], rgb[..., 1], atol=1e-12)
    np.testing.assert_allclose(rgb[..., 1], rgb[..., 2], atol=1e-12)
    np.testing.assert_allclose(rgb[..., 0], y, atol=1e-12)


def test_two_colour_sources_weighted_by_saturation() -> None:
    strong, weak = np.array([0.9]), np.array([0.45])
    out = fuse_chroma([strong, weak])
    assert 0.45 < out[0] < 0.9 and abs(out[0] - 0.9) < abs(out[0] - 0.45)
