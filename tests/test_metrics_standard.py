"""The standard profile: known answers, an independent SSIM, NaN semantics and the API."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from medfuse.metrics import (
    METRIC_NAMES,
    PROFILES,
    MetricsInputError,
    ag,
    compute_metrics,
    compute_metrics_colour,
    edge_preservation,
    en,
    mef_ssim,
    mi,
    nabf,
    qabf,
    scd,
    sd,
    sf,
    ssim,
    ssim_wang,
    to_grey,
    vif,
    vifp_mscale,
)

Q_MAX = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))


def _textured(seed: int, shape: tuple[int, int] = (64, 64), sigma: float = 1.5) -> np.ndarray:
    """Smoothed noise on 0..255: structure at every scale the windowed metrics look at."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random(shape), sigma)
    return (x - x.min()) / (x.max() - x.min()) * 235.0 + 10.0


@pytest.fixture(scope="module")
def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = _textured(10), _textured(11)
    return a, b, 0.5 * (a + b)


# --- single-image metrics -----------------------------------------------------------------


def test_en_known_answers() -> None:
    assert en(np.full((8, 8), 7.0)) == 0.0
    halves = np.zeros((8, 8))
    halves[:, 4:] = 200
    assert en(halves) == pytest.approx(1.0)
    assert en(np.arange(256, dtype=np.uint8).reshape(16, 16)) == pytest.approx(8.0)


def test_sd_is_population_std(triple: tuple[np.ndarray, ...]) -> None:
    f = triple[2]
    assert sd(f) == pytest.approx(float(np.std(f)))
    assert sd(np.full((5, 5), 3.0)) == 0.0


def test_sf_and_ag_on_ramps() -> None:
    ramp = np.tile(np.arange(12, dtype=np.float64) * 4.0, (9, 1))  # +4 per column
    assert sf(ramp) == pytest.approx(4.0)
    assert sf(ramp.T) == pytest.approx(4.0)
    assert ag(ramp) == pytest.approx(4.0 / math.sqrt(2.0))
    rows, cols = np.mgrid[0:9, 0:12]
    plane = 3.0 * rows + 4.0 * cols  # differences 3 and 4: a 3-4-5 triangle
    assert sf(plane) == pytest.approx(5.0)
    assert ag(plane) == pytest.approx(5.0 / math.sqrt(2.0))
    const = np.full((6, 6), 9.0)
    assert sf(const) == 0.0 and ag(const) == 0.0


def test_ag_toolbox_uses_matlab_gradient() -> None:
    ramp = np.tile(np.arange(10, dtype=np.uint8) * 3, (7, 1))
    expected = 7 * 10 * (3.0 / math.sqrt(2.0)) / (6 * 9)  # gradient is 3 everywhere
    assert ag(ramp, "toolbox2022") == pytest.approx(expected)


# --- source-aware metrics: known answers --------------------------------------------------


def test_mi_copy_of_source(triple: tuple[np.ndarray, ...]) -> None:
    a, _, _ = triple
    a = np.round(a)
    const = np.full_like(a, 40.0)
    # MI(F, A) = H(A) when F = A; a constant B shares no information.
    assert mi(a, const, a) == pytest.approx(en(a))
    assert mi(a, const, const) == pytest.approx(0.0, abs=1e-12)


def test_mi_is_in_bits() -> None:
    x = np.zeros((4, 4))
    x[:, 2:] = 100
    assert mi(x, x, x) == pytest.approx(2.0)  # 1 bit with each source


