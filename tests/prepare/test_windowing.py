"""medfuse.prepare.windowing: scanner units to [0, 1], presets, defaults by modality."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.errors import InputError, UsageError
from medfuse.prepare.windowing import (
    PRESETS,
    Window,
    apply_window,
    default_window,
    parse_window,
    sample_lattice,
)


def test_window_parsing() -> None:
    assert parse_window("brain") == Window(*PRESETS["brain"], "preset brain")
    assert parse_window(" Bone ") == Window(*PRESETS["bone"], "preset bone")
    assert parse_window("40,80").width == 80
    assert parse_window("40, 80").centre == 40
    assert parse_window(None) is None and parse_window("  ") is None
    for bad in ("40", "a,b", "40,-3", "40,0", "1,2,3", "nan,80", "40,inf"):
        with pytest.raises(UsageError, match="--window"):
            parse_window(bad)
    with pytest.raises(UsageError, match="--mri-window"):
        parse_window("x", "--mri-window")


def test_window_range_and_describe() -> None:
    w = Window.from_range(-10.0, 30.0, "test")
    assert (w.centre, w.width, w.low, w.high) == (10.0, 40.0, -10.0, 30.0)
    assert "centre 10, width 40 (test)" == w.describe()


def test_apply_window_handles_nan_and_inf() -> None:
    w = Window(40.0, 80.0)
    vals = np.array([-100.0, 0.0, 40.0, 80.0, 500.0, np.nan, np.inf, -np.inf], np.float32)
    out = apply_window(vals, w)
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1, 0, 0, 0])
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_apply_window_in_place() -> None:
    vals = np.array([0.0, 40.0, 80.0], np.float32)
    out = apply_window(vals, Window(40.0, 80.0), out=vals)
    assert out is vals
    np.testing.assert_allclose(vals, [0.0, 0.5, 1.0])


def test_default_windows() -> None:
    rng = np.random.default_rng(0)
    mri = rng.random((20, 20, 10)) * 1000
    mri[0, 0, 0] = 1e6  # a single outlier must not set the window
    w = default_window(mri, "mri")
    assert 900 < w.high < 1000 and w.low < 10
    assert default_window(mri, None) == w  # unknown: the MRI rule
    pet = rng.random((20, 20, 10)).astype(np.float32)
    pet[0] = np.nan
    w = default_window(pet, "pet")
    assert w.low == pytest.approx(float(np.nanmin(pet))) and w.high < 1.0
    assert default_window(mri, "ct").source.startswith("CT default")
    with pytest.raises(InputError, match="no finite"):
        default_window(np.full((4, 4, 4), np.nan), "mri")


def test_default_window_uses_slope_and_flat_volumes() -> None:
    stored = np.arange(1000, dtype=np.int16).reshape(10, 10, 10)
    w = default_window(stored, "pet", slope=2.0, inter=5.0)
    assert w.low == pytest.approx(5.0)
    flat = default_window(np.full((4, 4, 4), 7.0), "mri")
    assert flat.width == pytest.approx(1.0) and flat.low == pytest.approx(7.0)


def test_sample_lattice_is_bounded() -> None:
    big = np.zeros((200, 200, 100), np.int16)
    sample = sample_lattice(big, limit=10_000)
    assert sample.size <= 2 * 10_000 and sample.ndim == 3
    small = np.zeros((4, 4, 4))
    assert sample_lattice(small).shape == (4, 4, 4)
