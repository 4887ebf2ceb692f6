"""A synthetic MRI/PET brain phantom, so ``medfuse demo`` and the tests need no data files.

Geometry is a handful of ellipses (scalp, skull, grey and white matter, ventricles, a
lesion); the MRI is T2-like (fluid bright) with mild texture, the PET shows cortical uptake
and a hot lesion through the ``hot`` colour map, as atlas PET slices are stored.
"""

from __future__ import annotations

import numpy as np

from medfuse.prepare.colormaps import apply_colormap


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
             angle: float = 0.0) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    y, x = yy - cy, xx - cx
    u, v = x * c + y * s, -x * s + y * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _smooth(img: np.ndarray, passes: int = 2) -> np.ndarray:
    """Cheap separable box blur: soft edges like a real scan's partial-volume effect."""
    out = img.astype(np.float32)
    for _ in range(passes):
        out = (np.roll(out, 1, 0) + out + np.roll(out, -1, 0)) / 3
        out = (np.roll(out, 1, 1) + out + np.roll(out, -1, 1)) / 3
    return out


def brain_phantom(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (mri, pet): grey (size, size) and RGB (size, size, 3), float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    head = _ellipse(yy, xx, 0.5, 0.5, 0.44, 0.36)
    skull = head & ~_ellipse(yy, xx, 0.5, 0.5, 0.40, 0.32)
    brain = _ellipse(yy, xx, 0.5, 0.5, 0.39, 0.31)
    white = _ellipse(yy, xx, 0.5, 0.5, 0.30, 0.22)
    vents = _ellipse(yy, xx, 0.46, 0.44, 0.10, 0.03, 0.3) | _ellipse(yy, xx, 0.46, 0.56, 0.10, 0.03, -0.3)
    lesion = _ellipse(yy, xx, 0.66, 0.60, 0.05, 0.05)

    mri = np.zeros((size, size), np.float32)
    mri[head] = 0.35
    mri[skull] = 0.08
    mri[brain] = 0.62  # grey matter
    mri[white] = 0.45
    mri[vents] = 0.95  # CSF bright on T2
    mri[lesion] = 0.75
    texture = _smooth(rng.normal(0, 0.04, (size, size)).astype(np.float32), 1)
    mri = np.clip(_smooth(mri, 2) + texture * brain, 0, 1)

    act = np.zeros((size, size), np.float32)
    act[brain] = 0.55
    act[white] = 0.30
    act[vents] = 0.05
    act[lesion] = 1.0
    act = np.clip(_smooth(act, 6), 0, 1)
    pet = apply_colormap(act, "hot")
    return mri.astype(np.float32), pet
