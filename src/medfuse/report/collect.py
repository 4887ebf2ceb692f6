"""What the QC report shows, taken from the fusion itself while it runs.

:func:`medfuse.fusion.fuse_files` hands every fused slice, with the prepared pair it came
from, to an ``on_slice`` observer. :class:`SliceCollector` is that observer: it keeps small
8-bit copies of the MRI as fused (windowed), the other image as shown (windowed and
coloured) and the fused slice. The report therefore shows the very pixels that were fused
and written, without reading or preparing anything a second time (which would cost as much
again as the preparation and could drift from it).

Big grids are thinned by one step on every axis (every ``step``-th slice, row and column) so
the page stays a few MB; the step is chosen from the first slice's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medfuse.fusion import FusionResult
    from medfuse.prepare.pair import PreparedPair

#: Longest side (in voxels) of the volumes a page carries.
MAX_SIDE = 128


def _u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass
class SliceCollector:
    """Observer for ``fuse_files(on_slice=...)``: thinned 8-bit copies of each fused slice,
    the MRI and the other image, by slice index of the fusion's stack."""

    max_side: int = MAX_SIDE
    step: int = 0
    mri: dict[int, np.ndarray] = field(default_factory=dict)
    other: dict[int, np.ndarray] = field(default_factory=dict)
    fused: dict[int, np.ndarray] = field(default_factory=dict)

    def __call__(self, index: int, result: FusionResult, pair: PreparedPair) -> None:
        if self.step == 0:
            self.step = max(1, math.ceil(max(pair.mri_y.shape) / self.max_side))
        s = self.step
        if index % s:
            return
        other = pair.other_image if pair.other_image is not None else pair.other_y
        self.mri[index] = _u8(pair.mri_y[::s, ::s])
        self.other[index] = _u8(_rgb(other)[::s, ::s])
        self.fused[index] = _u8(_rgb(result.image)[::s, ::s])

    def __len__(self) -> int:
        return len(self.fused)

    def stacks(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """The kept slices as ``(slices, rows, columns[, 3])`` uint8 stacks for a plan of
        ``n`` slices (slices that were not fused stay black) and the stack indices kept."""
        if not self.fused:
            raise ValueError("no slice was fused")
        s = max(1, self.step)
        kept = list(range(0, n, s))
        first = next(iter(self.mri.values()))
        h, w = first.shape
        mri = np.zeros((len(kept), h, w), np.uint8)
        other = np.zeros((len(kept), h, w, 3), np.uint8)
        fused = np.zeros((len(kept), h, w, 3), np.uint8)
        for k, index in enumerate(kept):
            if index in self.fused:
                mri[k], other[k], fused[k] = self.mri[index], self.other[index], self.fused[index]
        return mri, other, fused, kept


def _rgb(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else np.repeat(image[..., None], 3, -1)


__all__ = ["MAX_SIDE", "SliceCollector"]
