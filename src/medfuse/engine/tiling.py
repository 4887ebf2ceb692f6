"""Padding to the network's size multiple, and exact tiled inference.

Why tiles must be exact: a fused image must not depend on whether it ran whole or in
tiles (memory limits differ between machines). Two things make GeSeNet non-local: its
receptive field, covered by a margin around each tile that is at least the network's
receptive radius; and channel attention, which averages the region-mask body output over
the whole image. :func:`fuse_tiled` therefore runs two passes: the first accumulates
those means tile by tile, the second runs the full network per tile with them fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from medfuse.engine.network import FusionPass

#: Images with more pixels than this run in tiles (bounded memory); below it, in one piece.
TILE_THRESHOLD = 1024 * 1024
#: Side of the kept part of a tile.
TILE = 512
#: Overlap on each side of a tile; larger than GeSeNet's receptive radius (24), so the
#: kept centre of every tile is exact.
MARGIN = 32


@dataclass(frozen=True)
class Tile:
    """One tile: the region it keeps (``y0:y1, x0:x1``) and the larger region it reads
    (``ty0:ty1, tx0:tx1``: the kept region plus the margin, clipped to the image)."""

    y0: int
    y1: int
    x0: int
    x1: int
    ty0: int
    ty1: int
    tx0: int
    tx1: int

    @property
    def core(self) -> tuple[slice, slice]:
        """The kept region in the coordinates of the tile that was read."""
        return (
            slice(self.y0 - self.ty0, self.y1 - self.ty0),
            slice(self.x0 - self.tx0, self.x1 - self.tx0),
        )


def check_tiling(tile: int, margin: int, multiple: int, receptive_radius: int) -> None:
    """Refuse a tiling that would not be exact: a margin below the receptive radius, or
    a tile or margin that is not a multiple of the network's size multiple (tile origins
    must line up with the whole image's pooling grid)."""
    if tile < 1 or margin < 0:
        raise ValueError(f"tile size must be positive and margin non-negative, got {tile}, {margin}")
    if margin < receptive_radius:
        raise ValueError(f"tile margin {margin} is below the network's receptive radius {receptive_radius}")
    if tile % multiple or margin % multiple:
        raise ValueError(f"tile size {tile} and margin {margin} must be multiples of {multiple}")


def pad_to_multiple(t: torch.Tensor, multiple: int = 2) -> torch.Tensor:
    """Reflect-pad bottom/right so both sides are multiples of ``multiple`` (GeSeNet: 2,
    for the half-resolution mask branch). Reflection continues the image without an
    artificial edge (zero padding would put a false edge in the last row)."""
    import torch.nn.functional as F

    ph, pw = -t.shape[-2] % multiple, -t.shape[-1] % multiple
    return F.pad(t, (0, pw, 0, ph), mode="reflect") if (ph or pw) else t


def tile_grid(h: int, w: int, tile: int = TILE, margin: int = MARGIN) -> list[Tile]:
    """Tiles covering an ``h`` x ``w`` image row by row; the kept regions partition it."""
    out = []
    for y0 in range(0, h, tile):
        y1 = min(h, y0 + tile)
        ty0, ty1 = max(0, y0 - margin), min(h, y1 + margin)
        for x0 in range(0, w, tile):
            x1 = min(w, x0 + tile)
            tx0, tx1 = max(0, x0 - margin), min(w, x1 + margin)
            out.append(Tile(y0, y1, x0, x1, ty0, ty1, tx0, tx1))
    return out


def fuse_tiled(
    net: FusionPass,
    mri: torch.Tensor,
    other: torch.Tensor,
    load: Callable[[torch.Tensor], torch.Tensor],
    tile: int = TILE,
    margin: int = MARGIN,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact two-pass tiled inference of (N, 1, H, W) host tensors whose sides are
    already padded to the network's multiple.

    ``load`` moves one contiguous tile to the compute device (the engine pins memory on
    CUDA). Returns (fused, mask_mri, mask_functional) as (N, H, W) float32 arrays.
    """
    import torch

    n, _, h, w = mri.shape
    tiles = tile_grid(h, w, tile, margin)

    def read(t: torch.Tensor, tl: Tile) -> torch.Tensor:
        return load(t[..., tl.ty0 : tl.ty1, tl.tx0 : tl.tx1].contiguous())

    sums: list[torch.Tensor] | None = None
    for tl in tiles:
        cy, cx = tl.core
        bodies = net.body_features(read(mri, tl), read(other, tl))
        if sums is None:  # the body width comes from the network, not from here
            sums = [torch.zeros(n, b.shape[1], 1, 1, device=b.device) for b in bodies]
        for acc, body in zip(sums, bodies):
            acc += body[..., cy, cx].float().sum(dim=(-2, -1), keepdim=True)
    assert sums is not None
    pooled = (sums[0] / (h * w), sums[1] / (h * w))
    fused = np.empty((n, h, w), np.float32)
    mm = np.empty((n, h, w), np.float32)
    mf = np.empty((n, h, w), np.float32)
    for tl in tiles:
        out = net.fuse(read(mri, tl), read(other, tl), pooled=pooled, return_bodies=False)
        core = (slice(None), 0, *tl.core)
        keep = (slice(None), slice(tl.y0, tl.y1), slice(tl.x0, tl.x1))
        fused[keep] = out.fused[core].float().cpu().numpy()
        mm[keep] = out.mask_mri[core].float().cpu().numpy()
        mf[keep] = out.mask_functional[core].float().cpu().numpy()
    return fused, mm, mf
