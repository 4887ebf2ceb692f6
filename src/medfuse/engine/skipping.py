"""Exact empty-space skipping: run the network only near content, and give every other
pixel the value the whole-image network gives there.

Why it is exact. A slice is *background* where both prepared inputs hold their background
value (each input's minimum over the slice: air after windowing) and *content* elsewhere.
An output pixel depends on the inputs within the network's receptive radius R, on the
image border within R (the convolutions zero-pad there), and on the channel-attention
means, which average the region-mask body output over the whole image. So:

* the network runs on a crop C: the content's bounding box grown by R, with even origin
  and size so the mask branch's 2x2 pooling lines up. Past C's sides that are not the
  image's border, the whole image holds background features; each padded convolution
  of the crop gets exactly those around its input instead of zeros
  (:func:`medfuse.model.folded.edge_padding`), so every pixel of C is computed as in the
  whole image.
* every pixel outside C sees only background, so its value is that of an all-background
  image of the same size with the same attention means. That image's features depend only
  on the distances to the nearest borders (up to R) and on the pixel's parity (the 2x2
  pooling): a (2R + 2)-pixel square of background holds every case once, and whole-image
  values are read from it by index maps (:func:`border_map`). The same square, run once
  more under the slice's means, gives the crop its padding after the attention.
* the attention means stay those of the whole image: the crop's body output is pasted
  into the background's body map, and the same reduction as the whole-image pass runs on
  the assembled map (exact tiling's first pass, done within the one pass: the folded form
  accepts the means as a function of its body outputs).

A slice with no content is the background image's output itself. The numbers are the
whole image's bit for bit, not only to float rounding: each branch's body runs the path
the whole image runs (uniform mask, split body or sparse windows, chosen from the whole
image's mask: the crop's inside it, the background's elsewhere), the square runs under
the same paths, and the crop is at least :data:`MIN_SIDE` pixels a side and gets its
input in the whole image's memory layout (oneDNN orders its sums by kernel, and picks
the kernel by layout and, for narrow images, by size). Where the whole image's sparse
windows would reach outside the crop (principal pixels in the background), the slice
runs whole.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from medfuse.model.folded import FoldedGeSeNet as FusionPass

#: Skip only where the crop covers at most this share of the slice: above it, the crop
#: (each padded convolution copies its input once more), the background square's pass
#: (30x30 px) and the copies of the body maps cost about what the whole slice does.
SKIP_MAX_AREA = 0.85
#: Crops are at least this many pixels on each side (where the image is): oneDNN runs
#: narrower convolutions (measured: sides of 16-18 pixels) with sums in another order,
#: so a crop's pixels near its edge differed from the whole image's in the last bits;
#: from 24 pixels on every case measured was bit-identical.
MIN_SIDE = 32
#: Background references kept per engine (one per slice size and background values; about
#: 20 MiB each for a 256x256 slice: the whole-slice body maps and the square's features).
CACHE_SIZE = 4


@dataclass(frozen=True)
class Crop:
    """The region the network runs on (``y0:y1, x0:x1``, padded-image coordinates), and
    which of its sides lie on the image's border (zero padding there, background
    features elsewhere)."""

    y0: int
    y1: int
    x0: int
    x1: int
    top: bool
    bottom: bool
    left: bool
    right: bool

    @property
    def area(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)

    @property
    def region(self) -> tuple[slice, slice]:
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


def _side(lo: int, hi: int, n: int, radius: int, multiple: int) -> tuple[int, int]:
    """One axis of a crop: the content ``lo:hi`` grown by ``radius``, rounded out to
    ``multiple``, clipped to ``0:n``."""
    a = max(0, lo - radius)
    b = min(n, hi + radius)
    a, b = a - a % multiple, min(n, b + (-b % multiple))
    while b - a < MIN_SIDE and (a > 0 or b < n):  # grown on both sides, within the image
        a = max(0, a - multiple)
        if b - a < MIN_SIDE:
            b = min(n, b + multiple)
    return a, b


def plan_crop(box: tuple[int, int, int, int], h: int, w: int, radius: int,
              multiple: int) -> Crop:
    """The crop for content ``box`` in an ``h`` x ``w`` image (sides multiples of
    ``multiple``): every pixel within ``radius`` of the content inside it, so every pixel
    just past a side that is not the image's border is at least ``radius + 1`` away."""
    y0, y1 = _side(box[0], box[1], h, radius, multiple)
    x0, x1 = _side(box[2], box[3], w, radius, multiple)
    return Crop(y0, y1, x0, x1, y0 == 0, y1 == h, x0 == 0, x1 == w)


