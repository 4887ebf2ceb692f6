"""GeSeNet's inference form: hard masks folded in, so that no convolution runs twice.

Why this exists: the training graph in :mod:`medfuse.model` is the dense, differentiable
formulation of the region-mask convolution. Each of its masked layers convolves the
dense-channel input and the sparse-channel input separately (two full convolutions) and
then mixes the results with a dozen full-size multiplications. With hard (eval-mode)
masks those become 0/1 selections, and the same numbers come out of a much cheaper
program (measured 1.6x faster at 256x256 on 2 CPU threads, see docs/lab/performance.md):

* each masked layer costs exactly one 32x32 convolution's multiply-adds. Its output
  channels are reordered to ``[dense, sparse]`` (the next layer's input order follows),
  so a mask becomes a slice: dense outputs are ``conv(dense inputs) + spa * conv(sparse
  inputs)``, sparse outputs are ``spa * conv(all inputs)``. The default ``body="split"``
  keeps dense and sparse channels as two tensors and convolves each once;
  ``body="stacked"`` does it in one call with ``n_dense`` extra output rows.
* where the spatial mask of a whole batch is all ones or all zeros (the reference
  checkpoint's functional branch is all ones), the layer is a plain convolution: sparse
  inputs are already zero wherever ``spa`` is 0, and ``spa`` is 1 everywhere else.
* activations are NHWC (oneDNN's fastest layout here); concatenations are avoided: 1x1
  convolutions run as in-place ``addmm`` over their separate inputs, SFT2 and decoder2
  are split by input group, the two depthwise Sobel convolutions are one call, and
  activations run in place. Channel attention plus residual is one ``addcmul`` written
  straight into SFT2's input buffer.
* a true sparse body (``sparse=``) skips the sparse channels outside the principal
  region: the dense-from-dense chain runs over the whole image, and the full masked body
  only inside windows around the principal boxes. It pays when the windows cover little
  of the image and the branch has few dense channels; ``sparse="auto"`` decides per call
  from a cost model measured on CPU (:data:`SPARSE_AUTO_MAX_COST`).

The network builds this form itself (:meth:`GeSeNet.fold`, which calls :func:`fold`).
Every weight used here is derived from the model's current parameters and cached per
model; the cache is rebuilt when any parameter or buffer is replaced or modified in place
(tensor version counters), so a model being trained, reloaded or moved never runs stale
folded weights. It always computes the eval-mode (hard-mask) function; whoever runs a
model in training mode must run the model itself (the engine does).
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medfuse.model.gesenet import Branch, FusionOutput, GeSeNet
from medfuse.model.modules import EdgeEnhancement, RegionMask, hard_mask

Tensor = torch.Tensor
#: What pads each padded convolution's input by one pixel, where a caller runs a crop of a
#: larger image (see :func:`edge_padding`); None: the convolutions zero-pad as usual.
EdgePad = Callable[[Tensor], Tensor]
_EDGE_PAD: ContextVar[EdgePad | None] = ContextVar("medfuse_edge_pad", default=None)


@contextlib.contextmanager
def edge_padding(pad: EdgePad) -> Iterator[None]:
    """Within this block, every padded convolution of a folded form (and the transposed
    one of the spatial mask) gets its input padded by ``pad`` instead of with zeros.

    Why: a crop of a larger image is exact only where its convolutions see, past the
    crop's edge, what the whole image holds there. ``pad`` receives each input in the
    order the forward pass uses them and returns it one pixel larger on every side (a
    crop run with empty-space skipping pads with the background's features, and with
    zeros where the crop meets the image's border). Use it with a form whose sequence
    of convolutions does not depend on the data (:meth:`FoldedGeSeNet.for_crops`), or
    whose body paths :func:`body_paths` fixes.
    """
    token = _EDGE_PAD.set(pad)
    try:
        yield
    finally:
        _EDGE_PAD.reset(token)


#: A region-mask body path: ``"ones"``/``"zeros"`` (the spatial mask is uniform, a plain
#: convolution per layer), ``"split"``/``"stacked"`` (the general masked body) or
#: ``"sparse"`` (dense chain plus windows).
BodyKind = Literal["ones", "zeros", "split", "stacked", "sparse"]
#: One window of the sparse body: its features and spatial mask (zero-padded at their own
#: edges), where its result goes in the body output and which part of it goes there.
Window = tuple[Tensor, Tensor, tuple[slice, ...], tuple[slice, ...]]


@dataclass
class BodyPlan:
    """How a branch's region-mask body runs on one call: the path, and for ``"sparse"``
    the windows (an iterable, so they can be built one at a time) and the boxes the
    whole image's windows come from (image coordinates, with the window share)."""

    kind: BodyKind
    windows: Iterable[Window] = ()
    boxes: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    area: float = 0.0


#: Chooses each branch's body path in place of the form's own rule (see
#: :func:`body_paths`); None: the form decides from the mask it computed.
BodyPlanner = Callable[[str, Tensor, Tensor], BodyPlan]
_BODY_PLAN: ContextVar[BodyPlanner | None] = ContextVar("medfuse_body_plan", default=None)


@contextlib.contextmanager
def body_paths(planner: BodyPlanner) -> Iterator[None]:
    """Within this block, each branch's region-mask body runs the path ``planner(branch,
    features, spatial_mask)`` returns instead of the one the form would choose.

    Why: a crop of a larger image (empty-space skipping) must run the body path the
    whole image runs (chosen from the whole image's mask), or its sums are ordered
    differently and it is equal only to float rounding; the background it is padded
    with must run that path too. The sparse windows run with zero padding (as on the
    whole image) even inside :func:`edge_padding`.
    """
    token = _BODY_PLAN.set(planner)
    try:
        yield
    finally:
        _BODY_PLAN.reset(token)


def _conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, padding: int = 0,
            groups: int = 1) -> Tensor:
    pad = _EDGE_PAD.get() if padding else None
    if pad is None:
        return F.conv2d(x, weight, bias, padding=padding, groups=groups)
    return F.conv2d(pad(x), weight, bias, groups=groups)
