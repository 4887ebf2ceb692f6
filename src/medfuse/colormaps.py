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
    "gray": ([0.0, 1.0], [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)]),
}

COLORMAPS = tuple(_MAPS)


def apply_colormap(grey: np.ndarray, name: str = "hot") -> np.ndarray:
    """Map values in [0, 1] (any shape) to RGB (..., 3) in [0, 1]."""
    if name not in _MAPS:
        raise ValueError(f"unknown colour map {name!r}; choose from {', '.join(COLORMAPS)}")
    pos, rgb = _MAPS[name]
    x = np.clip(np.nan_to_num(np.asarray(grey, dtype=np.float32)), 0.0, 1.0)
    table = np.asarray(rgb, dtype=np.float32)
    return np.stack([np.interp(x, pos, table[:, c]) for c in range(3)], axis=-1).astype(np.float32)
