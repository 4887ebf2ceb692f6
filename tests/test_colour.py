"""medfuse.colour, the colour path the product calls (``luma``, ``rgb_to_ycbcr``,
``ycbcr_to_rgb``, ``fuse_chroma``, ``fit_luminance``): shapes, odd inputs, hand-computed
values, round trips, the chroma rule's edge cases, the gamut map, and gradients of the torch
path the training losses use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfuse.colour import (
    TAU,
    fit_luminance,
    fuse_chroma,
    fuse_colour,
    luma,
    luminance,
    luminance_ceiling,
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


# -- the gamut map ----------------------------------------------------------------------------


def _red_disc(size: int = 96, radius: int = 20) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2


def test_luminance_ceiling_is_where_a_channel_reaches_one() -> None:
    rng = np.random.default_rng(3)
    cb, cr = rng.uniform(0.1, 0.9, (2, 500))
    top = luminance_ceiling(cb, cr)
    rgb = ycbcr_to_rgb(top, cb, cr, clip=False)
    np.testing.assert_allclose(rgb.max(axis=-1)[top < 1], 1.0, atol=1e-9)
    assert (rgb.max(axis=-1) <= 1 + 1e-9).all()
    np.testing.assert_array_equal(luminance_ceiling(np.full(3, TAU), np.full(3, TAU)), 1.0)


def test_fit_leaves_colours_that_fit_alone() -> None:
    rng = np.random.default_rng(4)
    y = rng.uniform(0.0, 0.4, (40, 40)).astype(np.float32)
    cb = np.full_like(y, 0.45)
    cr = np.full_like(y, 0.6)  # a mild red: fits below Y 0.86
    np.testing.assert_array_equal(fit_luminance(y, cb, cr), y)


def test_fit_keeps_a_strong_colour_on_bright_anatomy() -> None:
    """Pure red (Cr 1) over bright, textured anatomy: clipping turns it pale pink; the fit
    lowers the luminance under the disc so the written red is nearly saturated, and the
    texture survives as a multiplicative pattern (edges correlate with the input's)."""
    rng = np.random.default_rng(5)
    size = 96
    y = (0.75 + 0.2 * rng.random((size, size))).astype(np.float32)
    disc = _red_disc(size)
    cr = np.where(disc, 0.95, TAU).astype(np.float32)
    cb = np.where(disc, 0.35, TAU).astype(np.float32)
    clipped = ycbcr_to_rgb(y, cb, cr)
    fitted_y = fit_luminance(y, cb, cr)
    fitted = ycbcr_to_rgb(fitted_y, cb, cr)
    core = _red_disc(size, 10)

    def redness(rgb: np.ndarray) -> float:
        return float((rgb[..., 0] - rgb[..., 1:].mean(-1))[core].mean())

    assert redness(fitted) > redness(clipped) + 0.15
    def excess(luma_plane: np.ndarray) -> float:  # how far red leaves RGB in the core
        return float(ycbcr_to_rgb(luma_plane, cb, cr, clip=False)[core].max(-1).mean() - 1)

    # Room is made, though not all of it: a region narrower than the blur gets part.
    assert excess(fitted_y) < 0.6 * excess(y)
    assert np.corrcoef(fitted_y[core], y[core])[0, 1] > 0.95  # texture kept, not flattened
    assert (fitted_y <= y + 1e-7).all()  # only ever lowered
    far = np.zeros_like(disc)
    far[:4, :4] = True  # two sigmas and more from the disc: untouched
    np.testing.assert_allclose(fitted_y[far], y[far], rtol=1e-3)


def test_fit_never_touches_kept_pixels_and_eases_towards_them() -> None:
    size = 96
    y = np.full((size, size), 0.9, np.float32)
    disc = _red_disc(size, 30)
    cr = np.where(disc, 0.95, TAU).astype(np.float32)
    cb = np.full_like(y, TAU)
    keep = np.zeros((size, size), bool)
    keep[:, size // 2 + 5 :] = True  # the right part of the disc shows the MRI
    out = fit_luminance(y, cb, cr, keep=keep)
    np.testing.assert_array_equal(out[keep], y[keep])
    row = out[size // 2, size // 2 - 10 : size // 2 + 5]  # from the disc's middle to keep
    assert np.all(np.diff(row) >= -1e-6)  # rises smoothly to the kept edge
    assert row[0] < 0.7 and row[-1] > 0.85  # and meets it without a step


def test_fit_scale_is_smooth_on_small_planes() -> None:
    """The blur never narrows below 16 pixels: on a 32x32 plane the scale is nearly one
    value, so it cannot flatten the anatomy's edges."""
    rng = np.random.default_rng(6)
    y = (0.6 + 0.35 * rng.random((32, 32))).astype(np.float32)
    cr = np.full_like(y, 0.9)
    cb = np.full_like(y, TAU)
    scale = fit_luminance(y, cb, cr) / y
    assert scale.max() - scale.min() < 0.15
    assert scale.max() < 1.0


# -- the luminance chosen for fusion -------------------------------------------------------


def test_matched_luminance_keeps_the_mri_contrast_and_adds_what_it_cannot_explain() -> None:
    """A functional image that is an inverted copy of the MRI's tissue pattern (FDG on T1)
    adds nothing; a lesion it holds beyond that pattern is added at its size and sign."""
    from medfuse.colour import anatomy_prediction, matched_luminance

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:96, 0:96]
    mri = np.where((xx // 12) % 2 == 0, 0.85, 0.6).astype(np.float32)  # white / grey bands
    mri += rng.normal(0, 0.01, mri.shape).astype(np.float32)
    func = (1.3 - mri).astype(np.float32)  # bright where the MRI is dark
    np.testing.assert_allclose(anatomy_prediction(mri, func), func, atol=0.02)
    np.testing.assert_allclose(matched_luminance(mri, func), mri, atol=0.02)
    lesion = ((yy - 48) ** 2 + (xx - 42) ** 2) <= 16  # inside a grey band
    hot = func + np.where(lesion, 0.3, 0.0).astype(np.float32)
    cold = func - np.where(lesion, 0.3, 0.0).astype(np.float32)
    far = ~(((yy - 48) ** 2 + (xx - 42) ** 2) <= 30**2)
    for image, sign in ((hot, 1), (cold, -1)):
        out = matched_luminance(mri, image)
        gain = float((out - mri)[lesion].mean())
        assert 0.15 < sign * gain <= 0.3  # most of the lesion's step, its sign
        assert float(np.abs(out - mri)[far].max()) < 0.05  # anatomy elsewhere untouched
    full = float((matched_luminance(mri, hot) - mri)[lesion].mean())
    half = matched_luminance(mri, hot, strength=0.5) - mri
    assert float(half[lesion].mean()) == pytest.approx(0.5 * full, rel=0.1)
    assert matched_luminance(mri, hot).min() >= 0.0 and matched_luminance(mri, hot).max() <= 1.0


def test_desaturate_to_fit_keeps_luminance_and_lands_in_rgb() -> None:
    """Blue on bright white matter has no RGB value: the chroma is pulled in until it fits
    and the luminance is exactly the one asked for; colours that fit are left alone."""
    from medfuse.colour import desaturate_to_fit

    y = np.array([0.9, 0.9, 0.3, 0.05], np.float32)
    rgb = np.array([[0.1, 0.2, 1.0], [0.9, 0.9, 0.9], [0.6, 0.2, 0.1], [0.0, 0.0, 1.0]])
    _, cb, cr = rgb_to_ycbcr(rgb.astype(np.float32))
    cb2, cr2 = desaturate_to_fit(y, cb, cr)
    out = ycbcr_to_rgb(y, cb2, cr2, clip=False)
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5
    np.testing.assert_allclose(luminance(out), y, atol=2e-3)  # the luminance kept
    assert abs(cb2[0] - TAU) < abs(cb[0] - TAU)  # pulled in, same sign
    assert np.sign(cb2[0] - TAU) == np.sign(cb[0] - TAU)
    np.testing.assert_allclose([cb2[2], cr2[2]], [cb[2], cr[2]], atol=1e-6)  # it fitted
