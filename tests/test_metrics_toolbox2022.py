"""The toolbox2022 profile: agreement with the reference csv and each documented quirk."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest

from medfuse.metrics import (
    compute_metrics,
    compute_metrics_colour,
    matlab_uint8,
    mi,
    qabf,
    round_half_away,
    sd,
    sf,
    to_grey,
    vif,
)

CSV_METRICS = ("SSIM", "SD", "MI", "VIF", "SCD", "Qabf", "EN", "SF", "AG")
REL_TOL = 1e-3


def _reference_dir() -> Path | None:
    """The read-only reference data: $MEDFUSE_SHARED or ../shared next to the repository."""
    roots = []
    if os.environ.get("MEDFUSE_SHARED"):
        roots.append(Path(os.environ["MEDFUSE_SHARED"]))
    roots.append(Path(__file__).resolve().parents[2] / "shared")
    for root in roots:
        for cand in (root / "reference", root):
            if (cand / "metrics" / "toolbox2022_expected.csv").is_file():
                return cand
    return None


REFERENCE = _reference_dir()
ROWS = (
    list(csv.DictReader((REFERENCE / "metrics" / "toolbox2022_expected.csv").open()))
    if REFERENCE
    else []
)


def _load_rgb(path: Path) -> np.ndarray:
    image_mod = pytest.importorskip("PIL.Image")
    with image_mod.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.skipif(REFERENCE is None, reason="shared reference data not available")
@pytest.mark.parametrize("row", ROWS, ids=[f"{r['task']}-{r['pair']}" for r in ROWS])
def test_matches_toolbox2022_csv(row: dict[str, str]) -> None:
    assert REFERENCE is not None
    task = row["task"]
    mod_a, mod_b = task.split("_")
    a = _load_rgb(REFERENCE / "samples" / task / mod_a / row["pair"])
    b = _load_rgb(REFERENCE / "samples" / task / mod_b / row["pair"])
    f = _load_rgb(REFERENCE / row["fused"])
    got = compute_metrics_colour(a, b, f, profile="toolbox2022", metrics=CSV_METRICS)
    bad = {
        name: (got[name], float(row[name]))
        for name in CSV_METRICS
        if not math.isclose(got[name], float(row[name]), rel_tol=REL_TOL)
    }
    assert not bad, f"outside {REL_TOL} relative: {bad}"


def test_csv_present_when_shared_exists() -> None:
    """Guard against the csv test silently collecting zero rows."""
    if REFERENCE is None:
        pytest.skip("shared reference data not available")
    assert len(ROWS) == 15


# --- MATLAB conversions -------------------------------------------------------------------


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


# --- quirks, each on a hand-computed case -------------------------------------------------


def test_sd_uses_uint8_saturation() -> None:
    # mean 50: deviations -50 -> 0 (saturated), +50 -> 50, squared 2500 -> 255
    f = np.array([[0, 0], [100, 100]], dtype=np.uint8)
    assert sd(f, "toolbox2022") == pytest.approx(math.sqrt(510 / 4))
    assert sd(f, "standard") == pytest.approx(50.0)


def test_mi_merges_levels_254_and_255_in_joint_histogram() -> None:
    f = np.array([[254, 255], [254, 255]], dtype=np.uint8)
    const = np.zeros_like(f)
    # standard: MI(F, F) = H(F) = 1 bit, MI(F, const) = 0. toolbox: both joint histograms
    # collapse to one bin (H = 0), so MI(F, F) = 1 + 1 - 0 = 2 and MI(F, const) = 1 + 0 - 0.
    assert mi(f, const, f, "standard") == pytest.approx(1.0)
    assert mi(f, const, f, "toolbox2022") == pytest.approx(3.0)


def test_sf_is_on_unit_scale() -> None:
    f = np.tile(np.arange(0, 100, 10, dtype=np.uint8), (6, 1))  # ramp of 10 per column
    assert sf(f, "standard") == pytest.approx(10.0)
    assert sf(f, "toolbox2022") == pytest.approx(10.0 / 255.0)


def test_vif_scale1_saturation_raises_score() -> None:
    rng = np.random.default_rng(1)
    a = (ndimage_smooth(rng.random((64, 64))) * 200 + 20).astype(np.uint8)
    b = (ndimage_smooth(rng.random((64, 64))) * 200 + 20).astype(np.uint8)
    f = matlab_uint8((a.astype(float) + b) / 2)
    assert vif(a, b, f, "toolbox2022") != pytest.approx(vif(a, b, f, "standard"), rel=1e-3)


def test_qabf_equal_gradients_use_gf_in_toolbox() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(32, 32)).astype(np.uint8)
    # F = A = B: every strength is equal. standard: G = 1 -> the maximum Q everywhere.
    q_max = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert qabf(x, x, x, "standard") == pytest.approx(q_max)
    # toolbox: G = gF on the 0..1 scale, which is not 1, so the score differs.
    assert qabf(x, x, x, "toolbox2022") != pytest.approx(q_max, rel=1e-3)


def test_float_input_is_quantised_like_uint8() -> None:
    rng = np.random.default_rng(3)
    a, b, f = (rng.integers(0, 256, size=(24, 24)).astype(np.uint8) for _ in range(3))
    as_u8 = compute_metrics(a, b, f, profile="toolbox2022")
    as_float = compute_metrics(a + 0.2, b - 0.3, f.astype(np.float32), profile="toolbox2022")
    assert as_u8.keys() == as_float.keys()
    for name, value in as_u8.items():
        assert value == as_float[name] or (math.isnan(value) and math.isnan(as_float[name]))


def ndimage_smooth(x: np.ndarray) -> np.ndarray:
    """Smooth noise so the test images have structure at VIF's scales."""
    from scipy import ndimage

    y = ndimage.gaussian_filter(x, 2.0)
    return (y - y.min()) / (y.max() - y.min())
