"""Images with known structure for the metric tests, and where the reference vectors are.

No tests here. The reference data (``toolbox2022_expected.csv`` and the sample images it
scores) is read-only and lives outside the repository: ``$MEDFUSE_SHARED`` or ``../shared``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

#: Qabf's largest value: both sigmoids of the edge-preservation model at G = A = 1.
Q_MAX = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))


def textured(seed: int, shape: tuple[int, int] = (64, 64), sigma: float = 1.5) -> np.ndarray:
    """Smoothed noise on 10..245: structure at every scale the windowed metrics look at."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random(shape), sigma)
    return (x - x.min()) / (x.max() - x.min()) * 235.0 + 10.0


def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two textured sources and their average as the fused image."""
    a, b = textured(10), textured(11)
    return a, b, 0.5 * (a + b)


def smooth_unit(x: np.ndarray) -> np.ndarray:
    """Smooth noise stretched to [0, 1], so test images have structure at VIF's scales."""
    y = ndimage.gaussian_filter(x, 2.0)
    return (y - y.min()) / (y.max() - y.min())


def reference_dir() -> Path | None:
    """The read-only reference data: $MEDFUSE_SHARED or ../shared next to the repository."""
    roots = []
    if os.environ.get("MEDFUSE_SHARED"):
        roots.append(Path(os.environ["MEDFUSE_SHARED"]))
    roots.append(Path(__file__).resolve().parents[3] / "shared")
    for root in roots:
        for cand in (root / "reference", root):
            if (cand / "metrics" / "toolbox2022_expected.csv").is_file():
                return cand
    return None
