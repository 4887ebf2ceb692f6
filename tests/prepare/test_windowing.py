"""medfuse.prepare.windowing: scanner units to [0, 1], presets, defaults by modality, SUV
and the transparency floor."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from medfuse.errors import InputError, UsageError
from medfuse.io.volume import SuvFacts
from medfuse.prepare.windowing import (
    FLOOR_FRACTION,
    GM_MULTIPLE,
    PRESETS,
    SUV_WINDOW,
    Window,
    apply_window,
    brain_window,
    check_functional_window,
    default_floor,
    default_window,
    parse_window,
    percentile_window,
    sample_lattice,
    suv_factor,
    suv_window,
    window_in_suv,
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


def test_window_values_beyond_float32_are_refused() -> None:
    """A window the float32 images cannot use is a usage error, not garbage pixels."""
    for bad in ("1e300,1e300", "0,1e-300", "0,1e-31", "-1e39,10", "0,1e39"):
        with pytest.raises(UsageError, match="--window"):
            parse_window(bad)
    assert parse_window("3e38,1e30").centre == 3e38
    assert parse_window("0,1e-30").width == 1e-30


#: The smallest positive float32 (a denormal); its multiples are exact in float32.
TINY = 2.0 ** -149


@pytest.mark.parametrize(("values", "window", "expected"), [
    # data spanning +-3e38: (value - low) overflows float32
    ([-3e38, 0.0, 3e38], Window.from_range(-3e38, 3e38, "t"), [0.0, 0.5, 1.0]),
    # denormal data and width: 1 / width overflows float32
    ([0.0, 7 * TINY, 14 * TINY, 28 * TINY], Window.from_range(0.0, 14 * TINY, "t"),
     [0.0, 0.5, 1.0, 1.0]),
    # an ordinary window over data near the float32 limits (clipped, never NaN)
    ([-3.4e38, 3.4e38, 50.0], Window(40.0, 80.0), [0.0, 1.0, 0.625]),
])
def test_apply_window_at_the_float32_limits(values: list[float], window: Window,
                                            expected: list[float]) -> None:
    vals = np.array(values + [np.nan, np.inf, -np.inf], np.float32)
    with np.errstate(all="raise"):  # nothing may warn, inside or outside
        out = apply_window(vals.copy(), window)
        inplace = apply_window(vals, window, out=vals)
    np.testing.assert_allclose(out, expected + [0.0, 0.0, 0.0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out, inplace)
    assert out.dtype == np.float32


def test_apply_window_in_float64_keeps_shape_and_strided_out() -> None:
    vals = np.linspace(0, 1e-40, 12, dtype=np.float32).reshape(3, 4)
    out = np.zeros((4, 3), np.float32).T  # not C-contiguous
    res = apply_window(vals, Window.from_range(0.0, 1e-40, "t"), out=out)
    assert res is out
    np.testing.assert_allclose(out, np.linspace(0, 1, 12).reshape(3, 4), atol=1e-3)


def test_flat_image_near_float32_max_gets_a_usable_window() -> None:
    flat = np.full((8, 8), 3e38, np.float32)
    w = percentile_window(flat, 0.5, 99.5)
    assert w.width > 0 and w.high > w.low
    np.testing.assert_array_equal(apply_window(flat, w), 0.0)
    assert percentile_window(np.full((8, 8), 7.0, np.float32), 0.5, 99.5).width == 1.0


def test_a_window_without_a_width_is_refused() -> None:
    with pytest.raises(InputError, match="window"):
        apply_window(np.zeros(3, np.float32), Window(0.0, 0.0))


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
    assert w.low == 0.0 and w.source.startswith("PET default: 0 to 1.6 x grey-matter level")
    assert default_window(mri, "ct").source.startswith("CT default")
    with pytest.raises(InputError, match="no finite"):
        default_window(np.full((4, 4, 4), np.nan), "mri")


def tissue_volume(gm: float = 7.5, wm: float = 2.5, seed: int = 0) -> np.ndarray:
    """A head-like activity volume: 60% air (0), 10% CSF/skull (0.3), 15% white matter,
    15% grey matter, 10% noise, plus a few hot voxels (a 2x cortex lesion)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(4, size=(40, 40, 40), p=[0.6, 0.1, 0.15, 0.15])
    means = np.array([0.0, 0.3, wm, gm])
    vol = means[labels] * (1 + 0.1 * rng.standard_normal(labels.shape))
    vol[:2, :2, :2] = 2 * gm
    return vol.astype(np.float32)