SparseMode = Literal["auto", "never", "always"]
BodyMode = Literal["stacked", "split"]

#: Sparse body: row gaps up to this many pixels between principal rows are bridged
#: into one band (one window per band; tiny windows cost more than they save).
SPARSE_GAP = 16
#: The sparse body's cost relative to the dense masked body is modelled as
#: ``SPARSE_FIXED + SPARSE_CHAIN_WEIGHT * dense_share + SPARSE_AREA_WEIGHT * window_area``:
#: a fixed share (more, smaller calls), the dense-from-dense chain over the whole image
#: (``dense_share`` is its share of the body's multiply-adds; thin convolutions run a
#: little less efficiently) and the full body inside the windows. Fitted on a 2-core
#: AVX-512 CPU, 2 threads, idle (``benchmarks/bench_inference.py --sections sparse``;
#: within 0.05 of the measured cost over 14 masks and both branches, docs/lab/performance.md).
SPARSE_FIXED = 0.2
SPARSE_CHAIN_WEIGHT = 1.1
SPARSE_AREA_WEIGHT = 0.92
#: ``sparse="auto"`` uses the sparse body for a branch only when its modelled cost is at
#: most this share of the dense body's, a margin under the measured break-even of 1.
SPARSE_AUTO_MAX_COST = 0.85
#: Pixels of context a fused pixel depends on (the reach of one input pixel), counted layer
#: by layer: the edge module 3 (three chained 3x3 convolutions); the spatial mask 8 (a 3x3
#: convolution, 2x2 pooling, a 3x3 convolution at half resolution and a stride-2 3x3
#: transposed convolution reach 4 rows on one side and 5 on the other, plus the edge
#: module's 3); each of the 4 masked body layers one more than the last, starting from the
#: mask's 8 (11); SFT2 12; decoder2 13; decoder1 14. Tighter than the network's
#: conservative ``RECEPTIVE_RADIUS`` (24), which tiling uses; empty-space skipping crops by
#: this one (tests/engine/test_skipping.py measures that no change reaches further).
RECEPTIVE_RADIUS = 14
#: ``pooled`` as a function of the two body outputs (MRI, functional) giving the means.
PooledFromBodies = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
#: The keyword options of :class:`FoldedGeSeNet` (and so of :meth:`GeSeNet.fold`).
FOLD_OPTIONS = ("channels_last", "dtype", "body", "sparse", "sparse_gap", "sparse_max_cost",
                "mask_shortcuts")


@dataclass
class _Conv:
    """A convolution frozen to tensors, so no nn.Module dispatch runs per call."""

    weight: Tensor
    bias: Tensor | None
    padding: int = 0
    groups: int = 1

    def __call__(self, x: Tensor) -> Tensor:
        return _conv2d(x, self.weight, self.bias, self.padding, self.groups)


@dataclass
class _Pointwise:
    """A 1x1 convolution over inputs held as separate tensors (channel order = the order
    of the parts), so no concatenated copy is ever made.

    With NHWC activations an (N, C, H, W) tensor is an (N*H*W, C) matrix without copying,
    so the convolution is a chain of in-place ``addmm`` into one output: no concatenation
    buffer, no temporaries (measured 1.3-2.5x faster than cat + 1x1 conv for the region-
    mask body's collect layer). NCHW falls back to per-part convolutions.
    """

    weight_t: Tensor  # (cin, cout): rows are input channels
    weight: Tensor  # (cout, cin, 1, 1)
    bias: Tensor | None
    channels_last: bool

    def __call__(self, parts: list[Tensor]) -> Tensor:
        parts = [p for p in parts if p.shape[1]]
        n, _, h, w = parts[0].shape
        cout = self.weight_t.shape[1]
        if self.channels_last and all(
            p.is_contiguous(memory_format=torch.channels_last) for p in parts
        ):
            out = torch.empty((n, h, w, cout), dtype=parts[0].dtype, device=parts[0].device)
            acc = out.view(-1, cout)
            off = 0
            for i, p in enumerate(parts):
                c = p.shape[1]
                mat = p.permute(0, 2, 3, 1).reshape(-1, c)
                wt = self.weight_t[off : off + c]
                if i == 0:
                    if self.bias is None:
                        torch.mm(mat, wt, out=acc)
                    else:
                        torch.addmm(self.bias, mat, wt, out=acc)
                else:
                    acc.addmm_(mat, wt)
                off += c
            return out.permute(0, 3, 1, 2)
        out = None
        off = 0
        for p in parts:
            c = p.shape[1]
            y = F.conv2d(p, self.weight[:, off : off + c], self.bias if out is None else None)
            out = y if out is None else out.add_(y)
            off += c
        assert out is not None
        return out


