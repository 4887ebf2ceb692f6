"""Classical fusion rules: hand-made cases with known answers and the shared colour path."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse import baselines
from medfuse.colour import rgb_to_ycbcr
from medfuse.errors import InputError, UsageError
from medfuse.prepare.pair import colourise, prepare_pair

SHAPES = [(8, 8), (9, 13), (32, 32), (33, 17), (64, 48)]


def rng_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def smooth_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Blobs plus texture, in [0, 1]: enough structure for saliency and pyramids."""
    from scipy import ndimage

    noise = np.random.default_rng(seed).random(shape)
    img = ndimage.gaussian_filter(noise, 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return img.astype(np.float32)


def test_average_of_constants() -> None:
    a = np.full((16, 20), 0.2, np.float32)
    b = np.full((16, 20), 0.6, np.float32)
    np.testing.assert_allclose(baselines.average(a, b), 0.4, atol=1e-7)


def test_max_is_elementwise() -> None:
    a, b = rng_image((17, 23), 1), rng_image((17, 23), 2)
    np.testing.assert_array_equal(baselines.maximum(a, b), np.maximum(a, b))


@pytest.mark.parametrize("name", list(baselines.BASELINES))
@pytest.mark.parametrize("shape", SHAPES)
def test_identical_inputs_return_the_input(name: str, shape: tuple[int, int]) -> None:
    """Fusing an image with itself must change nothing, for every rule and odd sizes."""
    x = rng_image(shape, 3)
    out = baselines.BASELINES[name](x, x)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, x, atol=1e-6)


@pytest.mark.parametrize("name", list(baselines.BASELINES))
def test_output_in_range_and_deterministic(name: str) -> None:
    a, b = smooth_image((40, 36), 4), rng_image((40, 36), 5)
    out = baselines.BASELINES[name](a, b)
    assert out.min() >= 0.0 and out.max() <= 1.0 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, baselines.BASELINES[name](a, b))


def test_pyramid_reconstructs_exactly() -> None:
    x = rng_image((37, 29), 6).astype(np.float64)
    for levels in range(0, 3):
        pyr = baselines.laplacian_pyramid(x, levels)
        assert len(pyr) == levels + 1
        np.testing.assert_allclose(baselines.reconstruct_pyramid(pyr), x, atol=1e-12)


def test_pyramid_levels_fit_small_images() -> None:
    assert baselines.pyramid_levels((256, 256)) == 4
    assert baselines.pyramid_levels((32, 32)) == 2
    assert baselines.pyramid_levels((8, 8)) == 0
    assert baselines.pyramid_levels((256, 256), requested=2) == 2


def test_laplacian_of_constants_is_their_average() -> None:
    """No detail anywhere: only the averaged base is left."""
    a = np.full((32, 32), 0.1, np.float32)
    b = np.full((32, 32), 0.5, np.float32)
    np.testing.assert_allclose(baselines.laplacian(a, b), 0.3, atol=1e-6)


def test_laplacian_keeps_detail_of_the_sharper_source() -> None:
    """With a flat second source every detail coefficient comes from the first, so the
    fused image is the first plus a smooth offset: its detail matches the first's."""
    a = rng_image((64, 64), 7) * 0.5 + 0.25
    b = np.full((64, 64), 0.5, np.float32)
    fused = baselines.laplacian(a, b)
    detail = baselines.laplacian_pyramid(fused.astype(np.float64), 1)[0]
    detail_a = baselines.laplacian_pyramid(a.astype(np.float64), 1)[0]
    assert np.corrcoef(detail.ravel(), detail_a.ravel())[0, 1] > 0.99


def test_box_mean_matches_brute_force() -> None:
    x = rng_image((9, 7), 8).astype(np.float64)
    for r in (0, 1, 2, 10):
        got = baselines.box_mean(x, r)
        want = np.empty_like(x)
        for i in range(9):
            for j in range(7):
                want[i, j] = x[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean()
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_guided_filter_with_itself_as_guide_preserves_edges() -> None:
    """Guide = input and a tiny eps: every window is its own perfect linear model."""
    x = rng_image((24, 24), 9).astype(np.float64)
    np.testing.assert_allclose(baselines.guided_filter(x, x, 2, 1e-8), x, atol=1e-4)


def test_guided_filter_with_huge_eps_is_a_double_box_mean() -> None:
    x, p = rng_image((20, 20), 10).astype(np.float64), rng_image((20, 20), 11).astype(np.float64)
    got = baselines.guided_filter(x, p, 2, 1e9)
    want = baselines.box_mean(baselines.box_mean(p, 2), 2)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_gff_of_constants_is_their_average() -> None:
    a = np.full((30, 30), 0.2, np.float32)
    b = np.full((30, 30), 0.8, np.float32)
    np.testing.assert_allclose(baselines.gff(a, b), 0.5, atol=1e-6)


def test_gff_takes_detail_from_the_textured_source() -> None:
    a = smooth_image((64, 64), 12)
    b = np.full((64, 64), 0.5, np.float32)
    fused = baselines.gff(a, b).astype(np.float64)

    def detail(x: np.ndarray) -> np.ndarray:
        return x - baselines.box_mean(x.astype(np.float64), 3)

    assert np.corrcoef(detail(fused).ravel(), detail(a).ravel())[0, 1] > 0.95


def test_rules_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        baselines.average(np.zeros((8, 8)), np.zeros((8, 9)))


def test_names_and_aliases() -> None:
    assert baselines.canonical_name("Guided") == "gff"
    assert baselines.canonical_name("avg") == "average"
    with pytest.raises(UsageError, match="built-in rules"):
        baselines.canonical_name("wavelet")


@pytest.mark.parametrize("name", list(baselines.BASELINES))
def test_colour_path_is_gesenets(name: str) -> None:
    """A PET pair: luminance fused by the rule, chroma by the same rule GeSeNet uses."""
    mri = smooth_image((32, 32), 13)
    pet = np.stack([smooth_image((32, 32), s) for s in (14, 15, 16)], axis=-1)
    pair = prepare_pair(mri, pet, modality="pet")
    res = baselines.fuse_prepared([pair], name)[0]
    assert res.image.shape == (32, 32, 3) and res.modality == "pet"
    np.testing.assert_array_equal(res.fused_y, baselines.BASELINES[name](pair.mri_y, pair.other_y))
    np.testing.assert_array_equal(res.image, colourise(res.fused_y, pair))
    _, cb, cr = rgb_to_ycbcr(res.image)
    _, pcb, pcr = rgb_to_ycbcr(pet)
    inside = (res.image > 0.02).all(-1) & (res.image < 0.98).all(-1)  # unclipped pixels
    np.testing.assert_allclose(cb[inside], pcb[inside], atol=2e-3)
    np.testing.assert_allclose(cr[inside], pcr[inside], atol=2e-3)


def test_grey_pair_gives_grey_output_and_validation_matches_pipeline() -> None:
    mri, ct = smooth_image((32, 32), 17), smooth_image((32, 32), 18)
    res = baselines.fuse(mri, ct, method="laplacian")
    assert res.image.shape == (32, 32) and res.modality == "ct"
    with pytest.raises(InputError, match="size mismatch"):
        baselines.fuse(mri, smooth_image((16, 16), 19), method="average")
    res = baselines.fuse(mri, smooth_image((16, 16), 19), method="average", resize=True)
    assert res.image.shape == (32, 32)
