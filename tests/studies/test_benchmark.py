"""The study benchmark's metrics on hand-made cases (values known without the code), and one
small study scored end to end through the real fusion path with a stand-in engine."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medfuse.prepare.pair import split_pair
from medfuse.studies import Grid, generate_study
from medfuse.studies import benchmark as bench


def _disc(size: int = 32, radius: float = 10.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) <= radius**2


def test_identical_images_keep_all_anatomy() -> None:
    rng = np.random.default_rng(0)
    mri = rng.random((32, 32))
    mask = np.ones_like(mri, bool)
    assert bench.anatomy_retention(mri, mri, mask) == pytest.approx(1.0)
    assert bench.anatomy_retention(0.5 * mri + 0.2, mri, mask) == pytest.approx(1.0)  # scale-free
    assert bench.anatomy_retention(rng.random((32, 32)), mri, mask) < 0.3
    assert math.isnan(bench.pearson(np.ones(5), np.arange(5)))  # nothing to correlate


def test_background_of_black_and_grey_air() -> None:
    air = ~_disc()
    assert bench.background(np.zeros((32, 32)), air) == (0.0, 0.0)
    mean, above = bench.background(np.full((32, 32), 10 / 255), air)
    assert mean == pytest.approx(10.0) and above == 1.0
    almost = np.where(air, 4 / 255, 1.0)  # below 5/255 is still black; the head is ignored
    assert bench.background(almost, air)[1] == 0.0
    glow = np.zeros((32, 32, 3))
    glow[..., 2] = 0.1  # dark blue: luminance 2.9/255, but not black
    mean, above = bench.background(glow, air)
    assert mean == pytest.approx(0.114 * 0.1 * 255) and above == 1.0


def test_lab_of_known_colours() -> None:
    lab = bench.rgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(lab[1], [0.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)  # sRGB red, D65
    np.testing.assert_allclose(bench.rgb_to_lab(np.array(0.5)), bench.rgb_to_lab(np.full(3, 0.5)))


def test_function_retention_and_colour_error() -> None:
    core = _disc(radius=4)
    shell = _disc(radius=10) & ~_disc(radius=7)
    other = np.zeros((32, 32, 3), np.float32)
    other[core] = (1.0, 0.2, 0.0)
    other[shell] = (0.0, 0.2, 1.0)
    grey = np.full((32, 32, 3), 0.4, np.float32)
    assert bench.function_retention(other, other, core, shell) == pytest.approx(1.0)
    assert bench.function_retention(grey, other, core, shell) == pytest.approx(0.0)
    half = 0.5 * other + 0.5 * grey  # half the colour: less than all of the contrast
    assert 0.2 < bench.function_retention(half, other, core, shell) < 0.8
    assert bench.colour_error(other, other, core) == 0.0
    assert bench.colour_error(grey, other, core) > 50
    assert math.isnan(bench.colour_error(grey, other, np.zeros((32, 32), bool)))


def test_alpha_overlay_and_composite() -> None:
    mri = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    colour = np.zeros((32, 32, 3), np.float32)
    colour[..., 0] = 1.0
    level = np.where(_disc(), 0.9, 0.1).astype(np.float32)
    out = bench.alpha_overlay(mri, colour, level, alpha=0.5, threshold=0.25)
    np.testing.assert_array_equal(out[~_disc()], np.repeat(mri[~_disc()][:, None], 3, 1))
    np.testing.assert_allclose(out[_disc()][:, 0], 0.5 + 0.5 * mri[_disc()])
    np.testing.assert_allclose(out[_disc()][:, 1], 0.5 * mri[_disc()])
    pair = split_pair(np.full((32, 32), 0.5, np.float32), colour * 0.6, "pet")
    fused = bench.composite(pair)
    np.testing.assert_allclose(bench.luminance_of(fused), 0.5, atol=0.02)  # the MRI's luminance
    assert (fused[..., 0] > fused[..., 2]).all()  # the functional image's hue


def test_score_study_end_to_end(tmp_path: Path) -> None:
    """A tiny PET study scored through read_pair_plan / prepared_slices / fuse_prepared with
    the averaging stand-in engine: finite scores, and the composite keeps the MRI's edges."""
    from helpers.engines import MeanEngine

    study = generate_study("pet", tmp_path / "s", resolution=6.0, anatomy="phantom",
                           grid=Grid((8.0, 8.0, 8.0), "LPS"), formats=("nifti",))
    methods = [bench.Method("mean", "weights"), bench.Method("composite", "composite"),
               bench.Method("alpha", "alpha"), bench.Method("average", "rule")]
    settings = bench.BenchSettings(source="nifti")
    result = bench.run_benchmark([study], methods, settings, lambda m: MeanEngine(),
                                 picture_dir=tmp_path / "img", count=6)
    scores = {s.method: s for s in result.scores}
    assert scores["composite"].anatomy_r > 0.95
    for s in result.scores:
        assert s.slices >= 6 and set(s.lesion_ratio) == {"hot", "cold"}
        assert all(math.isfinite(v) for v in (s.anatomy_r, s.background_mean, s.air_above))
        assert 0.0 <= s.air_above <= 1.0
        for name, ratio in s.lesion_ratio.items():  # the ratio is the Lab distances' ratio
            lab = {k: np.array(v) for k, v in s.lesion_lab[name].items()}
            ours = np.linalg.norm(lab["core"] - lab["shell"])
            theirs = np.linalg.norm(lab["other_core"] - lab["other_shell"])
            assert ratio == pytest.approx(ours / theirs, rel=1e-3)
    assert (tmp_path / "img" / "pet.png").is_file()
    table = result.markdown()
    assert table.count("\n") == 2 + len(methods) and "| pet | composite |" in table
    assert result.write_json(tmp_path / "r.json").is_file()
