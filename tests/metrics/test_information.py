"""medfuse.metrics.information: MI known answers, its unit, and the toolbox histogram quirk."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.metric_images import triple as _triple
from medfuse.metrics import (
    en,
    mi,
)


@pytest.fixture(scope="module")
def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _triple()


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


def test_mi_merges_levels_254_and_255_in_joint_histogram() -> None:
    f = np.array([[254, 255], [254, 255]], dtype=np.uint8)
    const = np.zeros_like(f)
    # standard: MI(F, F) = H(F) = 1 bit, MI(F, const) = 0. toolbox: both joint histograms
    # collapse to one bin (H = 0), so MI(F, F) = 1 + 1 - 0 = 2 and MI(F, const) = 1 + 0 - 0.
    assert mi(f, const, f, "standard") == pytest.approx(1.0)
    assert mi(f, const, f, "toolbox2022") == pytest.approx(3.0)
