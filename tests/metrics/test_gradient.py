"""medfuse.metrics.gradient: Qabf and Nabf known answers and the toolbox gradient quirk."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers.metric_images import Q_MAX, reference_dir, textured
from helpers.metric_images import triple as _triple
from medfuse.metrics import (
    edge_preservation,
    nabf,
    qabf,
)


@pytest.fixture(scope="module")
def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _triple()


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
    a = textured(13, (72, 72), sigma=2.0)
    b = textured(14, (72, 72), sigma=2.0)
    f = 0.5 * (a + b)
    assert qabf(a, b, np.roll(f, 2, axis=0)) < qabf(a, b, f)


def test_qabf_equal_gradients_use_gf_in_toolbox() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(32, 32)).astype(np.uint8)
    # F = A = B: every strength is equal. standard: G = 1 -> the maximum Q everywhere.
    q_max = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert qabf(x, x, x, "standard") == pytest.approx(q_max)
    # toolbox: G = gF on the 0..1 scale, which is not 1, so the score differs.
    assert qabf(x, x, x, "toolbox2022") != pytest.approx(q_max, rel=1e-3)


# --- toolbox2022 arithmetic: the floating-point decisions of the MATLAB original -----------
_TOOLBOX_H3 = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_TOOLBOX_H1 = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def _loop_qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """The toolbox's analysis_Qabf written out pixel by pixel in plain Python floats: images
    times 1/255, conv2 'same' (zero padding) summed in raster order of the neighbourhood,
    and its if / elseif chain (gX > gF; gX == gF gives G = gF; else gX / gF)."""

    def edges(x: np.ndarray) -> tuple[list[list[float]], list[list[float]]]:
        m, n = x.shape
        v = [[float(x[i, j]) * (1.0 / 255.0) for j in range(n)] for i in range(m)]
        g = [[0.0] * n for _ in range(m)]
        ang = [[0.0] * n for _ in range(m)]
        for i in range(m):
            for j in range(n):
                sx = sy = 0.0
                for di in range(3):
                    for dj in range(3):
                        r, c = i + di - 1, j + dj - 1
                        if 0 <= r < m and 0 <= c < n:
                            kx, ky = _TOOLBOX_H3[2 - di][2 - dj], _TOOLBOX_H1[2 - di][2 - dj]
                            if kx:
                                sx += kx * v[r][c]
                            if ky:
                                sy += ky * v[r][c]
                g[i][j] = math.sqrt(sx * sx + sy * sy)
                ang[i][j] = math.pi / 2 if sx == 0 else math.atan(sy / sx)
        return g, ang

    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)
    num = den = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for gs, as_ in ((ga, aa), (gb, ab)):
                s, t = gs[i][j], gf[i][j]
                ratio = t / s if s > t else (t if s == t else s / t)
                agree = 1 - abs(as_[i][j] - af[i][j]) / (math.pi / 2)
                q = 0.9994 / (1 + math.exp(-15 * (ratio - 0.5))) * 0.9879 / (1 + math.exp(-22 * (agree - 0.8)))
                num += q * s
                den += s
    return num / den


def test_toolbox_qabf_ties_follow_the_reference_rounding() -> None:
    """A hand-made vector where the toolbox's gA == gF test is decided by rounding.

    F = A + 1: the centre's Sobel sums are equal in exact arithmetic (strength 32 grey
    levels), so the toolbox gives G = gF = 32/255 there and Q^AF drops to ~0.004.
    Whether the floating-point sums tie depends on the scaling and the summation order:
    with x * (1/255) and the neighbourhood in raster order (the arithmetic that reproduces
    the reference csv to its six decimals) they tie; with x / 255 summed in GNU Octave's
    conv2 order (medfuse before the fix) they did not, and G was ~1 (Q^AF ~0.95).
    """
    a = np.array([[88, 52, 95], [94, 93, 54], [38, 85, 79]], np.uint8)
    f = a + np.uint8(1)
    b = np.zeros_like(a)
    ep = edge_preservation(a, b, f, "toolbox2022")
    assert ep.g_a[1, 1] == ep.g_f[1, 1] == pytest.approx(32 / 255, rel=1e-12)
    q_tie = 0.9994 / (1 + math.exp(-15 * (32 / 255 - 0.5))) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert ep.q_af[1, 1] == pytest.approx(q_tie, rel=1e-9)
    assert ep.q_af[1, 1] < 0.005
    assert qabf(a, b, f, "toolbox2022") == pytest.approx(_loop_qabf(a, b, f), rel=1e-12)


def test_toolbox_qabf_zero_horizontal_gradient_is_vertical() -> None:
    """gx == 0 exactly gives the angle +pi/2 whatever the sign of gy (the toolbox's rule),
    so a rising and a falling vertical ramp have the same orientation."""
    from medfuse.metrics.gradient import _edges

    up = np.tile(np.array([[10], [20], [30], [40]], np.uint8), (1, 4))
    e_up, e_down = _edges(up, True), _edges(up[::-1].copy(), True)
    assert e_up.angle[1, 1] == e_down.angle[1, 1] == math.pi / 2
    assert e_up.g[1, 1] == pytest.approx(80 / 255, rel=1e-12)


def test_toolbox_qabf_matches_a_pixel_loop_on_random_images() -> None:
    rng = np.random.default_rng(7)
    a, b = (rng.integers(0, 256, (9, 11)).astype(np.uint8) for _ in range(2))
    f = np.clip(a.astype(int) + rng.integers(-2, 3, a.shape), 0, 255).astype(np.uint8)
    f[3:6, 3:7] = a[3:6, 3:7] + np.uint8(1) * (a[3:6, 3:7] < 255)  # offset copies: near-ties
    assert qabf(a, b, f, "toolbox2022") == pytest.approx(_loop_qabf(a, b, f), rel=1e-12)


@pytest.mark.skipif(reference_dir() is None, reason="shared reference data not available")
def test_toolbox_qabf_reproduces_the_reference_csv_to_its_decimals() -> None:
    """The 15 reference vectors' Qabf to 2e-6 relative (the csv has six decimals); the
    Octave-order arithmetic was off by up to 5.6e-4 here."""
    import csv

    from medfuse.metrics import compute_metrics_colour

    ref = reference_dir()
    assert ref is not None
    image_mod = pytest.importorskip("PIL.Image")

    def load(path: object) -> np.ndarray:
        with image_mod.open(path) as im:
            return np.asarray(im.convert("RGB"))

    rows = list(csv.DictReader((ref / "metrics" / "toolbox2022_expected.csv").open()))
    assert len(rows) == 15
    for row in rows:
        mod_a, mod_b = row["task"].split("_")
        a = load(ref / "samples" / row["task"] / mod_a / row["pair"])
        b = load(ref / "samples" / row["task"] / mod_b / row["pair"])
        f = load(ref / row["fused"])
        got = compute_metrics_colour(a, b, f, profile="toolbox2022", metrics=["Qabf"])["Qabf"]
        assert got == pytest.approx(float(row["Qabf"]), rel=2e-6), row["pair"]
