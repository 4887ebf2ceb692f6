"""The study benchmark's metrics on hand-made cases (values known without the code), and one
small study scored end to end through the real fusion path with a stand-in engine."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medfuse.errors import UsageError
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


def test_grey_white_step_and_goals() -> None:
    """The step is white-minus-grey mean luminance; an inverted T1 keeps it negatively;
    the goals count what the issue's thresholds say."""
    labels = np.full((16, 16), 4, np.uint8)
    labels[:, 8:] = 5
    mri = np.where(labels == 5, 0.8, 0.6)
    pools = {}
    for name, fused in (("same", mri), ("inverted", 1.4 - mri), ("flat", np.full_like(mri, 0.7))):
        pool = bench._Pool()
        case = bench._Case(labels > 0, labels == 0, {}, {}, labels)
        bench._accumulate(pool, fused, bench.rgb_to_lab(fused), mri, bench.sobel_magnitude(mri),
                          case, np.zeros_like(mri, bool))
        pools[name] = pool
    assert bench.grey_white_step(pools["same"], "m") == pytest.approx(0.2)
    assert bench.grey_white_step(pools["same"]) == pytest.approx(0.2)
    assert bench.grey_white_step(pools["inverted"]) == pytest.approx(-0.2)
    assert bench.grey_white_step(pools["flat"]) == pytest.approx(0.0)

    def score(r: float, step: float, hot: float, study: str = "pet") -> bench.Scores:
        return bench.Scores(study, "m", r, {"hot": hot}, 0.0, 0.0, 0.0, 1, luminance_r=r,
                            edge_r=r, step_kept=step, bone_kept=0.9)

    comp = score(0.99, 1.0, 0.9)
    assert all(bench.goals_met(score(0.98, 0.8, 1.1), comp).values())
    met = bench.goals_met(score(0.95, -0.1, 0.95), comp)
    assert not met["grey/white step"] and not met["hot lesion"] and met["hot vs composite"]
    assert not met["anatomy vs composite"]  # 0.95 < 0.99 - 0.02
    ct = bench.goals_met(score(0.95, 0.9, 0.6, "ct"), None)
    assert ct["hot lesion"] and ct["bone white"]  # CT: half the CT's contrast is the goal


def test_variants_through_the_colour_path(tmp_path: Path) -> None:
    """Variants of the colour path run end to end and differ where they should: the MRI's
    luminance with the chroma desaturated to fit keeps the MRI exactly (luminance r and
    grey/white step 1), the composite's clipping and the stand-in engine's average do not;
    montages are written."""
    from helpers.engines import MeanEngine

    study = generate_study("pet", tmp_path / "s", resolution=6.0, anatomy="phantom",
                           grid=Grid((8.0, 8.0, 8.0), "LPS"), formats=("nifti",))
    methods = [bench.Method("mean", "weights"), bench.Method("composite", "composite"),
               bench.Method("clip", "weights", None, {"gamut_map": "clip"}),
               bench.Method("matched", "weights", None, {"luminance": "matched-value",
                                                         "combine": "skip"}),
               bench.Method("detail", "weights", None, {"luminance": "value",
                                                        "combine": "detail"}),
               bench.Method("exact", "weights", None, {"combine": "mri",
                                                       "gamut_map": "desaturate"})]
    result = bench.run_benchmark([study], methods, bench.BenchSettings(source="nifti"),
                                 lambda m: MeanEngine(), count=6, montage_dir=tmp_path / "m")
    scores = {s.method: s for s in result.scores}
    for s in scores.values():
        assert all(math.isfinite(v) for v in (s.luminance_r, s.edge_r, s.step_kept))
    exact = scores["exact"]
    assert exact.luminance_r == pytest.approx(1.0, abs=1e-3)
    assert exact.step_kept == pytest.approx(1.0, abs=0.01)
    assert exact.luminance_r > scores["composite"].luminance_r > scores["mean"].luminance_r
    assert scores["mean"].step_kept < 0.9
    assert scores["clip"].options == {"gamut_map": "clip"}
    assert (tmp_path / "m" / "study-pet.png").is_file()
    assert "goals met" in result.markdown()
    pair = split_pair(np.full((16, 16), 0.5, np.float32), np.full((16, 16, 3), 0.4, np.float32),
                      "pet")
    with pytest.raises(UsageError, match="variant luminance"):
        bench.variant_luminance(pair, pair, {"luminance": "nonsense"})
    with pytest.raises(UsageError, match="variant combine"):
        bench.variant_fuse([pair], [pair], MeanEngine(), {"combine": "nonsense"})
