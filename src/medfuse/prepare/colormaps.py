"""Pseudo-colour maps for grey functional images (PET/SPECT activity).

Harvard-atlas PET/SPECT slices are stored as pseudo-colour, and GeSeNet was trained on such
images; grey activity maps are coloured the same way before fusion. medfuse's own maps are
piecewise linear through control points, written out here so no plotting library is
needed; the DICOM standard palettes (PS3.6 Annex B: PET, Hot Iron, Hot Metal Blue, PET 20
Step) are read from the palette files pydicom ships, so they are exactly the standard's.

Whatever the map, the values at or below the transparency floor are not coloured (the
fused pixel shows the MRI there, see :func:`medfuse.prepare.pair.colourise`), so a map whose
low end is not black (``jet`` starts dark blue) never paints air.
"""

from __future__ import annotations

import functools

import numpy as np

# name -> (positions, RGB control points)
_MAPS: dict[str, tuple[list[float], list[tuple[float, float, float]]]] = {
    "hot": (
        [0.0, 0.375, 0.75, 1.0],
        [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (1.0, 1.0, 1.0)],
    ),
    "jet": (
        [0.0, 0.125, 0.375, 0.625, 0.875, 1.0],
        [(0.0, 0.0, 0.5), (0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.5, 0.0, 0.0)],
    ),
    "rainbow": (
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        [(0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 1.0)],
    ),
    # Black through purple and orange to pale yellow: close to the look of the Harvard atlas
    # SPECT slices (measured as the mean colour per luminance band of the atlas images).
    "sunset": (
        [0.0, 0.25, 0.5, 0.75, 1.0],
        [(0.0, 0.0, 0.0), (0.25, 0.1, 0.45), (0.65, 0.2, 0.5), (0.95, 0.45, 0.15), (1.0, 0.9, 0.6)],
    ),
    "gray": ([0.0, 1.0], [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)]),
}

#: DICOM standard colour palettes (name -> pydicom palette file).
DICOM_PALETTES: dict[str, str] = {
    "pet": "pet.dcm",
    "hot-iron": "hotiron.dcm",
    "hot-metal-blue": "hotmetalblue.dcm",
    "pet-20-step": "pet20step.dcm",
}
COLORMAPS = (*_MAPS, *DICOM_PALETTES)
#: ``--colormap none``: fuse a grey functional image as grey (no pseudo-colour).
NO_COLORMAP = "none"
#: Default map per functional modality, chosen to resemble the pseudo-colour of the Harvard
#: atlas slices GeSeNet was trained on: PET black-blue-green-yellow-red ("rainbow"), SPECT
#: black-purple-orange ("sunset"). CT is never coloured. "sunset" also suits perfusion
#: SPECT: its luminance (what the network fuses) rises monotonically and nearly linearly
#: (Y = 0, 0.19, 0.37, 0.57, 0.90 at 0, 1/4, 1/2, 3/4, 1), so a defect at 20-40% of cortex
#: is dark purple beside orange-yellow cortex, in colour and in the fused luminance alike.
DEFAULT_COLORMAP = {"pet": "rainbow", "spect": "sunset"}


def check_colormap(name: str) -> str | None:
    """A colour map name as given (any case, ``_`` for ``-``) -> its key, None for ``none``;
    an unknown name is a usage error whether or not a map will be applied."""
    key = name.strip().lower().replace("_", "-")
    if key == NO_COLORMAP:
        return None
    if key not in COLORMAPS:
        from medfuse.errors import UsageError

        raise UsageError(
            f"--colormap {name!r}: choose one of {', '.join(COLORMAPS)} or {NO_COLORMAP}"
        )
    return key


def resolve_colormap(modality: str | None, name: str | None = None) -> str | None:
    """The colour map to apply to a grey image of ``modality`` (None: leave it grey).

    An explicit ``name`` wins (``none`` disables colouring); otherwise PET and SPECT get
    their default and every other modality stays grey.
    """
    if name is not None:
        key = check_colormap(name)
        if key is None:
            return None
        if modality == "ct":
            return None  # CT has no colour meaning; the chroma would be dropped anyway
        return key
    return DEFAULT_COLORMAP.get(modality or "")


def pseudo_colour(grey: np.ndarray, modality: str | None, name: str | None = None) -> np.ndarray:
    """Colour a grey functional image in [0, 1] the way the atlas images were coloured, or
    return it unchanged when no map applies (CT, ``--colormap none``)."""
    chosen = resolve_colormap(modality, name)
    if chosen is None:
        return grey
    return apply_colormap(grey, chosen)


@functools.cache
def dicom_palette(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions and RGB (256, 3) in [0, 1] of a DICOM standard palette, read from the
    palette file pydicom ships (the Palette Color Lookup Table of PS3.6 Annex B)."""
    import pydicom
    from pydicom.data import get_palette_files
    from pydicom.pixels import apply_color_lut

    files = get_palette_files(DICOM_PALETTES[name])
    if not files:
        raise ValueError(f"pydicom does not ship the {name} palette")
    ds = pydicom.dcmread(files[0])
    table = apply_color_lut(np.arange(256, dtype=np.uint8), ds).astype(np.float64)
    peak = 65535.0 if table.max() > 255 else 255.0
    return np.linspace(0.0, 1.0, 256), (table / peak).astype(np.float32)


def apply_colormap(grey: np.ndarray, name: str = "hot") -> np.ndarray:
    """Map values in [0, 1] (any shape) to RGB (..., 3) in [0, 1]."""
    if name in DICOM_PALETTES:
        pos, table = dicom_palette(name)
    elif name in _MAPS:
        pos_list, rgb = _MAPS[name]
        pos, table = np.asarray(pos_list), np.asarray(rgb, dtype=np.float32)
    else:
        raise ValueError(f"unknown colour map {name!r}; choose from {', '.join(COLORMAPS)}")
    x = np.clip(np.nan_to_num(np.asarray(grey, dtype=np.float32)), 0.0, 1.0)
    return np.stack([np.interp(x, pos, table[:, c]) for c in range(3)], axis=-1).astype(np.float32)
