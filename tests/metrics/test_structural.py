"""medfuse.metrics.structural: SSIM against scikit-image and MEF-SSIM against its patchwise definition."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from helpers.metric_images import textured
from helpers.metric_images import triple as _triple
from medfuse.metrics import (
    mef_ssim,
    ssim,
    ssim_wang,
)


@pytest.fixture(scope="module")
def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _triple()


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
    a = textured(12, (80, 80), sigma=2.0)
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
