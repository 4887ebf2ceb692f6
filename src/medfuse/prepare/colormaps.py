"""Pseudo-colour maps for grey functional images (PET/SPECT activity).

Harvard-atlas PET/SPECT slices are stored as pseudo-colour, and GeSeNet was trained on such
images; grey activity maps are coloured the same way before fusion. Maps are piecewise
linear through control points, written out here so no plotting library is needed.
"""

from __future__ import annotations

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

COLORMAPS = tuple(_MAPS)
#: ``--colormap none``: fuse a grey functional image as grey (no pseudo-colour).
NO_COLORMAP = "none"
#: Default map per functional modality, chosen to resemble the pseudo-colour of the Harvard
#: atlas slices GeSeNet was trained on: PET black-blue-green-yellow-red ("rainbow"), SPECT
#: black-purple-orange ("sunset"). CT is never coloured.
DEFAULT_COLORMAP = {"pet": "rainbow", "spect": "sunset"}


def resolve_colormap(modality: str | None, name: str | None = None) -> str | None:
    """The colour map to apply to a grey image of ``modality`` (None: leave it grey).

    An explicit ``name`` wins (``none`` disables colouring); otherwise PET and SPECT get
    their default and every other modality stays grey.
    """
    if name is not None:
        key = name.strip().lower()
        if key == NO_COLORMAP:
            return None
        if key not in _MAPS:
            from medfuse.errors import UsageError

            raise UsageError(
                f"--colormap {name!r}: choose one of {', '.join(COLORMAPS)} or {NO_COLORMAP}"
            )
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


def apply_colormap(grey: np.ndarray, name: str = "hot") -> np.ndarray:
    """Map values in [0, 1] (any shape) to RGB (..., 3) in [0, 1]."""
    if name not in _MAPS:
        raise ValueError(f"unknown colour map {name!r}; choose from {', '.join(COLORMAPS)}")
    pos, rgb = _MAPS[name]
    x = np.clip(np.nan_to_num(np.asarray(grey, dtype=np.float32)), 0.0, 1.0)
    table = np.asarray(rgb, dtype=np.float32)
    return np.stack([np.interp(x, pos, table[:, c]) for c in range(3)], axis=-1).astype(np.float32)