@dataclass
class _MaskedLayer:
    """One region-mask body layer with its channel mask folded in.

    Output channels are ordered ``[dense (n_dense), sparse]``; input channels follow the
    previous layer's order. ``stacked`` adds ``n_dense`` rows (dense outputs from sparse
    inputs only) after the 32 ordinary rows; ``dense_in``/``sparse_in`` are the column
    halves of ``full`` for the two-call variant; ``dense_dense`` (dense outputs from
    dense inputs) is what the sparse body runs outside its windows.
    """

    n_dense: int
    n_dense_in: int
    full: Tensor
    stacked: Tensor | None
    dense_in: Tensor | None
    sparse_in: Tensor | None
    dense_dense: Tensor


@dataclass
class _Branch:
    conv: _Conv
    dense1: _Conv
    dense2: _Conv
    sobel: _Conv
    mix: _Pointwise
    spa0: _Conv
    spa3: _Conv
    spa5_weight: Tensor
    spa5_bias: Tensor
    layers: list[_MaskedLayer]
    collect: _Pointwise
    #: ``collect`` restricted to the dense channels (None when every channel is sparse).
    collect_dense: _Pointwise | None
    #: The dense-from-dense chain's share of the body's multiply-adds (the sparse body's
    #: fixed cost).
    dense_share: float
    ca0: _Conv
    ca2: _Conv


def _sparse_cost(b: _Branch, window_area: float) -> float:
    """The sparse body's modelled cost against the dense masked body's (see
    :data:`SPARSE_FIXED`)."""
    return SPARSE_FIXED + SPARSE_CHAIN_WEIGHT * b.dense_share + SPARSE_AREA_WEIGHT * window_area


def _frozen(t: Tensor | None, dtype: torch.dtype, channels_last: bool) -> Tensor | None:
    if t is None:
        return None
    t = t.detach().to(dtype).clone()
    if channels_last and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