@pytest.mark.parametrize("modality", ["pet", "spect"])
def test_brain_window_keeps_cortex_below_the_top(modality: str) -> None:
    """The grey-matter level is typical cortex, so cortex sits at 0.5-0.8 of the colour map
    and its brightest 1% stays below the top (the old min..p99.9 put cortex at the top);
    white matter stays in the lower third and the level does not depend on how much air
    surrounds the head."""
    vol = tissue_volume()
    w = brain_window(vol, modality)
    gm = (vol > 5) & (vol < 11)
    windowed = apply_window(vol, w)
    assert 0.45 < float(windowed[gm].mean()) < 0.8
    assert float(np.percentile(windowed[gm], 99)) < 0.97
    wm = (vol > 1.5) & (vol < 3.5)
    assert float(windowed[wm].mean()) < 0.3
    padded = np.zeros((80, 80, 80), np.float32)
    padded[:40, :40, :40] = vol
    assert brain_window(padded, modality).high == pytest.approx(w.high, rel=0.03)
    assert w.high == pytest.approx(GM_MULTIPLE[modality] * float(np.percentile(
        vol[vol > 0.3 * np.percentile(vol, 99.5)], 90)), rel=0.05)


def test_brain_window_falls_back_for_nothing_positive() -> None:
    w = brain_window(np.full((4, 4, 4), -3.0, np.float32), "pet")
    assert w.source.startswith("percentiles")


def test_default_window_uses_slope_and_flat_volumes() -> None:
    stored = np.arange(1000, dtype=np.int16).reshape(10, 10, 10)
    w = default_window(stored, "pet", slope=2.0, inter=5.0)
    # values 5..2003: brain above 0.3 x p99.5 = 598, its p90 = 1863, top 1.6 x 1863
    assert w.low == 0.0 and w.high == pytest.approx(1.6 * 1863, rel=0.01)
    flat = default_window(np.full((4, 4, 4), 7.0), "mri")
    assert flat.width == pytest.approx(1.0) and flat.low == pytest.approx(7.0)


def test_floor_and_ct_presets() -> None:
    w = Window.from_range(0.0, 12.0, "t")
    assert default_floor(w) == pytest.approx(FLOOR_FRACTION * 12) == pytest.approx(1.5)
    check_functional_window(parse_window("40,80"), "pet", "x")
    check_functional_window(parse_window("bone"), "ct", "x")
    for modality in ("pet", "spect"):
        with pytest.raises(UsageError, match="--window bone is a CT preset.*SPECT|--window bone is a CT preset.*PET"):
            check_functional_window(parse_window("bone"), modality, "x.nii")


def fdg(**change: object) -> SuvFacts:
    facts = dict(units="BQML", weight_kg=70.0, dose_bq=3.7e8, half_life_s=6586.2,
                 injection=dt.datetime(2024, 5, 1, 10, 0, 0),
                 series_time=dt.datetime(2024, 5, 1, 11, 0, 0),
                 acquisition_time=dt.datetime(2024, 5, 1, 11, 0, 30), decay_correction="START")
    facts.update(change)
    return SuvFacts(**facts)  # type: ignore[arg-type]


