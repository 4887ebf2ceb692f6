"""Exact empty-space skipping: run the network only near content, and give every other
pixel the value the whole-image network gives there.

Why it is exact. A slice is *background* where both prepared inputs hold their background
value (each input's minimum over the slice: air after windowing) and *content* elsewhere.
An output pixel depends on the inputs within the network's receptive radius R, on the
image border within R (the convolutions zero-pad there), and on the channel-attention
means, which average the region-mask body output over the whole image. So:

* pixels within R of the content's bounding box B (the *kept* region K = B + R) are
  computed by the network on a crop C = K + R: the crop's own edge zero-pads features
  that the whole image holds as background, which corrupts at most R pixels inward, all
  outside K. Crop origins are even so the mask branch's 2x2 pooling lines up.
* every other pixel sees background only, so its value is that of an all-background image
  of the same size with the same attention means. That image's outputs depend only on the
  distances to the nearest borders (up to R) and on the pixel's parity (the 2x2 pooling):
  a (2R + 2)-pixel square of background holds every such case once, and the whole-image
  value is read from it by an index map (:class:`Background`).
* the attention means stay those of the whole image: the crop's body output over K is
  pasted into the background body map, and the same reduction as the whole-image pass
  runs on the assembled map (the mechanism of exact tiling, in one pass: the folded form
  accepts the means as a function of its body outputs).

A slice with no content at all is the background image's output itself. What is not
guaranteed is float rounding: a crop runs convolutions of another size, and the folded
form may choose another body path for it, so the last bits may differ from the whole-
image pass (docs/performance.md gives what was measured).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from medfuse.engine.network import FusionPass

#: Skip only where the crop covers at most this share of the slice: above it, the crop
#: plus the background square's pass (about 4% of a 256x256 slice) and the copies of the
#: body maps cost about what the whole slice does.
SKIP_MAX_AREA = 0.9
#: Background references kept per engine (one per slice size and background values).
CACHE_SIZE = 8


@dataclass(frozen=True)
class Crop:
    """The kept region (``y0:y1, x0:x1``) and the crop the network runs on
    (``cy0:cy1, cx0:cx1``), in padded-image coordinates."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int

    @property
    def area(self) -> int:
        return (self.cy1 - self.cy0) * (self.cx1 - self.cx0)

    @property
    def keep(self) -> tuple[slice, slice]:
        """The kept region in the crop's coordinates."""
        return (slice(self.y0 - self.cy0, self.y1 - self.cy0),
                slice(self.x0 - self.cx0, self.x1 - self.cx0))

    @property
    def kept(self) -> tuple[slice, slice]:
        """The kept region in the image's coordinates."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


def content_box(mri: np.ndarray, other: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, y1, x0, x1)`` of the pixels where either (H, W) input differs
    from its minimum, or None when both are constant."""
    content = (mri != mri.min()) | (other != other.min())
    rows = np.flatnonzero(content.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(content.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def plan_crop(box: tuple[int, int, int, int], h: int, w: int, radius: int,
              multiple: int) -> Crop:
    """The kept region (``box`` grown by ``radius``) and the crop around it (grown by
    ``radius`` again, origin and size rounded out to ``multiple``), clipped to the image."""
    y0, y1, x0, x1 = box
    ky0, ky1, kx0, kx1 = max(0, y0 - radius), min(h, y1 + radius), max(0, x0 - radius), min(w, x1 + radius)
    cy0, cx0 = max(0, ky0 - radius), max(0, kx0 - radius)
    cy1, cx1 = min(h, ky1 + radius), min(w, kx1 + radius)
    cy0, cx0 = cy0 - cy0 % multiple, cx0 - cx0 % multiple
    cy1, cx1 = min(h, cy1 + (-cy1 % multiple)), min(w, cx1 + (-cx1 % multiple))
    return Crop(ky0, ky1, kx0, kx1, cy0, cy1, cx0, cx1)


def border_map(n: int, radius: int) -> np.ndarray:
    """For each of ``n`` rows (or columns), the row of a ``2 * radius + 2`` background
    square that has the same distances to the borders, up to ``radius``, and the same
    parity: the first and last ``radius`` rows map to themselves, the rest alternate
    between the square's two middle rows."""
    side = 2 * radius + 2
    idx = np.arange(n)
    out = radius + (idx - radius) % 2
    out[:radius] = idx[:radius]
    out[n - radius:] = side - (n - idx[n - radius:])
    return out


class Background:
    """The network on an all-background image of one size, held as a small square and
    index maps (see the module docstring); built once per size and background values."""

    def __init__(self, net: FusionPass, h: int, w: int, values: tuple[float, float],
                 radius: int, device: torch.device) -> None:
        import torch

        self.net, self.h, self.w, self.radius = net, h, w, radius
        side = 2 * radius + 2
        self.rows = torch.from_numpy(border_map(h, radius))
        self.cols = torch.from_numpy(border_map(w, radius))
        self.square = tuple(torch.full((1, 1, side, side), v, dtype=torch.float32, device=device)
                            for v in values)
        out = net.fuse(*self.square, return_bodies=True)
        fmt = torch.channels_last if out.body_mri.is_contiguous(memory_format=torch.channels_last) \
            else torch.contiguous_format
        #: Whole-image body outputs (MRI, functional), (1, C, h, w), in the layout the
        #: network returns (the means must reduce the same memory layout).
        self.bodies = tuple(self.stretch(b).contiguous(memory_format=fmt)
                            for b in (out.body_mri, out.body_functional))
        self.mask_mri = self.stretch(out.mask_mri)[0, 0].float().cpu().numpy()
        self.mask_functional = self.stretch(out.mask_functional)[0, 0].float().cpu().numpy()
        self.empty_pooled = self.means(*self.bodies)
        #: The whole result of a slice with no content.
        self.empty_fused = self.fused(self.empty_pooled)

    def stretch(self, t: torch.Tensor) -> torch.Tensor:
        """A (N, C, side, side) tensor of the square to (N, C, h, w) of the image."""
        return t.index_select(-2, self.rows.to(t.device)).index_select(-1, self.cols.to(t.device))

    @staticmethod
    def means(body_mri: torch.Tensor, body_functional: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The channel-attention means, reduced as the network reduces a whole image."""
        return (body_mri.mean((-2, -1), keepdim=True), body_functional.mean((-2, -1), keepdim=True))

    def fused(self, pooled: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
        """The whole-image background output (h, w) under the attention means ``pooled``."""
        out = self.net.fuse(*self.square, pooled=pooled, return_bodies=False)
        return self.stretch(out.fused)[0, 0].float().cpu().numpy()


class EmptySpace:
    """Runs one engine's slices with empty space skipped; keeps its background
    references (a few, least recently used first out)."""

    def __init__(self, radius: int, multiple: int, max_area: float = SKIP_MAX_AREA) -> None:
        self.radius, self.multiple, self.max_area = radius, multiple, max_area
        self._cache: OrderedDict[tuple[Any, ...], Background] = OrderedDict()
        #: Slices run so far by how: "empty" (no content), "crop" or "whole" (for
        #: benchmarks and tests).
        self.counts: Counter[str] = Counter()

    def background(self, net: FusionPass, h: int, w: int, values: tuple[float, float],
                   device: torch.device) -> Background:
        key = (id(net), h, w, values)
        ref = self._cache.get(key)
        if ref is None or ref.net is not net:
            ref = Background(net, h, w, values, self.radius, device)
            self._cache[key] = ref
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return ref

    def fuse_slice(
        self, net: FusionPass, mri: torch.Tensor, other: torch.Tensor, with_masks: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None:
        """One (1, 1, H, W) padded pair with empty space skipped, or None when skipping
        would not pay (the caller then runs the whole slice)."""
        import torch

        _, _, h, w = mri.shape
        side = 2 * self.radius + 2
        if h < side or w < side:
            self.counts["whole"] += 1
            return None
        m, o = mri[0, 0].numpy(), other[0, 0].numpy()
        box = content_box(m, o)
        crop = None if box is None else plan_crop(box, h, w, self.radius, self.multiple)
        if crop is not None and crop.area > self.max_area * h * w:
            self.counts["whole"] += 1
            return None
        self.counts["crop" if crop is not None else "empty"] += 1
        ref = self.background(net, h, w, (float(m.min()), float(o.min())), mri.device)
        if crop is None:
            fused = ref.empty_fused.copy()
            if not with_masks:
                return fused, None, None
            return fused, ref.mask_mri.copy(), ref.mask_functional.copy()
        cy, cx = slice(crop.cy0, crop.cy1), slice(crop.cx0, crop.cx1)
        ky, kx = crop.keep
        pooled: list[tuple[torch.Tensor, torch.Tensor]] = []

        def whole_image_means(body_mri: torch.Tensor, body_functional: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:
            parts = []
            for full, body in zip(ref.bodies, (body_mri, body_functional)):
                full = full.clone(memory_format=torch.preserve_format)
                full[..., crop.y0:crop.y1, crop.x0:crop.x1] = body[..., ky, kx]
                parts.append(full)
            pooled.append(ref.means(*parts))
            return pooled[0]

        out = net.fuse(mri[..., cy, cx].contiguous(), other[..., cy, cx].contiguous(),
                       pooled=whole_image_means, return_bodies=False)
        fused = ref.fused(pooled[0])
        fused[crop.kept] = out.fused[0, 0, ky, kx].float().cpu().numpy()
        if not with_masks:
            return fused, None, None
        mm, mf = ref.mask_mri.copy(), ref.mask_functional.copy()
        mm[crop.kept] = out.mask_mri[0, 0, ky, kx].float().cpu().numpy()
        mf[crop.kept] = out.mask_functional[0, 0, ky, kx].float().cpu().numpy()
        return fused, mm, mf
