"""medfuse.metrics.gradient: Qabf and Nabf known answers and the toolbox gradient quirk."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers.metric_images import Q_MAX, textured
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
