"""medfuse.metrics.basic: EN, SD, SF, AG and SCD on hand-computed cases, in both profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers.metric_images import triple as _triple
from medfuse.metrics import (
    ag,
    en,
    scd,
    sd,
    sf,
)


@pytest.fixture(scope="module")
def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _triple()


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


def test_sd_uses_uint8_saturation() -> None:
    # mean 50: deviations -50 -> 0 (saturated), +50 -> 50, squared 2500 -> 255
    f = np.array([[0, 0], [100, 100]], dtype=np.uint8)
    assert sd(f, "toolbox2022") == pytest.approx(math.sqrt(510 / 4))
    assert sd(f, "standard") == pytest.approx(50.0)


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


def test_sf_is_on_unit_scale() -> None:
    f = np.tile(np.arange(0, 100, 10, dtype=np.uint8), (6, 1))  # ramp of 10 per column
    assert sf(f, "standard") == pytest.approx(10.0)
    assert sf(f, "toolbox2022") == pytest.approx(10.0 / 255.0)


def test_ag_toolbox_uses_matlab_gradient() -> None:
    ramp = np.tile(np.arange(10, dtype=np.uint8) * 3, (7, 1))
    expected = 7 * 10 * (3.0 / math.sqrt(2.0)) / (6 * 9)  # gradient is 3 everywhere
    assert ag(ramp, "toolbox2022") == pytest.approx(expected)


def test_scd_known_answers(triple: tuple[np.ndarray, ...]) -> None:
    a, b, _ = triple
    assert scd(a, b, a + b) == pytest.approx(2.0)
    assert math.isnan(scd(a, b, a))  # F - A is constant: corr undefined