class FoldedGeSeNet:
    """Inference-only view of a :class:`GeSeNet` with hard masks folded into the weights.

    Equal to ``model.eval().fuse`` up to float rounding (max abs difference on the fused
    luminance well below 1e-4; spatial masks identical except at exact logit ties).
    Build it through :meth:`GeSeNet.fold` (or :func:`fold`), which caches it per model.

    Args:
        model: the network whose current weights are folded (any mode; the weights are
            copied, so the model may change afterwards without affecting this object).
        channels_last: NHWC activations (oneDNN's fastest convolution layout on x86).
        dtype: compute dtype (float16 on CUDA when its error is acceptable).
        body: ``"split"`` (default: dense and sparse channels kept as separate tensors
            and each convolved once, exactly one 32x32 convolution's multiply-adds per
            layer; measured fastest) or ``"stacked"`` (one call per layer with
            ``n_dense`` extra output rows; kept for comparison).
        sparse: sparse body policy; ``"auto"`` uses it when its modelled cost is at most
            ``sparse_max_cost`` of the dense body's (default :data:`SPARSE_AUTO_MAX_COST`).
        mask_shortcuts: look at each spatial mask on the host and run a plain convolution
            where it is uniform (default). False never reads mask values on the host (no
            device synchronisation), so the forward pass can be captured in a CUDA graph
            or compiled without graph breaks; use it with ``sparse="never"``.
    """

    def __init__(
        self,
        model: GeSeNet,
        *,
        channels_last: bool = True,
        dtype: torch.dtype | None = None,
        body: BodyMode = "split",
        sparse: SparseMode = "auto",
        sparse_gap: int = SPARSE_GAP,
        sparse_max_cost: float = SPARSE_AUTO_MAX_COST,
        mask_shortcuts: bool = True,
    ) -> None:
        if body not in ("stacked", "split"):
            raise ValueError(f"body must be 'stacked' or 'split', got {body!r}")
        if sparse not in ("auto", "never", "always"):
            raise ValueError(f"sparse must be 'auto', 'never' or 'always', got {sparse!r}")
        ref = next(model.parameters())
        self.device = ref.device
        self.dtype = dtype or ref.dtype
        self.channels_last = channels_last
        self.body_mode = body
        self.sparse = sparse
        self.sparse_gap = sparse_gap
        self.sparse_max_cost = sparse_max_cost
        self.mask_shortcuts = mask_shortcuts
        self._crops: FoldedGeSeNet | None = None
        #: See :data:`RECEPTIVE_RADIUS`; ``fuse`` also accepts ``pooled`` as a function.
        self.receptive_radius = RECEPTIVE_RADIUS
        #: How the last call ran each branch's body, for benchmarks and tests.
        self.last_body_paths: dict[str, str] = {}
        with torch.no_grad():
            self.inf = self._fold_branch(model.inf_conv.conv, model.inf_eem, model.inf_rmm)
            self.vis = self._fold_branch(model.vis_conv.conv, model.vis_eem, model.vis_rmm)
            sft = model.sft
            self.scale0 = self._conv(sft.SFT_scale_conv0)
            self.scale1 = self._conv(sft.SFT_scale_conv1)
            self.shift0 = self._conv(sft.SFT_shift_conv0)
            self.shift1 = self._conv(sft.SFT_shift_conv1)
            # SFT2 reads cat[vis_r, inf_r, scale] and decoder2 reads cat[sft out, vis_e]:
            # each becomes two convolutions over the separate parts (same multiply-adds),
            # so the 128- and 96-channel concatenations are never built.
            c = sft.SFT2.weight.shape[1] // 2
            self.sft2_r = _Conv(self._t(sft.SFT2.weight[:, :c]), self._t(sft.SFT2.bias), 1)
            self.sft2_s = _Conv(self._t(sft.SFT2.weight[:, c:]), None, 1)
            dec = model.decoder2.conv
            c = sft.SFT2.weight.shape[0]
            self.decoder2_m = _Conv(self._t(dec.weight[:, :c]), self._t(dec.bias), 1)
            self.decoder2_v = _Conv(self._t(dec.weight[:, c:]), None, 1)
            self.decoder1 = self._conv(model.decoder1.conv)

    # -- folding ------------------------------------------------------------------------
    def _t(self, t: Tensor | None) -> Tensor | None:
        return _frozen(t, self.dtype, self.channels_last)

    def _conv(self, conv: nn.Conv2d) -> _Conv:
        pad = conv.padding[0] if isinstance(conv.padding, tuple) else int(conv.padding)
        return _Conv(self._t(conv.weight), self._t(conv.bias), pad, conv.groups)

    def _pointwise(self, weight: Tensor, bias: Tensor | None) -> _Pointwise:
        w = weight.detach().to(self.dtype)
        return _Pointwise(
            weight_t=w[:, :, 0, 0].t().contiguous(),
            weight=w.contiguous(),
            bias=None if bias is None else bias.detach().to(self.dtype).clone(),
            channels_last=self.channels_last,
        )

    def _fold_branch(self, first: nn.Conv2d, eem: EdgeEnhancement, rmm: RegionMask) -> _Branch:
        # Edge module: one depthwise call yields gx and gy interleaved ([gx0, gy0, gx1, ...],
        # as grouped convolution orders its outputs), and one 1x1 convolution over the
        # parts [x, c1, c2, |g|] replaces convdown(cat[x, c1, c2]) + convup(|gx| + |gy|),
        # with convup's columns duplicated for the gx and gy halves (no sum pass).
        sx, sy = eem.sobelconv.convx.weight, eem.sobelconv.convy.weight
        sobel_w = torch.stack([sx, sy], 1).flatten(0, 1)  # (2C, 1, 3, 3)
        sobel = _Conv(self._t(sobel_w), None, 1, sx.shape[0])
        up = eem.convup.conv.weight  # (32, C, 1, 1)
        up2 = up.repeat_interleave(2, dim=1)
        down = eem.convdown.conv.weight  # (32, 3C, 1, 1)
        mix = self._pointwise(
            torch.cat([down, up2], 1), eem.convdown.conv.bias + eem.convup.conv.bias
        )
        spa = rmm.spa_mask
        body = rmm.body
        # The one inference rule (ties go dense), per channel and layer: (C, layers).
        sparse_all = hard_mask(body.ch_mask[0], dim=-1)[..., 0].bool()
        layers: list[_MaskedLayer] = []
        prev_perm: Tensor | None = None
        prev_dense = 0
        perms: list[Tensor] = []
        for i, conv in enumerate(body.body):
            sparse = sparse_all[:, i]
            perm = torch.cat([torch.nonzero(~sparse).flatten(), torch.nonzero(sparse).flatten()])
            nd = int((~sparse).sum())
            w = conv.weight[perm]
            if prev_perm is not None:
                w = w[:, prev_perm]
            stacked = dense_in = sparse_in = None
            if i == 0:
                # Layer 0 has no masked input: dense rows see everything.
                dense_dense = w[:nd]
            else:
                wd = w.clone()
                wd[:nd, prev_dense:] = 0  # dense-out from dense-in only
                ws = w[:nd].clone()
                ws[:, :prev_dense] = 0  # dense-out from sparse-in only
                stacked = torch.cat([wd, ws], 0)
                dense_in, sparse_in = w[:, :prev_dense], w[:, prev_dense:]
                dense_dense = w[:nd, :prev_dense]
            layers.append(
                _MaskedLayer(
                    n_dense=nd,
                    n_dense_in=prev_dense,
                    full=self._t(w),
                    stacked=self._t(stacked),
                    dense_in=self._t(dense_in),
                    sparse_in=self._t(sparse_in),
                    dense_dense=self._t(dense_dense),
                )
            )
            perms.append(perm)
            prev_perm, prev_dense = perm, nd
        c = body.collect.weight.shape[0]
        col_perm = torch.cat([p + c * i for i, p in enumerate(perms)])
        collect_w = body.collect.weight[:, col_perm]
        collect = self._pointwise(collect_w, body.collect.bias)
        dense_cols = torch.cat([torch.arange(layer.n_dense) + c * i for i, layer in enumerate(layers)])
        collect_dense = (self._pointwise(collect_w[:, dense_cols], body.collect.bias)
                         if len(dense_cols) else None)
        full_macs = sum(layer.full[0].numel() * layer.full.shape[0] for layer in layers)
        dense_macs = sum(layer.dense_dense.numel() for layer in layers)
        ca = rmm.ca.conv_du
        return _Branch(
            conv=self._conv(first),
            dense1=self._conv(eem.dense.conv1.conv),
            dense2=self._conv(eem.dense.conv2.conv),
            sobel=sobel,
            mix=mix,
            spa0=self._conv(spa[0]),
            spa3=self._conv(spa[3]),
            spa5_weight=self._t(spa[5].weight),
            spa5_bias=self._t(spa[5].bias),
            layers=layers,
            collect=collect,
            collect_dense=collect_dense,
            dense_share=dense_macs / full_macs,
            ca0=self._conv(ca[0]),
            ca2=self._conv(ca[2]),
        )

    # -- forward pieces -----------------------------------------------------------------
    def _prep(self, x: Tensor) -> Tensor:
        x = x.to(self.device, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _edges(self, b: _Branch, x: Tensor) -> Tensor:
        # A one-channel input is both NCHW- and NHWC-contiguous, and torch then picks NCHW
        # for the first convolution's output; every later convolution would convert its
        # input back. Fix the layout once, here.
        h = F.leaky_relu_(b.conv(x), 0.2).contiguous(memory_format=self._fmt)
        c1 = F.leaky_relu_(b.dense1(h), 0.2)
        c2 = F.leaky_relu_(b.dense2(torch.cat([h, c1], 1)), 0.2)
        g = b.sobel(h).abs_()
        return F.leaky_relu_(b.mix([h, c1, c2, g]), 0.1)

    @staticmethod
    def _spatial(b: _Branch, e: Tensor) -> Tensor:
        t = F.relu_(b.spa0(e))
        t = F.avg_pool2d(t, 2)
        t = F.relu_(b.spa3(t))
        pad = _EDGE_PAD.get()
        if pad is None:
            logits = F.conv_transpose2d(t, b.spa5_weight, b.spa5_bias, stride=2, padding=1,
                                        output_padding=1)
        else:
            # The same sums over an input padded by one cell: output row o of the padded
            # form is row o - 3 of the original (one cell is two rows, plus its padding).
            n, m = t.shape[-2:]
            full = F.conv_transpose2d(pad(t), b.spa5_weight, b.spa5_bias, stride=2)
            logits = full[..., 3 : 3 + 2 * n, 3 : 3 + 2 * m]
        return hard_mask(logits, dim=1)

    def _plan_body(self, b: _Branch, spa: Tensor) -> BodyPlan:
        """The body path this form's options choose for spatial mask ``spa`` (boxes in
        its coordinates for ``"sparse"``; the windows are built by the caller)."""
        if self.mask_shortcuts:
            all_ones = bool(spa.all())
            uniform = all_ones or not bool(spa.any())
        else:
            all_ones = uniform = False
        if uniform:
            return BodyPlan("ones" if all_ones else "zeros")
        # The windows cover at least the principal pixels, so skip finding them when even
        # that could not pay.
        worth_trying = self.sparse == "always" or (
            self.sparse == "auto" and _sparse_cost(b, float(spa.mean())) <= self.sparse_max_cost
        )
        if worth_trying:
            boxes, area = self._sparse_boxes(spa, halo=2 * len(b.layers))
            if self.sparse == "always" or _sparse_cost(b, area) <= self.sparse_max_cost:
                return BodyPlan("sparse", boxes=boxes, area=area)
        return BodyPlan(self.body_mode)

    def _body(self, b: _Branch, e: Tensor, spa: Tensor, name: str) -> Tensor:
        planner = _BODY_PLAN.get()
        if planner is not None:
            plan = planner(name, e, spa)
        else:
            plan = self._plan_body(b, spa)
            if plan.kind == "sparse":
                plan.windows = self._image_windows(b, e, spa, plan.boxes)
        kind = plan.kind
        self.last_body_paths[name] = (f"sparse ({plan.area:.0%} of the image)"
                                      if kind == "sparse" else
                                      "uniform" if kind in ("ones", "zeros") else kind)
        if kind == "sparse":
            return self._body_windows(b, e, plan.windows)
        if kind == "split":
            return self._body_split(b, e, spa)
        uniform, all_ones = kind in ("ones", "zeros"), kind == "ones"
        outs = []
        f = e
        for i, layer in enumerate(b.layers):
            nd = layer.n_dense
            if i == 0 or uniform:
                # Sparse inputs are zero wherever spa is 0 and spa is 1 elsewhere, so a
                # uniform mask needs no separate sparse-input term.
                y = _conv2d(f, layer.full, padding=1)
                if not all_ones:
                    y[:, nd:].mul_(spa)
            else:
                c = layer.full.shape[0]
                yz = _conv2d(f, layer.stacked, padding=1)
                y = yz[:, :c]
                y[:, nd:].mul_(spa)
                y[:, :nd].addcmul_(yz[:, c:], spa)
                y = y.contiguous(memory_format=self._fmt)
            f = F.relu_(y)
            outs.append(f)
        return b.collect(outs)

    def _body_split(self, b: _Branch, e: Tensor, spa: Tensor) -> Tensor:
        """Masked body with exactly one 32x32 convolution's worth of multiply-adds per
        layer: each layer's dense and sparse channels are kept as two separate tensors,
        so the next layer convolves them separately (no slicing copies) and combines:
        dense = A_d + spa * B_d, sparse = spa * (A_s + B_s), where A comes from the
        dense inputs and B from the sparse ones."""
        outs: list[Tensor] = []
        d: Tensor | None = None
        s: Tensor | None = None
        for i, layer in enumerate(b.layers):
            nd = layer.n_dense
            if i == 0:
                y = _conv2d(e, layer.full, padding=1)
                d = y[:, :nd].contiguous(memory_format=self._fmt)
                s = y[:, nd:] * spa
                del y
            else:
                a = _conv2d(d, layer.dense_in, padding=1) if layer.n_dense_in else None
                z = (
                    _conv2d(s, layer.sparse_in, padding=1)
                    if layer.n_dense_in < layer.full.shape[1]
                    else None
                )
                if a is None:
                    assert z is not None
                    d, s = z[:, :nd] * spa, z[:, nd:] * spa
                elif z is None:
                    d, s = a[:, :nd].contiguous(memory_format=self._fmt), a[:, nd:] * spa
                else:
                    d = torch.addcmul(a[:, :nd], z[:, :nd], spa)
                    s = torch.add(a[:, nd:], z[:, nd:]).mul_(spa)
                del a, z  # free the conv outputs before the next layer's (peak memory)
            d, s = F.relu_(d), F.relu_(s)
            outs += [d, s]
        return b.collect(outs)

    @property
    def _fmt(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def _zeros(self, like: Tensor, channels: int) -> Tensor:
        n, _, h, w = like.shape
        return torch.empty((n, channels, h, w), dtype=like.dtype, device=like.device,
                           memory_format=self._fmt).zero_()

    # -- sparse body ----------------------------------------------------------------------
    def _sparse_boxes(
        self, spa: Tensor, halo: int = 0
    ) -> tuple[list[tuple[int, int, int, int, int]], float]:
        """Boxes (sample, y0, y1, x0, x1) that together cover every principal pixel, and
        the share of the image they cover once each grows by ``halo`` pixels (clipped
        to the image; overlaps counted once).

        Rows holding principal pixels are grouped into bands (gaps up to
        ``sparse_gap`` rows are bridged, since a separate window per tiny band costs
        more than it saves) and each band is cut to its principal columns. For compact
        anatomy this is close to the principal area at a handful of convolution calls,
        which is what makes it cheaper than per-block gathers."""
        n, _, h, w = spa.shape
        rows = spa.amax(dim=(1, 3)).cpu() > 0  # (N, H)
        boxes = []
        covered = torch.zeros(n, h, w, dtype=torch.bool)
        for i in range(n):
            idx = torch.nonzero(rows[i]).flatten().tolist()
            if not idx:
                continue
            start = prev = idx[0]
            bands = []
            for y in idx[1:]:
                if y - prev > self.sparse_gap:
                    bands.append((start, prev + 1))
                    start = y
                prev = y
            bands.append((start, prev + 1))
            for y0, y1 in bands:
                cols = torch.nonzero(spa[i, 0, y0:y1].amax(dim=0).cpu() > 0).flatten()
                x0, x1 = int(cols[0]), int(cols[-1]) + 1
                boxes.append((i, y0, y1, x0, x1))
                covered[i, max(y0 - halo, 0) : y1 + halo, max(x0 - halo, 0) : x1 + halo] = True
        return boxes, float(covered.float().mean())

    def _dense_chain(self, b: _Branch, e: Tensor) -> Tensor:
        """The body where every sparse channel is zero: dense-from-dense convolutions
        over the whole image, collected. Exact wherever no principal pixel is within a
        few pixels (sparse channels and their share of dense ones are zero there)."""
        outs: list[Tensor] = []
        d = e
        for i, layer in enumerate(b.layers):
            if layer.n_dense and (i == 0 or layer.n_dense_in):
                d = F.relu_(_conv2d(d, layer.dense_dense, padding=1))
            else:
                d = self._zeros(e, layer.n_dense)
            outs.append(d)
        if b.collect_dense is None:  # every channel sparse: the collect bias alone
            out = self._zeros(e, b.collect.weight.shape[0])
            if b.collect.bias is not None:
                out += b.collect.bias.view(1, -1, 1, 1)
            return out
        return b.collect_dense(outs)

    def _image_windows(
        self, b: _Branch, e: Tensor, spa: Tensor, boxes: list[tuple[int, int, int, int, int]]
    ) -> Iterator[Window]:
        """The sparse body's windows on the image itself: each box grown by 2L (L masked
        layers), clipped to the image; its inner part (box + L) goes back."""
        _, _, h, w = e.shape
        m = len(b.layers)
        for k, y0, y1, x0, x1 in boxes:
            wy0, wy1, wx0, wx1 = max(y0 - 2 * m, 0), min(y1 + 2 * m, h), max(x0 - 2 * m, 0), min(x1 + 2 * m, w)
            vy0, vy1, vx0, vx1 = max(y0 - m, 0), min(y1 + m, h), max(x0 - m, 0), min(x1 + m, w)
            win = (slice(k, k + 1), slice(None), slice(wy0, wy1), slice(wx0, wx1))
            yield (e[win].contiguous(memory_format=self._fmt),
                   spa[win].contiguous(memory_format=self._fmt),
                   (slice(k, k + 1), slice(None), slice(vy0, vy1), slice(vx0, vx1)),
                   (Ellipsis, slice(vy0 - wy0, vy1 - wy0), slice(vx0 - wx0, vx1 - wx0)))

    def _body_windows(self, b: _Branch, e: Tensor, windows: Iterable[Window]) -> Tensor:
        """Region-mask body that runs sparse channels only near the principal pixels.

        With L masked layers, a principal pixel can change the body at most L pixels
        away (one 3x3 convolution per layer), so outside the boxes grown by L the dense
        chain alone is exact. Inside them the full masked body runs on a window grown by
        2L: its zero padding at the window edge corrupts at most L pixels inward, which
        are outside the part pasted back. One paste per box; no per-layer scatter.
        """
        out = self._dense_chain(b, e)
        token = _EDGE_PAD.set(None)  # windows zero-pad at their own edges, always
        try:
            for ew, sw, dst, src in windows:
                out[dst] = self._body_split(b, ew, sw)[src]
        finally:
            _EDGE_PAD.reset(token)
        return out

    def body_plan(self, branch: Branch, spa: Tensor) -> BodyPlan:
        """The body path this form runs for ``branch`` on an image whose spatial mask is
        ``spa`` (boxes for ``"sparse"``, no windows): what a crop of that image must run
        to give the same numbers bit for bit (see :func:`body_paths`)."""
        return self._plan_body(self.inf if branch == "mri" else self.vis, self._prep(spa))

    # -- public -----------------------------------------------------------------------
    def _branch_features(
        self, b: _Branch, x: Tensor, name: str
    ) -> tuple[Tensor, Tensor, Tensor]:
        e = self._edges(b, x)
        spa = self._spatial(b, e)
        return e, spa, self._body(b, e, spa, name)

    @staticmethod
    def _attention(b: _Branch, body: Tensor, pooled: Tensor | None) -> Tensor:
        if pooled is None:
            pooled = body.mean((-2, -1), keepdim=True)
        pooled = pooled.to(body.dtype)
        return torch.sigmoid(b.ca2(F.relu(b.ca0(pooled))))

    def fuse(
        self,
        mri: Tensor,
        other: Tensor,
        pooled: tuple[Tensor, Tensor] | PooledFromBodies | None = None,
        return_bodies: bool = True,
    ) -> FusionOutput:
        """Same contract as :meth:`GeSeNet.fuse` in eval mode: (N, 1, H, W) inputs with
        even H and W; ``pooled`` overrides the channel-attention means (tiling), or is a
        function of the two body outputs that returns them: a crop of a larger image
        then gets that image's means in one pass (the engine's empty-space skipping).

        ``return_bodies=False`` frees the region-mask body outputs as soon as they are
        used (lower peak memory) and returns empty tensors in their place."""
        if mri.shape[-2] % 2 or mri.shape[-1] % 2:
            raise ValueError(f"GeSeNet needs even height and width, got {tuple(mri.shape[-2:])}")
        inf_e, spa_i, body_i = self._branch_features(self.inf, self._prep(mri), "mri")
        vis_e, spa_v, body_v = self._branch_features(self.vis, self._prep(other), "functional")
        if callable(pooled):
            pooled = pooled(body_i, body_v)
        p_inf, p_vis = pooled if pooled is not None else (None, None)
        # Ordered so that few full-size tensors are alive at once (peak memory): the
        # residual features are written straight into the buffer that SFT2's first half
        # reads, then the scale half, then the decoder, freeing as it goes.
        n, c, h, w = inf_e.shape
        r = torch.empty((n, 2 * c, h, w), dtype=inf_e.dtype, device=inf_e.device,
                        memory_format=self._fmt)
        torch.addcmul(vis_e, body_v, self._attention(self.vis, body_v, p_vis), out=r[:, :c])
        torch.addcmul(inf_e, body_i, self._attention(self.inf, body_i, p_inf), out=r[:, c:])
        if not return_bodies:
            body_i = body_v = inf_e.new_empty(0)
        m = self.sft2_r(r)
        del r
        m.add_(self.sft2_s(self.scale1(F.leaky_relu_(self.scale0(inf_e), 0.1))))
        m = F.leaky_relu_(m, 0.01)
        m.add_(self.shift1(F.leaky_relu_(self.shift0(inf_e), 0.1)))
        del inf_e
        d = self.decoder2_m(m)
        del m
        d = F.leaky_relu_(d.add_(self.decoder2_v(vis_e)), 0.2)
        del vis_e
        fused = torch.tanh_(self.decoder1(d)).div_(2).add_(0.5)
        return FusionOutput(fused, spa_i, spa_v, body_i, body_v)

    def body_features(self, mri: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
        """Same as :meth:`GeSeNet.body_features` (the first pass of exact tiling)."""
        _, _, body_i = self._branch_features(self.inf, self._prep(mri), "mri")
        _, _, body_v = self._branch_features(self.vis, self._prep(other), "functional")
        return body_i, body_v

    #: See :func:`edge_padding` (here so callers need not import this module).
    edge_padding = staticmethod(edge_padding)
    #: See :func:`body_paths`.
    body_paths = staticmethod(body_paths)

    def for_crops(self) -> FoldedGeSeNet:
        """This form (same folded weights, shared) with one fixed sequence of
        convolutions: the split body always, no host checks of the masks, no sparse
        windows (they zero-pad at their own edges). What :func:`edge_padding` needs;
        it computes the same function."""
        if self._crops is None:
            crops = copy.copy(self)
            crops.sparse, crops.mask_shortcuts, crops.body_mode = "never", False, "split"
            crops.last_body_paths = {}
            crops._crops = crops
            self._crops = crops
        return self._crops

    def masked_body(self, branch: Branch, features: Tensor, spa: Tensor) -> Tensor:
        """Same as :meth:`GeSeNet.masked_body`: one branch's region-mask body on given
        features and spatial mask, by whichever body path the options choose (recorded
        in :attr:`last_body_paths`). For tests and the benchmark's sparse sweep."""
        b = {"mri": self.inf, "functional": self.vis}.get(branch)
        if b is None:
            raise ValueError(f"branch must be 'mri' or 'functional', got {branch!r}")
        return self._body(b, self._prep(features), self._prep(spa), branch)

    def sparse_boxes(self, spa: Tensor) -> tuple[list[tuple[int, int, int, int, int]], float]:
        """The boxes the sparse body would use for spatial mask ``spa`` and the share of
        the image its windows cover, given 4 masked layers (see ``sparse_max_cost``)."""
        return self._sparse_boxes(self._prep(spa), halo=2 * len(self.inf.layers))

    def sparse_cost(self, branch: Branch, spa: Tensor) -> float:
        """The modelled cost of the sparse body against the dense one for ``spa`` (what
        ``sparse="auto"`` compares with ``sparse_max_cost``)."""
        b = self.inf if branch == "mri" else self.vis
        _, area = self._sparse_boxes(self._prep(spa), halo=2 * len(b.layers))
        return _sparse_cost(b, area)

    __call__ = fuse


# -- per-model cache ----------------------------------------------------------------------
def _state_tensors(model: nn.Module) -> Iterator[Tensor]:
    yield from model.parameters()
    yield from model.buffers()


def _signature(model: nn.Module) -> tuple:
    """Identity and in-place version of every parameter and buffer: any replacement
    (``load_state_dict`` with assign, ``.to()``, a new Parameter) changes an identity, any
    in-place change (optimizer step, ``copy_``) bumps a version counter. Tensors created in
    inference mode carry no version counter; their values stand in (a cheap sum)."""
    sig = []
    for t in _state_tensors(model):
        try:
            version: object = t._version
        except RuntimeError:
            version = float(t.detach().double().sum())
        sig.append((id(t), version))
    return tuple(sig)


_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, list[Tensor], dict]] = (
    weakref.WeakKeyDictionary()
)


def weights_memo(model: nn.Module) -> dict[Any, Any]:
    """A per-model memo that is emptied whenever the model's weights change.

    Why one memo for everything derived from the weights (folded forms, the engine's
    reduced-precision verdict): they all go stale together, and one signature check
    covers them all.
    """
    sig = _signature(model)
    entry = _CACHE.get(model)
    if entry is None or entry[0] != sig:
        # Holding the tensors keeps their ids from being reused by new tensors.
        entry = (sig, list(_state_tensors(model)), {})
        _CACHE[model] = entry
    return entry[2]


def fold(model: GeSeNet, **options: Any) -> FoldedGeSeNet:
    """The cached :class:`FoldedGeSeNet` for ``model`` (built, or rebuilt after any
    change of the weights). ``options`` are :class:`FoldedGeSeNet` keyword arguments;
    each distinct set is cached separately. :meth:`GeSeNet.fold` calls this."""
    unknown = sorted(set(options) - set(FOLD_OPTIONS))
    if unknown:
        raise TypeError(f"unknown fold options {unknown}; expected some of {list(FOLD_OPTIONS)}")
    memo = weights_memo(model)
    key = ("folded",) + tuple(sorted(options.items(), key=lambda kv: kv[0]))
    folded = memo.get(key)
    if folded is None:
        folded = FoldedGeSeNet(model, **options)
        memo[key] = folded
    return folded


def clear_cache() -> None:
    """Drop every cached folded form (benchmarks use it to time a cold build)."""
    _CACHE.clear()
