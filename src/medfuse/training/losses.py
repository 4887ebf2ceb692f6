"""GeSeNet's training losses (paper section III-E) and medfuse's region-mask sparsity term.

L_total = L_c + gamma L_g + alpha L_SSIM + beta (L_main + delta L_aux) + lambda L_mask,
with gamma = 10, alpha = 0.5, beta = 0.3, delta = 0.5 (paper values). Every term can be
switched off (weight 0) for ablations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


@dataclass
class LossWeights:
    """Weights of the loss terms; 0 disables a term."""

    content: float = 1.0
    gradient: float = 10.0  # gamma
    ssim: float = 0.5  # alpha
    semantic: float = 0.3  # beta
    semantic_aux: float = 0.5  # delta
    mask: float = 0.1  # lambda: region-mask budget (medfuse's addition, see docs/training.md)
    mask_target: float = 0.5  # rho: principal fraction the spatial masks are held to
    compute_target: float | None = None  # kappa: share of body work kept (None: no term)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|Gx| + |Gy| with the fixed Sobel kernels, replicate-padded so borders get no false
    edge. The L1 form matches the gradient measure commonly used in fusion losses."""
    k = _SOBEL_X.to(x)
    w = torch.stack([k, k.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w)
    return g.abs().sum(1, keepdim=True)


def content_loss(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L_c = mean |F - max(A, B)|: keep the brighter (more informative) source pixel."""
    return (f - torch.maximum(a, b)).abs().mean()


def gradient_loss(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L_g = mean | |grad F| - max(|grad A|, |grad B|) |: keep the stronger edge."""
    return (sobel_magnitude(f) - torch.maximum(sobel_magnitude(a), sobel_magnitude(b))).abs().mean()


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean Wang-2004 SSIM of images in [0, 1] (Gaussian window, valid region, K1 = 0.01,
    K2 = 0.03). Windows shrink to the image for patches smaller than ``window``."""
    size = min(window, x.shape[-1], x.shape[-2])
    w = _gaussian_window(size, sigma).to(x)[None, None]
    c1, c2 = 0.01**2, 0.03**2
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mx * mx
    syy = F.conv2d(y * y, w) - my * my
    sxy = F.conv2d(x * y, w) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return (num / den).mean()


def ssim_loss(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L_SSIM = (1 - SSIM(F, A)) + (1 - SSIM(F, B))."""
    return (1 - ssim(f, a)) + (1 - ssim(f, b))


def semantic_loss(
    seg_net: torch.nn.Module, f: torch.Tensor, labels: torch.Tensor, aux_weight: float = 0.5
) -> torch.Tensor:
    """L_S = CE(main(F), labels) + delta CE(aux(F), labels) with a frozen segmentation net."""
    main, aux = seg_net(f)
    return F.cross_entropy(main, labels) + aux_weight * F.cross_entropy(aux, labels)


def mask_budget(spa: torch.Tensor, target: float) -> torch.Tensor:
    """|mean(M_sp) - rho| over the batch: a budget for the principal region.

    A one-sided sparsity penalty (lambda * mean(M_sp)) collapsed both masks to ~0 % within
    200 steps, because background patches give the fusion losses no reason to keep
    principal pixels and the body's dense channels carry the content anyway. A budget
    makes each branch choose *where* its principal pixels go, which is what makes the
    masks follow anatomy.
    """
    return (spa.mean() - target).abs()


def mask_cost(spa: torch.Tensor, ch_mask_logits: torch.Tensor, tau: float, hard: bool) -> torch.Tensor:
    """Fraction of the region-mask body's output channel-pixels that must be computed:
    dense channels everywhere, sparse ones only on principal pixels (SMSR-style sparsity).

    ``ch_mask_logits`` is the body's (1, C, L, 2) parameter; ``spa`` the (N, 1, H, W) mask.
    """
    if hard:
        sparse = (ch_mask_logits[0, :, :, 1] > ch_mask_logits[0, :, :, 0]).float()
    else:
        sparse = torch.softmax(ch_mask_logits[0] / tau, dim=-1)[..., 1]
    frac = spa.mean()
    per_layer = (1 - sparse) + sparse * frac  # (C, L)
    return per_layer.mean()