class _Recorder:
    """Edge padding for the background square's run: zeros (the square's borders are
    real ones), with every padded input kept: the background's features at that point
    of the forward pass, at full or half resolution."""

    def __init__(self) -> None:
        self.inputs: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        self.inputs.append(x.clone())
        return F.pad(x, (1, 1, 1, 1))


class _CropPadder:
    """Edge padding for a crop: the i-th padded input gets, around it, the background
    features the whole image holds there (read from the i-th recorded square input by
    the border maps, so the image's borders are accounted for), and zeros on the sides
    where the crop meets the image's border."""

    def __init__(self, inputs: list[torch.Tensor], crop: Crop,
                 maps: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.inputs, self.crop, self.maps, self.calls = inputs, crop, maps, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        sq = self.inputs[self.calls]
        self.calls += 1
        n, c, h, w = x.shape
        scale = (self.crop.y1 - self.crop.y0) // h  # 1 at full resolution, 2 at half
        rows, cols = self.maps[scale]  # the square's row/column for each image row/column
        y0, x0 = self.crop.y0 // scale, self.crop.x0 // scale
        # Image rows y0 - 1 .. y0 + h and columns x0 - 1 .. x0 + w around the crop; a
        # side past the image's border gets any valid index here and is zeroed below.
        ry = rows[(torch.arange(y0 - 1, y0 + h + 1)).clamp(0, len(rows) - 1)]
        rx = cols[(torch.arange(x0 - 1, x0 + w + 1)).clamp(0, len(cols) - 1)]
        # The layout the whole image's input has: a one-channel input is contiguous in
        # both, and there the whole image holds plain strides; oneDNN picks its kernel
        # (and so the order of the sums) from the strides.
        fmt = (torch.contiguous_format if x.is_contiguous()
               else torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
               else torch.contiguous_format)
        out = torch.empty((n, c, h + 2, w + 2), dtype=x.dtype, device=x.device,
                          memory_format=fmt)
        out[..., 1 : h + 1, 1 : w + 1] = x
        out[..., 0, :] = sq[..., int(ry[0]), :].index_select(-1, rx)
        out[..., h + 1, :] = sq[..., int(ry[-1]), :].index_select(-1, rx)
        out[..., :, 0] = sq[..., :, int(rx[0])].index_select(-1, ry)
        out[..., :, w + 1] = sq[..., :, int(rx[-1])].index_select(-1, ry)
        k = self.crop
        if k.top:
            out[..., 0, :] = 0
        if k.bottom:
            out[..., h + 1, :] = 0
        if k.left:
            out[..., :, 0] = 0
        if k.right:
            out[..., :, w + 1] = 0
        return out


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


def half_border_map(n: int, radius: int) -> np.ndarray:
    """:func:`border_map` at half resolution: cells of the square (``radius + 1`` of
    them for a full-resolution ``radius``, which must be even), whose middle cell stands
    for every cell more than ``radius / 2`` from both borders (no parity after the 2x2
    pooling)."""
    r = radius // 2
    side = 2 * r + 1
    idx = np.arange(n)
    out = np.full(n, r)
    out[:r] = idx[:r]
    out[n - r:] = side - (n - idx[n - r:])
    return out


#: Body paths of the two branches (MRI, functional), as :func:`medfuse.model.folded.body_paths`
#: names them.
Kinds = tuple[str, str]
BRANCHES = ("mri", "functional")


class RunWhole(Exception):
    """Raised inside a crop's forward pass where the whole image's sparse-body windows
    reach outside the crop (principal pixels in the background): the crop cannot then
    give the whole image's numbers bit for bit, and the slice runs whole."""


@dataclass
class _PathReference:
    """The background square run under one pair of body paths: every padded input before
    the attention (in the crop form's order) and the whole-image body outputs."""

    inputs: list[torch.Tensor]
    bodies: tuple[torch.Tensor, torch.Tensor]


class Background:
    """The network on an all-background image of one size, held as a small square and
    index maps (see the module docstring); built once per size and background values.
    The square runs under the body paths the image runs (:meth:`reference`, one per
    pair of paths), so its features are those of the whole image bit for bit."""

    def __init__(self, net: FusionPass, h: int, w: int, values: tuple[float, float],
                 radius: int, device: torch.device) -> None:
        import torch

        from medfuse.model.folded import BodyPlan

        self.net, self.h, self.w, self.radius = net, h, w, radius
        self.crops = net.for_crops()
        side = 2 * radius + 2
        self.rows = torch.from_numpy(border_map(h, radius))
        self.cols = torch.from_numpy(border_map(w, radius))
        self.square = tuple(torch.full((1, 1, side, side), v, dtype=torch.float32, device=device)
                            for v in values)
        #: The square's edge features and spatial masks per branch (the same on every
        #: body path): what a sparse window past a crop's edge reads.
        self.features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def capture(name: str, e: torch.Tensor, spa: torch.Tensor) -> BodyPlan:
            self.features[name] = (e, spa)
            return BodyPlan("split")

        with self.crops.body_paths(capture):
            out = self.crops.fuse(*self.square, return_bodies=True)
        self.fmt = (torch.channels_last
                    if out.body_mri.is_contiguous(memory_format=torch.channels_last)
                    else torch.contiguous_format)
        #: Whole-image spatial masks (1, 1, h, w) per branch.
        self.spa = {k: self.stretch(self.features[k][1]) for k in BRANCHES}
        self.mask_mri = self.spa["mri"][0, 0].float().cpu().numpy()
        self.mask_functional = self.spa["functional"][0, 0].float().cpu().numpy()
        #: Square row/column of every image row/column, at full and half resolution.
        self.maps = {1: (self.rows, self.cols),
                     2: (torch.from_numpy(half_border_map(h // 2, radius)),
                         torch.from_numpy(half_border_map(w // 2, radius)))}
        self._refs: dict[Kinds, _PathReference] = {}
        #: The body paths the whole background image runs, or None where one is the
        #: sparse body (its windows lie in the background; such a slice runs whole).
        plans = [net.body_plan(k, self.spa[k]) for k in BRANCHES]
        self.empty_kinds: Kinds | None = (
            None if any(p.kind == "sparse" for p in plans) else (plans[0].kind, plans[1].kind))
        #: The whole result of a slice with no content (None: it runs whole).
        self.empty_fused: np.ndarray | None = None
        if self.empty_kinds is not None:
            pooled = self.means(*self.reference(self.empty_kinds).bodies)
            fused, _ = self.run(self.empty_kinds, pooled)
            self.empty_fused = self.stretch(fused)[0, 0].float().cpu().numpy()

    def stretch(self, t: torch.Tensor) -> torch.Tensor:
        """A (N, C, side, side) tensor of the square to (N, C, h, w) of the image."""
        return t.index_select(-2, self.rows.to(t.device)).index_select(-1, self.cols.to(t.device))

    def window(self, t: torch.Tensor, ys: slice, xs: slice) -> torch.Tensor:
        """Rows ``ys`` and columns ``xs`` of the whole background image of square tensor
        ``t``."""
        rows, cols = self.rows[ys].to(t.device), self.cols[xs].to(t.device)
        return t.index_select(-2, rows).index_select(-1, cols).contiguous(memory_format=self.fmt)

    def _planner(self, kinds: Kinds) -> Any:
        from medfuse.model.folded import BodyPlan

        paths = dict(zip(BRANCHES, kinds))
        return lambda name, e, spa: BodyPlan(paths[name])  # type: ignore[arg-type]

    def reference(self, kinds: Kinds) -> _PathReference:
        """The square under body paths ``kinds`` (built once per pair)."""
        ref = self._refs.get(kinds)
        if ref is None:
            recorder = _Recorder()
            with self.crops.edge_padding(recorder), self.crops.body_paths(self._planner(kinds)):
                out = self.crops.fuse(*self.square, return_bodies=True)
            bodies = tuple(self.stretch(b).contiguous(memory_format=self.fmt)
                           for b in (out.body_mri, out.body_functional))
            ref = self._refs[kinds] = _PathReference(recorder.inputs, bodies)  # type: ignore[arg-type]
        return ref

    def run(self, kinds: Kinds, pooled: tuple[torch.Tensor, torch.Tensor]
            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The square's fused output under body paths ``kinds`` and attention means
        ``pooled``, and every padded input of that run (the crop's padding)."""
        recorder = _Recorder()
        with self.crops.edge_padding(recorder), self.crops.body_paths(self._planner(kinds)):
            out = self.crops.fuse(*self.square, pooled=pooled, return_bodies=False)
        return out.fused, recorder.inputs

    @staticmethod
    def means(body_mri: torch.Tensor, body_functional: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The channel-attention means, reduced as the network reduces a whole image."""
        return (body_mri.mean((-2, -1), keepdim=True), body_functional.mean((-2, -1), keepdim=True))


class _CropPaths:
    """A crop's body paths, chosen as the whole image chooses them: from the whole
    image's spatial mask (the crop's inside its region, the background's elsewhere).
    Switches the crop's padding to the square run under the same paths, and builds the
    sparse body's windows in image coordinates (reading the background's features where
    a window passes the crop's edge)."""

    def __init__(self, ref: Background, crop: Crop, padder: _CropPadder, layers: int) -> None:
        self.ref, self.crop, self.padder, self.layers = ref, crop, padder, layers
        self.kinds: dict[str, str] = {}

    def __call__(self, name: str, e: torch.Tensor, spa: torch.Tensor) -> Any:
        ref, region = self.ref, self.crop.region
        whole = ref.spa[name].clone()
        whole[(..., *region)] = spa
        plan = ref.net.body_plan(name, whole)  # type: ignore[arg-type]
        self.kinds[name] = plan.kind
        # The square's padded inputs up to here do not depend on the paths; from here on
        # they must come from its run under this one (the other branch's later).
        self.padder.inputs = ref.reference(
            (self.kinds["mri"], self.kinds.get("functional", "split"))).inputs
        if plan.kind == "sparse":
            plan.windows = self.windows(name, e, spa, plan.boxes)
        return plan

    @property
    def pair(self) -> Kinds:
        return self.kinds["mri"], self.kinds["functional"]

    def windows(self, name: str, e: torch.Tensor, spa: torch.Tensor,
                boxes: list[tuple[int, int, int, int, int]]) -> list[Any]:
        """The whole image's windows (see ``FoldedGeSeNet._image_windows``), for a crop:
        the part pasted back must lie in the crop (else :class:`RunWhole`)."""
        k, m = self.crop, self.layers
        h, w = self.ref.h, self.ref.w
        out = []
        for _, y0, y1, x0, x1 in boxes:
            wy0, wy1, wx0, wx1 = max(y0 - 2 * m, 0), min(y1 + 2 * m, h), max(x0 - 2 * m, 0), min(x1 + 2 * m, w)
            vy0, vy1, vx0, vx1 = max(y0 - m, 0), min(y1 + m, h), max(x0 - m, 0), min(x1 + m, w)
            if vy0 < k.y0 or vy1 > k.y1 or vx0 < k.x0 or vx1 > k.x1:
                raise RunWhole(name)
            parts = []
            for t, sq in zip((e, spa), self.ref.features[name]):
                if wy0 >= k.y0 and wy1 <= k.y1 and wx0 >= k.x0 and wx1 <= k.x1:
                    win = t[..., wy0 - k.y0 : wy1 - k.y0, wx0 - k.x0 : wx1 - k.x0]
                    parts.append(win.contiguous(memory_format=self.ref.fmt))
                    continue
                win = self.ref.window(sq, slice(wy0, wy1), slice(wx0, wx1))
                iy0, iy1, ix0, ix1 = max(wy0, k.y0), min(wy1, k.y1), max(wx0, k.x0), min(wx1, k.x1)
                win[..., iy0 - wy0 : iy1 - wy0, ix0 - wx0 : ix1 - wx0] = \
                    t[..., iy0 - k.y0 : iy1 - k.y0, ix0 - k.x0 : ix1 - k.x0]
                parts.append(win)
            dst = (slice(None), slice(None), slice(vy0 - k.y0, vy1 - k.y0), slice(vx0 - k.x0, vx1 - k.x0))
            src = (Ellipsis, slice(vy0 - wy0, vy1 - wy0), slice(vx0 - wx0, vx1 - wx0))
            out.append((parts[0], parts[1], dst, src))
        return out


class EmptySpace:
    """Runs one engine's slices with empty space skipped; keeps its background
    references (a few, least recently used first out)."""

    def __init__(self, radius: int, multiple: int, max_area: float = SKIP_MAX_AREA) -> None:
        self.radius, self.multiple, self.max_area = radius, multiple, max_area
        self._cache: OrderedDict[tuple[Any, ...], Background] = OrderedDict()
        #: Slices run so far by how: "empty" (no content), "crop" or "whole" (for
        #: benchmarks and tests).
        self.counts: Counter[str] = Counter()
        #: Crops run so far by the body paths they ran ("mri path/functional path"; the
        #: whole image's, see :class:`_CropPaths`).
        self.body_paths: Counter[str] = Counter()

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
        would not pay or could not be exact bit for bit (the caller then runs the whole
        slice)."""
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
        ref = self.background(net, h, w, (float(m.min()), float(o.min())), mri.device)
        if crop is None:
            if ref.empty_fused is None:
                self.counts["whole"] += 1
                return None
            self.counts["empty"] += 1
            fused = ref.empty_fused.copy()
            if not with_masks:
                return fused, None, None
            return fused, ref.mask_mri.copy(), ref.mask_functional.copy()
        region = crop.region
        square: list[torch.Tensor] = []

        def whole_image_means(body_mri: torch.Tensor, body_functional: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:
            parts = []
            for full, body in zip(ref.reference(paths.pair).bodies, (body_mri, body_functional)):
                full = full.clone(memory_format=torch.preserve_format)
                full[(..., *region)] = body
                parts.append(full)
            pooled = ref.means(*parts)
            # From here on the features depend on the means: the background's, around
            # the crop, are those of the square run under the same means and paths.
            fused, padder.inputs = ref.run(paths.pair, pooled)
            square.append(fused)
            return pooled

        crops = ref.crops
        padder = _CropPadder(ref.reference(("split", "split")).inputs, crop, ref.maps)
        paths = _CropPaths(ref, crop, padder, len(net.inf.layers))
        try:
            with crops.edge_padding(padder), crops.body_paths(paths):
                out = crops.fuse(mri[(..., *region)].contiguous(),
                                 other[(..., *region)].contiguous(),
                                 pooled=whole_image_means, return_bodies=False)
        except RunWhole:
            self.counts["whole"] += 1
            return None
        if padder.calls != len(padder.inputs):
            raise RuntimeError(f"crop ran {padder.calls} padded convolutions, the background "
                               f"square {len(padder.inputs)}")
        self.counts["crop"] += 1
        self.body_paths["/".join(paths.pair)] += 1
        # Outside the crop: the background square under this slice's means (the run
        # that gave the crop its edges), spread over the slice.
        fused = ref.stretch(square[0])[0, 0].float().cpu().numpy()
        fused[region] = out.fused[0, 0].float().cpu().numpy()
        if not with_masks:
            return fused, None, None
        mm, mf = ref.mask_mri.copy(), ref.mask_functional.copy()
        mm[region] = out.mask_mri[0, 0].float().cpu().numpy()
        mf[region] = out.mask_functional[0, 0].float().cpu().numpy()
        return fused, mm, mf
