"""Where the other image is transparent: the floor decided by regions, not by pixels.

The transparency floor (:func:`medfuse.prepare.windowing.default_floor`) is a level in the
other image's units; at or below it the fused pixel shows the MRI uncoloured. Compared
pixel by pixel, noisy activity near the floor (PET white matter sits close to it) leaves
single uncoloured grey pixels inside a coloured field and single coloured specks in air,
which read as lesions or artefacts. So the comparison is made coherent: on each slice, a
connected region of below-floor pixels smaller than :data:`MIN_REGION_MM2` is coloured
like its surroundings, and a coloured region that small is made transparent. Larger
regions, and every boundary between them, stay exactly where the floor puts them. Voxels
without data (outside the other image's field of view) stay transparent whatever their
size.
"""

from __future__ import annotations

import numpy as np

#: Regions of either kind smaller than this (mm² on the MRI's slice grid) follow their
#: surroundings: about 2x2 pixels of a 2 mm PET, a single-voxel speck of noise resampled
#: onto a 1 mm MRI grid (a 4x4 pixel patch).
MIN_REGION_MM2 = 16.0
#: Never fewer than this many pixels: a single pixel is always noise.
MIN_REGION_PIXELS = 2


def min_region_pixels(pixel_mm: tuple[float, float]) -> int:
    """:data:`MIN_REGION_MM2` in pixels of ``pixel_mm`` (row, column spacing)."""
    area = max(float(pixel_mm[0]) * float(pixel_mm[1]), 1e-6)
    return max(MIN_REGION_PIXELS, int(round(MIN_REGION_MM2 / area)))


def coherent(below: np.ndarray, min_pixels: int, no_data: np.ndarray | None = None
             ) -> np.ndarray:
    """``below`` (slices, rows, columns) bool with regions smaller than ``min_pixels``
    (8-connected, per slice) of either kind flipped to their surroundings; ``no_data``
    pixels are transparent in the result whatever their region."""
    from scipy import ndimage

    out = np.array(below, dtype=bool, copy=True)
    eight = np.ones((3, 3), bool)
    for k in range(out.shape[0]):
        plane = out[k]
        for value in (True, False):  # small transparent holes first, then small specks
            region = plane if value else ~plane
            labels, n = ndimage.label(region, eight)
            if n == 0:
                continue
            sizes = np.bincount(labels.ravel())
            small = sizes < min_pixels
            small[0] = False
            flip = small[labels]
            plane[flip] = not value
    if no_data is not None:
        out |= no_data
    return out


__all__ = ["MIN_REGION_MM2", "MIN_REGION_PIXELS", "coherent", "min_region_pixels"]
