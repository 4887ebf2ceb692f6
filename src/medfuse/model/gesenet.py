"""GeSeNet (Li et al., IEEE TNNLS 2023): two-branch fusion network with couple mask ensemble.

``inf_`` is the MRI branch and ``vis_`` the CT/PET/SPECT luminance branch, as in the
authors' checkpoint, so that its state dict loads with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medfuse.model.modules import (
    ConvAct,
    EdgeEnhancement,
    GlobalRefinement,
    RegionMask,
)


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

    def __init__(self, tau: float = 0.5) -> None:
        super().__init__()
        self.tau = tau
        self.inf_conv = ConvAct(1, 16)
        self.vis_conv = ConvAct(1, 16)
        self.inf_eem = EdgeEnhancement(16, 32)
        self.vis_eem = EdgeEnhancement(16, 32)
        self.inf_rmm = RegionMask(32)
        self.vis_rmm = RegionMask(32)
        self.sft = GlobalRefinement(32, 64)
        self.decoder2 = ConvAct(96, 32)
        self.decoder1 = Decoder1(32)

    def fuse(
        self,
        mri: torch.Tensor,
        other: torch.Tensor,
        pooled: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> FusionOutput:
        """Run the network on (N, 1, H, W) tensors in [0, 1]; H and W must be even.

        ``pooled`` = (MRI, functional) channel-attention means computed over a whole image
        when this call sees only a tile of it.
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
        return FusionOutput(fused, mask_mri, mask_fun, body_inf, body_vis)

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
        for x, conv, eem, rmm in (
            (mri, self.inf_conv, self.inf_eem, self.inf_rmm),
            (other, self.vis_conv, self.vis_eem, self.vis_rmm),
        ):
            e = eem(conv(x))
            spa = rmm.spatial_mask(e, hard, self.tau)
            outs.append(rmm.body(e, spa, hard, self.tau))
        return outs[0], outs[1]

    def forward(self, mri: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.fuse(mri, other).fused

    def sparse_channel_counts(self) -> dict[str, list[int]]:
        """Per branch, per masked layer, how many of the 32 channels are sparse (hard)."""
        counts = {}
        for name, rmm in (("mri", self.inf_rmm), ("functional", self.vis_rmm)):
            logits = rmm.body.ch_mask[0]
            counts[name] = [
                int((logits[:, i, 1] > logits[:, i, 0]).sum()) for i in range(logits.shape[1])
            ]
        return counts
