"""GeSeNet (Li et al., IEEE TNNLS 2023): two-branch fusion network with couple mask ensemble.

``inf_`` is the MRI branch and ``vis_`` the CT/PET/SPECT luminance branch, as in the
authors' checkpoint, so that its state dict loads with ``strict=True``.

Code outside :mod:`medfuse.model` uses the methods below (``fuse``, ``body_features``,
``fold``, ``masked_body``, ``channel_mask_logits``, ``spatial_margin``,
``sparse_channel_counts``) and never the submodules, so the layout can follow the
checkpoint without leaking into the engine, the trainer or the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from medfuse.model.modules import (
    ConvAct,
    EdgeEnhancement,
    GlobalRefinement,
    RegionMask,
    hard_mask,
)

if TYPE_CHECKING:
    from medfuse.model.folded import FoldedGeSeNet

#: The two branches by the names the rest of medfuse uses (``inf_`` / ``vis_`` in the keys).
Branch = Literal["mri", "functional"]


@dataclass
class FusionOutput:
    """Fused luminance plus what the region mask modules decided.

    ``mask_*`` are the spatial masks (1 = principal); ``body_*`` are the region-mask body
    outputs whose global means feed channel attention (needed for exact tiling).
    """

    fused: torch.Tensor
    mask_mri: torch.Tensor
    mask_functional: torch.Tensor
    body_mri: torch.Tensor
    body_functional: torch.Tensor


class Decoder1(nn.Module):
    """Last 3x3 conv to one channel. ``bn`` exists only because the authors' checkpoint
    stores it; the forward pass never uses it."""

    def __init__(self, cin: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 1, 3, padding=1)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)) / 2 + 0.5


class GeSeNet(nn.Module):
    """Fuses an MRI image and the luminance of a second modality into one luminance.

    In training mode the region masks are Gumbel-softmax samples (random); in eval mode
    they are hard argmax masks and the forward pass draws no random numbers, so the same
    input always gives bit-identical output on the same device.
    """

    #: Pixels of context each output pixel depends on (conservative bound, used by tiling).
    RECEPTIVE_RADIUS = 24
    #: Height and width must be multiples of this: the spatial-mask branch pools 2x2.
    SIZE_MULTIPLE = 2
    #: Feature channels of the region-mask modules (the checkpoint's width).
    FEATURES = 32
    BRANCHES: tuple[Branch, Branch] = ("mri", "functional")

    def __init__(self, tau: float = 0.5) -> None:
        super().__init__()
        c = self.FEATURES
        self.tau = tau
        self.inf_conv = ConvAct(1, c // 2)
        self.vis_conv = ConvAct(1, c // 2)
        self.inf_eem = EdgeEnhancement(c // 2, c)
        self.vis_eem = EdgeEnhancement(c // 2, c)
        self.inf_rmm = RegionMask(c)
        self.vis_rmm = RegionMask(c)
        self.sft = GlobalRefinement(c, 2 * c)
        self.decoder2 = ConvAct(3 * c, c)
        self.decoder1 = Decoder1(c)

    def _region_mask(self, branch: Branch) -> RegionMask:
        if branch == "mri":
            return self.inf_rmm
        if branch == "functional":
            return self.vis_rmm
        raise ValueError(f"branch must be 'mri' or 'functional', got {branch!r}")

    def fuse(
        self,
        mri: torch.Tensor,
        other: torch.Tensor,
        pooled: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_bodies: bool = True,
    ) -> FusionOutput:
        """Run the network on (N, 1, H, W) tensors in [0, 1]; H and W must be even.

        ``pooled`` = (MRI, functional) channel-attention means computed over a whole image
        when this call sees only a tile of it. ``return_bodies=False`` returns empty
        tensors in place of the body outputs, the same contract as the folded form's
        (callers that never read them can use either form).
        """
        if mri.shape[-2] % 2 or mri.shape[-1] % 2:
            raise ValueError(f"GeSeNet needs even height and width, got {tuple(mri.shape[-2:])}")
        hard = not self.training
        p_inf, p_vis = pooled if pooled is not None else (None, None)
        inf_e = self.inf_eem(self.inf_conv(mri))
        vis_e = self.vis_eem(self.vis_conv(other))
        inf_r, mask_mri, body_inf = self.inf_rmm(inf_e, hard, self.tau, p_inf)
        vis_r, mask_fun, body_vis = self.vis_rmm(vis_e, hard, self.tau, p_vis)
        refined = self.sft(torch.cat([vis_r, inf_r], 1), inf_e)
        fused = self.decoder1(self.decoder2(torch.cat([refined, vis_e], 1)))
        if not return_bodies:
            body_inf = body_vis = fused.new_empty(0)
        return FusionOutput(fused, mask_mri, mask_fun, body_inf, body_vis)

    def fold(self, **options: Any) -> FoldedGeSeNet:
        """The inference form of the current weights: hard masks folded in, so that no
        convolution runs twice (:mod:`medfuse.model.folded`).

        Built from the weights as they are now and cached per network and options; the
        cache follows every change of the weights. It computes what eval mode computes
        whatever mode this network is in: a caller that trains must use :meth:`fuse`.
        ``options`` are :class:`~medfuse.model.folded.FoldedGeSeNet` keyword arguments.
        """
        from medfuse.model.folded import fold

        return fold(self, **options)

    def set_straight_through(self, enabled: bool) -> None:
        """Training with the inference masks in the forward pass (straight-through
        gradients, no Gumbel noise), so training makes the same hard decisions inference
        makes; eval mode is unaffected."""
        for rmm in (self.inf_rmm, self.vis_rmm):
            rmm.straight_through = enabled
            rmm.body.straight_through = enabled

    def body_features(
        self, mri: torch.Tensor, other: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Region-mask body outputs (MRI, functional) before channel attention: the first
        pass of exact tiled inference, which averages them over the whole image."""
        hard = not self.training
        outs = []
        for x, conv, eem, rmm in self._branch_parts(mri, other):
            e = eem(conv(x))
            spa = rmm.spatial_mask(e, hard, self.tau)
            outs.append(rmm.body(e, spa, hard, self.tau))
        return outs[0], outs[1]

    @torch.no_grad()
    def spatial_margins(self, mri: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The principal-minus-redundant spatial logit margins (MRI, functional), each
        (N, 1, H, W), of the inference masks (a mask pixel is principal where its margin is
        above 0). How far a margin is from 0 says whether a mask is decided by the image
        or by rounding: a mask generator whose ReLUs died over the anatomy outputs its
        bias difference there, exactly 0 when the biases are equal, and its mask is then
        floating-point noise (``benchmarks/mask_report.py``, the bundled-weights tests)."""
        out = []
        for x, conv, eem, rmm in self._branch_parts(mri, other):
            logits = rmm.spa_mask(eem(conv(x)))
            out.append(logits[:, 1:2] - logits[:, 0:1])
        return out[0], out[1]

    def _branch_parts(self, mri: torch.Tensor, other: torch.Tensor) -> tuple[tuple[Any, ...], ...]:
        """(input, first conv, edge enhancement, region mask) of the MRI and the other branch."""
        return ((mri, self.inf_conv, self.inf_eem, self.inf_rmm),
                (other, self.vis_conv, self.vis_eem, self.vis_rmm))

    def masked_body(self, branch: Branch, features: torch.Tensor, spa: torch.Tensor) -> torch.Tensor:
        """One branch's region-mask body with the inference (hard) channel masks, on given
        features (N, FEATURES, H, W) and spatial mask (N, 1, H, W): the reference the
        folded body is measured and tested against."""
        return self._region_mask(branch).body(features, spa, True, self.tau)

    def channel_mask_logits(self, branch: Branch) -> torch.Tensor:
        """One branch's channel-mask logits (1, FEATURES, layers, 2), the parameter itself
        (training puts a compute cost on it)."""
        return self._region_mask(branch).body.ch_mask

    def spatial_margin(self, branch: Branch) -> torch.Tensor | None:
        """Training only: the principal-minus-redundant spatial logit margin of one
        branch's last forward pass (None after an eval-mode pass), for mask priors that
        must not saturate with the mask."""
        return self._region_mask(branch).last_margin

    def forward(self, mri: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.fuse(mri, other).fused

    def sparse_channel_counts(self) -> dict[str, list[int]]:
        """Per branch, per masked layer, how many of the FEATURES channels are sparse
        under the inference decision (:func:`~medfuse.model.modules.hard_mask`)."""
        with torch.no_grad():
            return {
                name: [int(n) for n in hard_mask(self.channel_mask_logits(name)[0], dim=-1)[..., 0].sum(0)]
                for name in self.BRANCHES
            }
