"""medfuse.prepare.colormaps: which grey images are coloured, and how."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.errors import UsageError
from medfuse.prepare.colormaps import (
    COLORMAPS,
    DEFAULT_COLORMAP,
    apply_colormap,
    check_colormap,
    pseudo_colour,
    resolve_colormap,
)


def test_resolve_colormap() -> None:
    assert resolve_colormap("pet") == "rainbow" and resolve_colormap("spect") == "sunset"
    assert DEFAULT_COLORMAP == {"pet": "rainbow", "spect": "sunset"}
    assert resolve_colormap("ct") is None and resolve_colormap("pet", "none") is None
    assert resolve_colormap("ct", "hot") is None  # CT is never coloured
    assert resolve_colormap(None) is None
    assert resolve_colormap("pet", "HOT") == "hot"
    with pytest.raises(UsageError, match="--colormap"):
        resolve_colormap("pet", "viridis")


def test_check_colormap_whatever_the_modality() -> None:
    """An unknown name is refused even where no map would be applied (CT)."""
    assert check_colormap(" Hot_Iron ") == "hot-iron" and check_colormap("NONE") is None
    with pytest.raises(UsageError, match="--colormap"):
        resolve_colormap("ct", "viridis")
    with pytest.raises(UsageError, match="--colormap"):
        check_colormap("")


@pytest.mark.parametrize("name", COLORMAPS)
def test_maps_are_dark_to_bright(name: str) -> None:
    ramp = np.linspace(0, 1, 11, dtype=np.float32)
    rgb = apply_colormap(ramp, name)
    assert rgb.shape == (11, 3) and rgb.dtype == np.float32
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0
    if name != "jet":
        assert rgb[0].max() == 0.0  # background stays black
        lum = rgb @ np.array([0.299, 0.587, 0.114])
        assert lum[-1] > lum[0]


def test_apply_colormap_any_shape_and_odd_values() -> None:
    grey = np.array([[np.nan, -1.0], [2.0, 0.5]], np.float32)
    rgb = apply_colormap(grey, "hot")
    assert rgb.shape == (2, 2, 3)
    np.testing.assert_array_equal(rgb[0, 0], 0.0)  # NaN is background
    np.testing.assert_array_equal(rgb[0, 1], 0.0)  # clipped below
    np.testing.assert_array_equal(rgb[1, 0], 1.0)  # clipped above: white
    with pytest.raises(ValueError, match="unknown colour map"):
        apply_colormap(grey, "viridis")


def test_pseudo_colour() -> None:
    ramp = np.linspace(0, 1, 5, dtype=np.float32)
    assert pseudo_colour(ramp, "pet", "none") is ramp
    assert pseudo_colour(ramp, "ct") is ramp
    np.testing.assert_array_equal(pseudo_colour(ramp, "spect"), apply_colormap(ramp, "sunset"))


@pytest.mark.parametrize("name", ["pet", "hot-iron", "hot-metal-blue", "pet-20-step"])
def test_dicom_palettes_are_the_standard_ones(name: str) -> None:
    """The DICOM standard palettes come from pydicom's palette files: at the 256 entries
    they equal pydicom's own lookup (apply_color_lut), scaled to [0, 1]."""
    import pydicom
    from pydicom.data import get_palette_files
    from pydicom.pixels import apply_color_lut

    from medfuse.prepare.colormaps import DICOM_PALETTES

    ds = pydicom.dcmread(get_palette_files(DICOM_PALETTES[name])[0])
    expected = apply_color_lut(np.arange(256, dtype=np.uint8), ds).astype(np.float32) / 255
    got = apply_colormap(np.arange(256, dtype=np.float32) / 255, name)
    np.testing.assert_allclose(got, expected, atol=1e-5)  # float32 interpolation
    assert resolve_colormap("pet", name.upper().replace("-", "_")) == name  # HOT_IRON works


def test_pet_palette_reference_values() -> None:
    """DICOM PS3.6 PET palette: black, then blue-violet at the middle, white at the top."""
    rgb = apply_colormap(np.array([0.0, 128 / 255, 1.0], np.float32), "pet")
    np.testing.assert_allclose(rgb * 255, [[0, 0, 0], [128, 0, 255], [255, 255, 255]], atol=0.5)