def test_suv_factor_hand_computed() -> None:
    """70 kg, 370 MBq F-18 injected 60 min before the series: decay 2^(-3600/6586.2) =
    0.68463, factor 70000 / (3.7e8 x 0.68463) = 2.7634e-4 ml/Bq, so 27 kBq/ml is SUV 7.461."""
    d = suv_factor(fdg())
    assert d.available and d.decay == pytest.approx(0.684633, rel=1e-5)
    assert d.factor == pytest.approx(2.76337e-4, rel=1e-5)
    assert 27000 * d.factor == pytest.approx(7.461, rel=1e-3)
    assert "series time" in d.reason and "60.0 min" in d.reason
    w = suv_window(d.factor)  # type: ignore[arg-type]
    assert w.low == 0.0 and w.high * d.factor == pytest.approx(SUV_WINDOW[1])
    explicit = window_in_suv(Window(4.0, 8.0, "explicit"), d.factor)  # type: ignore[arg-type]
    assert explicit.high * d.factor == pytest.approx(8.0) and "in SUV" in explicit.source
    # a series time after the first acquisition (rewritten on reprocessing): acquisition
    late = suv_factor(fdg(series_time=dt.datetime(2024, 5, 1, 14, 0)))
    assert "earliest acquisition" in late.reason and late.elapsed_s == pytest.approx(3630)
    admin = suv_factor(fdg(decay_correction="ADMIN"))
    assert admin.factor == pytest.approx(70000 / 3.7e8) and admin.decay == 1.0
    assert suv_factor(fdg(units="GML")).factor == 1.0


@pytest.mark.parametrize("change,needle", [
    ({"units": "CNTS"}, "Units CNTS"),
    ({"units": None}, "Units not stated"),
    ({"weight_kg": None}, "PatientWeight"),
    ({"dose_bq": None, "half_life_s": None}, "RadionuclideTotalDose, RadionuclideHalfLife"),
    ({"decay_correction": "NONE"}, "DecayCorrection NONE"),
    ({"injection": None}, "RadiopharmaceuticalStartTime"),
    ({"series_time": None, "acquisition_time": None}, "no SeriesTime"),
    ({"injection": dt.datetime(2024, 5, 1, 12, 0)}, "check the times"),
])
def test_suv_refused_with_the_reason(change: dict[str, object], needle: str) -> None:
    d = suv_factor(fdg(**change))
    assert not d.available and d.factor is None and needle in d.reason
    assert suv_factor(None).reason.startswith("not a DICOM PET")


def test_sample_lattice_is_bounded() -> None:
    big = np.zeros((200, 200, 100), np.int16)
    sample = sample_lattice(big, limit=10_000)
    assert sample.size <= 2 * 10_000 and sample.ndim == 3
    small = np.zeros((4, 4, 4))
    assert sample_lattice(small).shape == (4, 4, 4)


def test_range_form_and_windows_that_would_paint_the_air() -> None:
    """``0:12`` is SUV 0 to 12; ``0,12`` (centre 0, width 12: -6 to 6) is refused for PET
    and SPECT in words that name the window and the range it meant; CT may go below 0."""
    w = parse_window("0:12")
    assert (w.low, w.high, w.source) == (0.0, 12.0, "explicit range")
    check_functional_window(w, "pet", "pet.nii")  # fine
    check_functional_window(parse_window("6,12"), "pet", "pet.nii")
    for bad in ("12:0", "a:b", "1:2:3"):
        with pytest.raises(UsageError, match="--window"):
            parse_window(bad)
    with pytest.raises(UsageError, match=r"--window 0,12 runs from -6 to 6.*--window 0:12"):
        check_functional_window(parse_window("0,12"), "pet", "pet.nii")
    with pytest.raises(UsageError, match=r"--window -2:10 runs from -2 to 10.*SPECT"):
        check_functional_window(parse_window("-2:10"), "spect", "spect.dcm")
    check_functional_window(parse_window("0,12"), "ct", "ct.nii")  # HU go below zero
    check_functional_window(parse_window("-0.5:12"), "pet", "pet.nii")  # floor still >= 0
