"""medfuse.metrics.vif: known answers and the toolbox scale-1 saturation."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.metric_images import smooth_unit
from helpers.metric_images import triple as _triple
from medfuse.metrics import (
    matlab_uint8,
    vif,
    vifp_mscale,
)


@pytest.fixture(scope="module")
def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _triple()


def test_vif_identity_and_gain(triple: tuple[np.ndarray, ...]) -> None:
    a, b, _ = triple
    assert vifp_mscale(a, a) == pytest.approx(1.0)
    assert vifp_mscale(a, a + 20.0) == pytest.approx(1.0)  # a shift loses no information
    assert vifp_mscale(a, 1.5 * a) > 1.0  # contrast gain scores above 1
    assert vif(a, b, a) == pytest.approx(1.0 + vifp_mscale(b, a))


def test_vif_scale1_saturation_raises_score() -> None:
    rng = np.random.default_rng(1)
    a = (smooth_unit(rng.random((64, 64))) * 200 + 20).astype(np.uint8)
    b = (smooth_unit(rng.random((64, 64))) * 200 + 20).astype(np.uint8)
    f = matlab_uint8((a.astype(float) + b) / 2)
    assert vif(a, b, f, "toolbox2022") != pytest.approx(vif(a, b, f, "standard"), rel=1e-3)
