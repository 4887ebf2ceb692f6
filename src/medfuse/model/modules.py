"""Building blocks of GeSeNet: edge enhancement, region masks, global refinement.

Attribute names follow the authors' checkpoint state-dict keys exactly, so that a state
dict trained here and the reference checkpoint load through the same strict loader.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvAct(nn.Module):
    """A convolution held under ``.conv`` (the checkpoint's key layout) and an optional
    leaky ReLU. ``slope=None`` means no activation."""

    def __init__(self, cin: int, cout: int, k: int = 3, slope: float | None = 0.2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if self.slope is None else F.leaky_relu(y, self.slope)


class SobelConv(nn.Module):
    """Depthwise gradient magnitude |gx| + |gy|; kernels start as Sobel and stay trainable
    (the reference checkpoint's kernels drifted from Sobel, so they must be parameters)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convx = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.convy = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        with torch.no_grad():
            self.convx.weight.copy_(kx.expand(channels, 1, 3, 3))
            self.convy.weight.copy_(kx.t().expand(channels, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convx(x).abs() + self.convy(x).abs()


class DenseBlock(nn.Module):
    """Two densely connected 3x3 convolutions: output is concat[x, c1, c2]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvAct(channels, channels)
        self.conv2 = ConvAct(2 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        xc1 = torch.cat([x, c1], 1)
        return torch.cat([xc1, self.conv2(xc1)], 1)


class EdgeEnhancement(nn.Module):
    """EEM: a dense path plus a learnable-Sobel gradient path, summed (paper Fig. 3)."""

    def __init__(self, cin: int = 16, cout: int = 32) -> None:
        super().__init__()
        self.dense = DenseBlock(cin)
        self.convdown = ConvAct(3 * cin, cout, k=1, slope=None)
        self.sobelconv = SobelConv(cin)
        self.convup = ConvAct(cin, cout, k=1, slope=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.convdown(self.dense(x)) + self.convup(self.sobelconv(x)), 0.1)


def hard_mask(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """The inference decision on two-class logits along ``dim``: 1 where class 1
    (principal / sparse) strictly beats class 0, so ties go to class 0; class 1's channel.
    One rule for the spatial and channel masks, the straight-through masks and the
    compute-cost term, and for the folded inference form, so they cannot drift apart."""
    if logits.dim() == 0 or logits.shape[dim] != 2:
        raise ValueError(
            f"hard_mask needs two-class logits along dim {dim}, got shape {tuple(logits.shape)}"
        )
    return (logits.narrow(dim, 1, 1) > logits.narrow(dim, 0, 1)).to(logits.dtype)


def straight_through_mask(logits: torch.Tensor, tau: float, dim: int) -> torch.Tensor:
    """The inference mask (argmax, ties to the first class) in the forward pass, with the
    gradient of softmax(logits / tau) in the backward pass; returns class 1's channel.

    No Gumbel noise on purpose: with noisy samples a mask budget is met by the noise
    itself (every logit a little below zero gives ~35 % principal pixels in training and
    0 % at inference, measured); without it training sees exactly the masks inference uses.
    """
    soft = torch.softmax(logits / tau, dim=dim).narrow(dim, 1, 1)
    return (soft - soft.detach()) + hard_mask(logits, dim)  # exactly 0 + hard in the forward pass


def channel_mask_pair(
    logits: torch.Tensor, hard: bool, tau: float, straight_through: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn per-channel logits of shape (C, 2) into (dense, sparse) weights of shape
    (1, C, 1, 1). Hard masks are the rounded softmax, i.e. argmax with ties going dense,
    and draw no random numbers; training masks are Gumbel-softmax samples, or with
    ``straight_through`` the hard masks themselves with softmax gradients."""
    if hard:
        sparse = hard_mask(logits, dim=-1)[:, 0]
    elif straight_through:
        sparse = straight_through_mask(logits, tau, dim=-1)[:, 0]
    else:
        sparse = F.gumbel_softmax(logits, tau=tau, dim=-1)[:, 1]
    sparse = sparse.view(1, -1, 1, 1)
    return 1.0 - sparse, sparse


class MaskedConvBody(nn.Module):
    """Region mask convolution: four 3x3 layers whose channels are either dense (computed
    everywhere) or sparse (computed only on the principal spatial region).

    This is the dense formulation of the paper's sparse convolution. With hard masks it
    gives exactly the sparse result, so one implementation serves training and testing.
    """

    def __init__(self, channels: int = 32, layers: int = 4) -> None:
        super().__init__()
        self.ch_mask = nn.Parameter(torch.rand(1, channels, layers, 2))
        self.body = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(layers)
        )
        self.collect = nn.Conv2d(channels * layers, channels, 1)
        #: Training only: the inference masks with straight-through gradients.
        self.straight_through = False

    def channel_masks(self, hard: bool, tau: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (dense, sparse) channel weights."""
        return [
            channel_mask_pair(self.ch_mask[0, :, i, :], hard, tau, self.straight_through)
            for i in range(len(self.body))
        ]

    def forward(self, x: torch.Tensor, spa: torch.Tensor, hard: bool, tau: float) -> torch.Tensor:
        masks = self.channel_masks(hard, tau)
        outs = []
        f = x
        for i, conv in enumerate(self.body):
            ch0, ch1 = masks[i]
            if i == 0:
                g = conv(f)
                f = g * ch1 * spa + g * ch0
            else:
                p0, p1 = masks[i - 1]
                fd = conv(f * p0)
                fs = conv(f * p1)
                f = fd * ch1 * spa + fd * ch0 + fs * ch1 * spa + fs * ch0 * spa
            f = F.relu(f)
            outs.append(f)
        return self.collect(torch.cat(outs, 1))


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation style channel attention (reduction 16)."""

    def __init__(self, channels: int = 32, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """``pooled`` replaces the global average of ``x`` when the caller computed it over
        a larger image than ``x`` (exact tiled inference)."""
        if pooled is None:
            pooled = F.adaptive_avg_pool2d(x, 1)
        return x * self.conv_du(pooled)


class RegionMask(nn.Module):
    """RMM: predicts a principal/redundant spatial mask and runs the masked body on it."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.spa_mask = nn.Sequential(
            nn.Conv2d(channels, channels // 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2),
            nn.Conv2d(channels // 4, channels // 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels // 4, 2, 3, stride=2, padding=1, output_padding=1),
        )
        self.body = MaskedConvBody(channels)
        self.ca = ChannelAttention(channels)
        self.straight_through = False
        self.last_margin: torch.Tensor | None = None

    def spatial_mask(self, x: torch.Tensor, hard: bool, tau: float) -> torch.Tensor:
        """Principal-region mask (N, 1, H, W); 1 = principal. H and W must be even."""
        logits = self.spa_mask(x)
        #: Training only: the principal-minus-redundant logit margin of the last forward
        #: pass, for mask regularisers that must not saturate with the mask.
        self.last_margin = None if hard else logits[:, 1:2] - logits[:, 0:1]
        if hard:
            return hard_mask(logits, dim=1)
        if self.straight_through:
            return straight_through_mask(logits, tau, dim=1)
        return F.gumbel_softmax(logits, tau=tau, dim=1)[:, 1:2]

    def forward(
        self, x: torch.Tensor, hard: bool, tau: float, pooled: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (output, spatial mask, body output before channel attention)."""
        spa = self.spatial_mask(x, hard, tau)
        body = self.body(x, spa, hard, tau)
        return self.ca(body, pooled) + x, spa, body


class GlobalRefinement(nn.Module):
    """GRM: spatial feature transform of the fused features conditioned on MRI edges."""

    def __init__(self, cond: int = 32, feat: int = 64) -> None:
        super().__init__()
        self.SFT_scale_conv0 = nn.Conv2d(cond, cond, 3, padding=1)
        self.SFT_scale_conv1 = nn.Conv2d(cond, feat, 3, padding=1)
        self.SFT_shift_conv0 = nn.Conv2d(cond, cond, 1)
        self.SFT_shift_conv1 = nn.Conv2d(cond, feat, 1)
        self.SFT2 = nn.Conv2d(2 * feat, feat, 3, padding=1)

    def forward(self, fused: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale = self.SFT_scale_conv1(F.leaky_relu(self.SFT_scale_conv0(cond), 0.1))
        shift = self.SFT_shift_conv1(F.leaky_relu(self.SFT_shift_conv0(cond), 0.1))
        m = F.leaky_relu(self.SFT2(torch.cat([fused, scale], 1)), 0.01)
        return m + shift
