"""medfuse.metrics.api: the reference vectors, NaN semantics, warnings, input checks and colour scoring."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers.metric_images import reference_dir
from helpers.metric_images import triple as _triple
from medfuse.metrics import (
    METRIC_NAMES,
    PROFILES,
    MetricsInputError,
    compute_metrics,
    compute_metrics_colour,
    nabf,
    ssim,
    to_grey,
)

CSV_METRICS = ("SSIM", "SD", "MI", "VIF", "SCD", "Qabf", "EN", "SF", "AG")
REL_TOL = 1e-3
REFERENCE = reference_dir()
ROWS = (
    list(csv.DictReader((REFERENCE / "metrics" / "toolbox2022_expected.csv").open()))
    if REFERENCE
    else []
)


def _load_rgb(path: Path) -> np.ndarray:
    image_mod = pytest.importorskip("PIL.Image")
    with image_mod.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _triple()


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


@pytest.mark.parametrize("profile", PROFILES)
def test_constant_images_give_nan_without_warnings(profile: str) -> None:
    c = np.full((32, 32), 77, dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = compute_metrics(c, c, c, profile=profile)
    assert set(got) == set(METRIC_NAMES)
    assert got["EN"] == 0.0 and got["SD"] == 0.0 and got["SF"] == 0.0 and got["AG"] == 0.0
    assert got["MI"] == pytest.approx(0.0, abs=1e-12)
    assert got["SSIM"] == pytest.approx(1.0)
    for name in ("VIF", "SCD"):
        assert math.isnan(got[name]), name
    if profile == "standard":
        assert math.isnan(got["Qabf"]) and math.isnan(got["Nabf"])
    else:  # zero-padded Sobel: the frame of a grey constant image is an edge
        assert np.isfinite(got["Qabf"]) and np.isfinite(got["Nabf"])
        black = np.zeros_like(c)
        assert math.isnan(compute_metrics(black, black, black, profile, ["Qabf"])["Qabf"])


@pytest.mark.parametrize("profile", PROFILES)
def test_tiny_images_do_not_warn(profile: str) -> None:
    rng = np.random.default_rng(6)
    a, b, f = (rng.integers(0, 256, size=(6, 7)).astype(np.uint8) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = compute_metrics(a, b, f, profile=profile)
    assert math.isnan(got["SSIM"])  # no 11x11 window fits
    assert math.isnan(got["VIF"])  # no 17x17 window fits
    assert np.isfinite(got["Qabf"])


def test_compute_metrics_api(triple: tuple[np.ndarray, ...]) -> None:
    a, b, f = triple
    assert METRIC_NAMES == ("EN", "SD", "SF", "AG", "MI", "SSIM", "VIF", "SCD", "Qabf", "Nabf")
    assert PROFILES == ("standard", "toolbox2022")
    full = compute_metrics(a, b, f)
    assert list(full) == list(METRIC_NAMES)
    assert all(isinstance(v, float) for v in full.values())
    sub = compute_metrics(a, b, f, metrics=["Qabf", "EN"])
    assert list(sub) == ["Qabf", "EN"]
    assert sub["Qabf"] == full["Qabf"] and sub["EN"] == full["EN"]
    assert compute_metrics(a, b, f) == full  # deterministic
    assert full["SSIM"] == ssim(a, b, f) and full["Nabf"] == nabf(a, b, f)


def test_uint8_and_float_agree_in_standard() -> None:
    rng = np.random.default_rng(7)
    a, b, f = (rng.integers(0, 256, size=(40, 40)).astype(np.uint8) for _ in range(3))
    assert compute_metrics(a, b, f) == compute_metrics(*(x.astype(np.float64) for x in (a, b, f)))


def test_bad_inputs_raise() -> None:
    x = np.zeros((16, 16))
    with pytest.raises(MetricsInputError):
        compute_metrics(x, x, x, profile="matlab")
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(x, x, x, metrics=["PSNR"])
    with pytest.raises(ValueError, match="same shape"):
        compute_metrics(x, x, np.zeros((16, 15)))
    with pytest.raises(ValueError, match="2-D grey"):
        compute_metrics(x, x, np.zeros((16, 16, 3)))
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(x, x, bad)


def test_colour_scoring_uses_profile_grey() -> None:
    rng = np.random.default_rng(8)
    rgb = [rng.integers(0, 256, size=(24, 24, 3)).astype(np.uint8) for _ in range(3)]
    y = [x.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) for x in rgb]
    np.testing.assert_allclose(to_grey(rgb[0]), y[0], rtol=0, atol=1e-12)
    assert compute_metrics_colour(*rgb) == pytest.approx(compute_metrics(*y), rel=1e-9)
    greys = [to_grey(x, "toolbox2022") for x in rgb]
    got = compute_metrics_colour(*rgb, profile="toolbox2022")
    want = compute_metrics(*greys, profile="toolbox2022")
    assert got.keys() == want.keys()
    # (uint8 noise saturates VIF's scale-1 products: its toolbox VIF is NaN on both sides)
    assert all(got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k])) for k in got)
    # grey sources pass through; colour and grey can be mixed
    mixed = compute_metrics_colour(y[0], rgb[1], rgb[2], metrics=["MI"])
    assert mixed == pytest.approx(compute_metrics(y[0], y[1], y[2], metrics=["MI"]))


def test_float_input_is_quantised_like_uint8() -> None:
    rng = np.random.default_rng(3)
    a, b, f = (rng.integers(0, 256, size=(24, 24)).astype(np.uint8) for _ in range(3))
    as_u8 = compute_metrics(a, b, f, profile="toolbox2022")
    as_float = compute_metrics(a + 0.2, b - 0.3, f.astype(np.float32), profile="toolbox2022")
    assert as_u8.keys() == as_float.keys()
    for name, value in as_u8.items():
        assert value == as_float[name] or (math.isnan(value) and math.isnan(as_float[name]))