def test_ssim_identity_and_skimage(triple: tuple[np.ndarray, ...]) -> None:
    a, b, f = triple
    assert ssim(a, a, a) == pytest.approx(1.0)
    metrics = pytest.importorskip("skimage.metrics")

    def sk(x: np.ndarray, y: np.ndarray) -> float:
        return float(
            metrics.structural_similarity(
                x,
                y,
                data_range=255.0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
        )

    assert ssim_wang(f, a) == pytest.approx(sk(f, a), abs=1e-9)
    assert ssim(a, b, f) == pytest.approx(0.5 * (sk(f, a) + sk(f, b)), abs=1e-9)


def test_ssim_decreases_with_shift() -> None:
    a = _textured(12, (80, 80), sigma=2.0)
    scores = [ssim_wang(np.roll(a, k, axis=1)[:, 8:72], a[:, 8:72]) for k in range(4)]
    assert scores[0] == pytest.approx(1.0)
    assert all(s1 > s2 for s1, s2 in itertools.pairwise(scores))


def _mef_ssim_direct(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Patch-by-patch MEF-SSIM written straight from Ma et al. (2015), for cross-checking."""
    win = 11
    g1 = np.exp(-((np.arange(win) - 5.0) ** 2) / (2 * 1.5**2))
    gw = np.outer(g1, g1)
    gw /= gw.sum()
    c = (0.03 * 255) ** 2
    eps = np.finfo(float).eps
    scores = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            patches = [x[i : i + win, j : j + win].astype(float) for x in (a, b)]
            centred = [p - p.mean() for p in patches]
            norms = [np.linalg.norm(cp) for cp in centred]
            ed = [n + 0.001 for n in norms]
            r = (np.linalg.norm(centred[0] + centred[1]) + eps) / (sum(norms) + eps)
            r = min(max(r, eps), 1 - eps) if r > 1 or r < 0 else r
            p = min(math.tan(math.pi / 2 * r), 10.0)
            w = np.array([(e / win) ** p + eps for e in ed])
            w /= w.sum()
            ref = sum(w[k] * centred[k] / ed[k] for k in range(2))
            if np.linalg.norm(ref) > 0:
                ref = ref / np.linalg.norm(ref) * max(ed)
            fp = f[i : i + win, j : j + win].astype(float)
            mr, mf = (gw * ref).sum(), (gw * fp).sum()
            vr = (gw * (ref - mr) ** 2).sum()
            vf = (gw * (fp - mf) ** 2).sum()
            cov = (gw * (ref - mr) * (fp - mf)).sum()
            scores.append((2 * cov + c) / (vr + vf + c))
    return float(np.mean(scores))


def test_mef_ssim_matches_patchwise_definition() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, size=(17, 19)).astype(np.uint8)
    b = rng.integers(0, 256, size=(17, 19)).astype(np.uint8)
    b[:8, :] = 0  # flat region: exercises the R = 1 and zero-variance branches
    f = np.round(0.6 * a + 0.4 * b).astype(np.uint8)
    assert mef_ssim(a, b, f) == pytest.approx(_mef_ssim_direct(a, b, f), rel=1e-9)
    assert ssim(a, b, f, "toolbox2022") == pytest.approx(mef_ssim(a, b, f))


def test_vif_identity_and_gain(triple: tuple[np.ndarray, ...]) -> None:
    a, b, _ = triple
    assert vifp_mscale(a, a) == pytest.approx(1.0)
    assert vifp_mscale(a, a + 20.0) == pytest.approx(1.0)  # a shift loses no information
    assert vifp_mscale(a, 1.5 * a) > 1.0  # contrast gain scores above 1
    assert vif(a, b, a) == pytest.approx(1.0 + vifp_mscale(b, a))


def test_scd_known_answers(triple: tuple[np.ndarray, ...]) -> None:
    a, b, _ = triple
    assert scd(a, b, a + b) == pytest.approx(2.0)
    assert math.isnan(scd(a, b, a))  # F - A is constant: corr undefined


def test_qabf_nabf_known_answers(triple: tuple[np.ndarray, ...]) -> None:
    a, b, f = triple
    assert qabf(a, a, a) == pytest.approx(Q_MAX)
    assert nabf(a, a, a) == 0.0
    assert qabf(a, b, a) < qabf(a, a, a)
    q, loss, n = edge_preservation(a, b, f).decomposition()
    assert q + loss + n == pytest.approx(1.0)
    noisy = f + np.random.default_rng(5).normal(0, 25, f.shape)
    assert nabf(a, b, noisy) > nabf(a, b, f)


def test_qabf_shift_lowers_score() -> None:
    a = _textured(13, (72, 72), sigma=2.0)
    b = _textured(14, (72, 72), sigma=2.0)
    f = 0.5 * (a + b)
    assert qabf(a, b, np.roll(f, 2, axis=0)) < qabf(a, b, f)


# --- NaN semantics, warnings, API ---------------------------------------------------------


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
