"""medfuse.prepare.pair: checking a pair of planes and splitting it for the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.synth import pydicom_sample, rng_image
from medfuse.colour import TAU, fuse_chroma, rgb_to_ycbcr, ycbcr_to_rgb
from medfuse.errors import InputError, UsageError
from medfuse.io.images import read_image, write_image
from medfuse.prepare.pair import (
    colourise,
    prepare_pair,
    resize_to,
    split_pair,
    stretch,
)


def test_too_small_rejected() -> None:
    with pytest.raises(InputError, match="8x8"):
        prepare_pair(np.zeros((4, 4)), np.zeros((4, 4)))


def test_colour_mri_rejected() -> None:
    rgb = np.zeros((16, 16, 3), np.float32)
    rgb[..., 0] = 1
    with pytest.raises(InputError, match="MRI must be grey"):
        prepare_pair(rgb, np.zeros((16, 16)))


def test_size_mismatch_names_both(tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.png", rng_image((16, 16)))
    b = write_image(tmp_path / "b.png", rng_image((20, 16)))
    with pytest.raises(InputError, match=r"16x16.*16x20.*--resize"):
        prepare_pair(a, b)
    assert prepare_pair(a, b, resize=True).other_y.shape == (16, 16)


def test_modality_inferred_and_overridden() -> None:
    grey, colour = rng_image((16, 16)), rng_image((16, 16, 3))
    assert prepare_pair(grey, grey).modality == "ct"
    assert prepare_pair(grey, colour).modality == "pet"
    assert prepare_pair(grey, colour, modality="spect").modality == "spect"
    assert prepare_pair(grey, colour, modality="PT").modality == "pet"
    assert not prepare_pair(grey, colour, modality="ct").colour  # CT chroma is dropped
    with pytest.raises(UsageError):
        prepare_pair(grey, grey, modality="xray")


def test_nan_and_range_rejected() -> None:
    a = rng_image((16, 16))
    a[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        prepare_pair(a, rng_image((16, 16)))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        prepare_pair(rng_image((16, 16)) * 255, rng_image((16, 16)))


def test_odd_shapes() -> None:
    with pytest.raises(InputError, match="shape"):
        prepare_pair(np.zeros((16, 16, 4)), np.zeros((16, 16)))
    with pytest.raises(InputError, match="shape"):
        prepare_pair(np.zeros(16), np.zeros((16, 16)))
    one = prepare_pair(np.zeros((16, 16, 1)), np.zeros((16, 16)))  # (H, W, 1) is grey
    assert one.mri_y.shape == (16, 16)


def test_inputs_as_paths_and_volumes(tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.png", rng_image((16, 16)))
    b = write_image(tmp_path / "b.png", rng_image((16, 16, 3), 1))
    from_paths = prepare_pair(a, b, name="x")
    from_volumes = prepare_pair(read_image(a), read_image(b))
    np.testing.assert_array_equal(from_paths.mri_y, from_volumes.mri_y)
    assert from_paths.colour and from_paths.name == "x"
    assert from_paths.other_image is not None and from_paths.other_image.shape == (16, 16, 3)


def test_dicom_volume_needs_the_plan() -> None:
    from medfuse.io.read import read

    ct = read(pydicom_sample("CT_small.dcm"))
    with pytest.raises(InputError, match="need a window"):
        prepare_pair(ct, ct)


def test_split_pair() -> None:
    rgb = rng_image((8, 8, 3), 2)
    p = split_pair(rng_image((8, 8)), rgb, "pet", "n")
    y, cb, cr = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(p.other_y, y, atol=1e-6)
    np.testing.assert_allclose(p.chroma[0][0], cb, atol=1e-6)
    np.testing.assert_allclose(p.chroma[0][1], cr, atol=1e-6)
    assert p.other_image is rgb and p.mri_y.dtype == np.float32
    assert split_pair(rng_image((8, 8)), rgb, "ct").chroma == []
    assert not split_pair(rng_image((8, 8)), rng_image((8, 8)), "pet").colour


def test_colourise() -> None:
    fused = rng_image((8, 8), 3)
    grey_pair = split_pair(fused, fused, "ct")
    out = colourise(fused * 2, grey_pair)
    assert out.ndim == 2 and out.max() <= 1.0  # grey stays grey, clipped
    pet = 0.3 + 0.4 * rng_image((8, 8, 3), 4)  # moderate colours: nothing clips
    pair = split_pair(fused, pet, "pet")
    rgb = colourise(pair.other_y, pair)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.float32
    # one colour source beside the neutral MRI: its chroma passes through, so the PET's own
    # luminance comes back as the PET (within the paper's 3-digit coefficients)
    np.testing.assert_allclose(rgb, pet, atol=1 / 255)
    _, cb, cr = rgb_to_ycbcr(rgb)
    assert np.abs(cb - TAU).max() > 0.01  # really coloured


def test_stretch() -> None:
    img = np.array([[0.2, 0.4], [0.6, 0.3]], np.float32)
    np.testing.assert_allclose(stretch(img), [[0.0, 0.5], [1.0, 0.25]], atol=1e-6)
    flat = np.full((2, 2), 0.3, np.float32)
    out = stretch(flat)
    assert out is not flat
    np.testing.assert_array_equal(out, flat)


def test_resize_to() -> None:
    big = rng_image((32, 40), 5)
    small = resize_to(big, (16, 20))  # area averaging
    assert small.shape == (16, 20) and small.dtype == np.float32
    np.testing.assert_allclose(small[0, 0], big[:2, :2].mean(), atol=1e-5)
    up = resize_to(np.full((4, 4, 3), 0.5, np.float32), (8, 8))
    assert up.shape == (8, 8, 3)
    np.testing.assert_allclose(up, 0.5, atol=1e-6)


def test_transparent_pixels_show_the_mri_exactly() -> None:
    """Where the other image is at or below its floor, the fused pixel is the MRI's grey:
    its luminance, neutral chroma, whatever the network said and whatever colour the map
    gave (jet's low end is dark blue, not black); elsewhere the chroma rule is untouched."""
    from medfuse.prepare.colormaps import apply_colormap

    mri = rng_image((8, 8), 6)
    activity = rng_image((8, 8), 7)
    below = activity < 0.3
    other = apply_colormap(activity, "jet")
    fused_y = rng_image((8, 8), 8)  # what a network might say
    for gamut_map in ("fit", "clip"):
        pair = split_pair(mri, other, "pet", transparent=below, gamut_map=gamut_map)
        rgb = colourise(fused_y, pair)
        np.testing.assert_array_equal(rgb[below], np.repeat(mri[below][:, None], 3, -1))
    # Per-channel clipping works pixel by pixel, so the others are as without a floor.
    plain = colourise(fused_y, split_pair(mri, other, "pet", gamut_map="clip"))
    np.testing.assert_array_equal(rgb[~below], plain[~below])
    assert np.abs(plain[below] - mri[below][:, None]).max() > 0.05  # it did matter
    grey = split_pair(mri, activity, "pet", transparent=below)  # --colormap none
    out = colourise(fused_y, grey)
    np.testing.assert_array_equal(out[below], mri[below])
    np.testing.assert_array_equal(out[~below], fused_y[~below])


def test_gamut_map_fit_by_default_clip_on_request() -> None:
    """The default keeps a strong colour on bright anatomy red; ``clip`` is the paper's
    per-channel clip, pixel by pixel; grey output is the same either way; an unknown name
    is a usage error naming the option."""
    size = 64
    mri = np.full((size, size), 0.95, np.float32)
    other = np.zeros((size, size, 3), np.float32)
    other[16:48, 16:48, 0] = 1.0  # a red square on black
    fused_y = mri.copy()
    fit = colourise(fused_y, split_pair(mri, other, "pet"))
    clip = colourise(fused_y, split_pair(mri, other, "pet", gamut_map="clip"))
    centre = (slice(28, 36), slice(28, 36))
    assert fit[centre][..., 1].mean() < clip[centre][..., 1].mean() - 0.2  # less pink
    y, cb, cr = rgb_to_ycbcr(other)
    neutral = np.full_like(cb, TAU)
    expected = ycbcr_to_rgb(fused_y, fuse_chroma([neutral, cb]), fuse_chroma([neutral, cr]))
    np.testing.assert_allclose(clip, expected, atol=1e-6)
    grey = np.full((size, size), 0.5, np.float32)
    for name in ("fit", "clip", " FIT "):
        out = colourise(fused_y, prepare_pair(mri, grey, "ct", gamut_map=name))
        np.testing.assert_array_equal(out, np.clip(fused_y, 0, 1))
    with pytest.raises(UsageError, match="--gamut-map"):
        prepare_pair(mri, other, "pet", gamut_map="pale")
    assert prepare_pair(mri, other, gamut_map="Clip").gamut_map == "clip"
