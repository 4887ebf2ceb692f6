"""medfuse.colour, the colour path the product calls (``luma``, ``rgb_to_ycbcr``,
``ycbcr_to_rgb``, ``fuse_chroma``): shapes, odd inputs, hand-computed values, round trips,
the chroma rule's edge cases, and gradients of the torch path the training losses use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfuse.colour import (
    TAU,
    fuse_chroma,
    fuse_colour,
    luma,
    luminance,
    rgb_to_ycbcr,
    ycbcr_planes,
    ycbcr_to_rgb,
)

# -- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3,), (5, 3), (4, 6, 3), (2, 4, 6, 3)])
def test_forward_shapes(shape: tuple[int, ...]) -> None:
    rgb = np.random.default_rng(0).random(shape)
    y, cb, cr = rgb_to_ycbcr(rgb)
    assert y.shape == cb.shape == cr.shape == shape[:-1]
    assert ycbcr_to_rgb(y, cb, cr).shape == shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_follow_the_input(dtype: type) -> None:
    rgb = np.random.default_rng(1).random((4, 4, 3)).astype(dtype)
    y, cb, cr = rgb_to_ycbcr(rgb)
    assert y.dtype == cb.dtype == cr.dtype == dtype
    assert ycbcr_to_rgb(y, cb, cr).dtype == dtype
    assert fuse_chroma([cb, cb]).dtype == dtype


def test_luma_matches_luminance_and_torch() -> None:
    rgb = np.random.default_rng(2).random((8, 8, 3))
    np.testing.assert_allclose(luma(rgb[..., 0], rgb[..., 1], rgb[..., 2]), luminance(rgb))
    t = torch.from_numpy(rgb)
    np.testing.assert_allclose(luma(t[..., 0], t[..., 1], t[..., 2]).numpy(), luminance(rgb))
    y, cb, cr = rgb_to_ycbcr(rgb)
    planes = ycbcr_planes(*(torch.from_numpy(a) for a in (y, cb, cr)))
    np.testing.assert_allclose(torch.stack(planes, -1).numpy(), ycbcr_to_rgb(y, cb, cr, clip=False))


# -- odd inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 4), (4, 4, 1), (0,)])
def test_forward_refuses_non_rgb(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\) RGB"):
        rgb_to_ycbcr(np.zeros(shape))


def test_empty_and_integer_inputs() -> None:
    y, cb, cr = rgb_to_ycbcr(np.zeros((0, 3)))
    assert y.shape == cb.shape == cr.shape == (0,)
    assert ycbcr_to_rgb(y, cb, cr).shape == (0, 3)
    yi, _, _ = rgb_to_ycbcr(np.array([[1, 1, 1]]))  # integers: plain arithmetic, float out
    assert yi[0] == pytest.approx(1.0) and yi.dtype.kind == "f"
    assert ycbcr_to_rgb([0.5], [0.5], [0.5]).shape == (1, 3)  # lists are accepted


def test_nan_stays_where_it_was() -> None:
    rgb = np.full((2, 2, 3), 0.5)
    rgb[0, 0, 1] = np.nan
    y, cb, cr = rgb_to_ycbcr(rgb)
    assert np.isnan(y[0, 0]) and np.isfinite(y.ravel()[1:]).all()
    out = ycbcr_to_rgb(y, cb, cr)
    assert np.isnan(out[0, 0]).all() and np.isfinite(out.reshape(4, 3)[1:]).all()


def test_chroma_rule_odd_inputs() -> None:
    with pytest.raises(ValueError):
        fuse_chroma([])
    with pytest.raises(ValueError):
        fuse_chroma([np.zeros(3), np.zeros(4)])  # shapes must agree
    assert fuse_chroma([np.zeros((0,))]).shape == (0,)


# -- hand-computed values -----------------------------------------------------------------


def test_forward_hand_computed() -> None:
    # Pure red: Y = 0.299, Cr = 0.713 * (1 - 0.299) + 0.5, Cb = 0.564 * (0 - 0.299) + 0.5
    y, cb, cr = rgb_to_ycbcr(np.array([[1.0, 0.0, 0.0]]))
    assert y[0] == pytest.approx(0.299)
    assert cr[0] == pytest.approx(0.713 * 0.701 + 0.5)
    assert cb[0] == pytest.approx(0.564 * -0.299 + 0.5)
    # Pure blue: Y = 0.114, Cb = 0.564 * 0.886 + 0.5, Cr = 0.713 * -0.114 + 0.5
    y, cb, cr = rgb_to_ycbcr(np.array([0.0, 0.0, 1.0]))
    assert (float(y), float(cb), float(cr)) == pytest.approx(
        (0.114, 0.564 * 0.886 + 0.5, 0.713 * -0.114 + 0.5))
    assert luma(1.0, 1.0, 1.0) == pytest.approx(1.0)
    assert luma(0.0, 1.0, 0.0) == pytest.approx(0.587)


def test_inverse_hand_computed() -> None:
    # Y = 0.5, Cb = 0.6, Cr = 0.4: R = 0.5 + 1.403 * -0.1, G = 0.5 + 0.0714 - 0.0344,
    # B = 0.5 + 1.773 * 0.1 (the paper's coefficients)
    rgb = ycbcr_to_rgb(np.array(0.5), np.array(0.6), np.array(0.4))
    np.testing.assert_allclose(rgb, [0.3597, 0.537, 0.6773], atol=1e-12)


def test_grey_has_neutral_chroma() -> None:
    g = np.linspace(0, 1, 11)
    y, cb, cr = rgb_to_ycbcr(np.stack([g, g, g], -1))
    np.testing.assert_allclose(y, g, atol=1e-12)
    np.testing.assert_allclose(cb, TAU, atol=1e-12)
    np.testing.assert_allclose(cr, TAU, atol=1e-12)


def test_chroma_rule_hand_computed() -> None:
    # C1 = 0.7 (|d| = 0.2), C2 = 0.4 (|d| = 0.1): (0.7*0.2 + 0.4*0.1) / 0.3 = 0.6
    out = fuse_chroma([np.array([0.7]), np.array([0.4])])
    assert out[0] == pytest.approx(0.6)
    # three sources: (0.9*0.4 + 0.2*0.3 + 0.5*0) / 0.7
    out = fuse_chroma([np.array([0.9]), np.array([0.2]), np.array([0.5])])
    assert out[0] == pytest.approx(0.42 / 0.7)


def test_chroma_rule_zero_over_zero_is_tau() -> None:
    out = fuse_chroma([np.array([0.5, 0.5]), np.array([0.5, 0.9])])
    assert out[0] == pytest.approx(TAU)
    assert out[1] == pytest.approx(0.9)  # one neutral source: the other passes through
    assert fuse_chroma([np.array([0.3])], tau=0.3)[0] == pytest.approx(0.3)  # another tau


def test_chroma_rule_is_a_weighted_mean() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(100), rng.random(100)
    out = fuse_chroma([a, b])
    assert (out >= np.minimum(a, b) - 1e-12).all() and (out <= np.maximum(a, b) + 1e-12).all()
    np.testing.assert_allclose(out, fuse_chroma([b, a]))  # order does not matter
    np.testing.assert_allclose(fuse_chroma([a]), a)  # one source passes through


def test_two_colour_sources_weighted_by_saturation() -> None:
    strong, weak = np.array([0.9]), np.array([0.45])
    out = fuse_chroma([strong, weak])
    assert 0.45 < out[0] < 0.9 and abs(out[0] - 0.9) < abs(out[0] - 0.45)


# -- round trips --------------------------------------------------------------------------


def test_round_trip_within_coefficient_rounding() -> None:
    rgb = np.random.default_rng(0).random((32, 32, 3))
    back = ycbcr_to_rgb(*rgb_to_ycbcr(rgb), clip=False)
    # The paper's 3-digit coefficients are not an exact inverse: error stays under 1/255.
    assert np.abs(back - rgb).max() < 1 / 255


def test_round_trip_of_8_bit_colours_is_exact_after_rounding() -> None:
    levels = np.arange(0, 256, 15) / 255.0
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    back = ycbcr_to_rgb(*rgb_to_ycbcr(rgb))
    np.testing.assert_array_equal(np.round(back * 255), np.round(rgb * 255))


def test_inverse_clips() -> None:
    out = ycbcr_to_rgb(np.array([1.0]), np.array([1.0]), np.array([1.0]))
    assert out.min() >= 0 and out.max() <= 1
    raw = ycbcr_to_rgb(np.array([1.0]), np.array([1.0]), np.array([1.0]), clip=False)
    assert raw.max() > 1  # without clip the overshoot is kept


def test_grey_plus_grey_gives_grey() -> None:
    y = np.random.default_rng(1).random((8, 8))
    neutral = np.full_like(y, TAU)
    rgb = fuse_colour(y, [(neutral, neutral), (neutral, neutral)])
    np.testing.assert_allclose(rgb[..., 0], rgb[..., 1], atol=1e-12)
    np.testing.assert_allclose(rgb[..., 1], rgb[..., 2], atol=1e-12)
    np.testing.assert_allclose(rgb[..., 0], y, atol=1e-12)


# -- gradients of the torch path ----------------------------------------------------------


def _inputs(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(2, 3, 4, dtype=torch.float64, generator=g).requires_grad_()
                 for _ in range(n))


def test_gradcheck_luma() -> None:
    assert torch.autograd.gradcheck(luma, _inputs(3, 0))


def test_gradcheck_ycbcr_planes() -> None:
    assert torch.autograd.gradcheck(ycbcr_planes, _inputs(3, 1))


def test_luma_gradient_is_the_coefficients() -> None:
    r, g, b = _inputs(3, 2)
    luma(r, g, b).sum().backward()
    for t, k in ((r, 0.299), (g, 0.587), (b, 0.114)):
        assert t.grad is not None
        torch.testing.assert_close(t.grad, torch.full_like(t, k))
