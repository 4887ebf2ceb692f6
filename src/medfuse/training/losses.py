"""GeSeNet's training losses (paper section III-E) and medfuse's region-mask sparsity term.

L_total = L_c + gamma L_g + alpha L_SSIM + beta (L_main + delta L_aux) + lambda L_mask,
with gamma = 10, alpha = 0.5, beta = 0.3, delta = 0.5 (paper values). Every term can be
switched off (weight 0) for ablations.

medfuse adds optional terms (all off by default, so the paper's recipe is unchanged):
``mu L_MEF`` (1 - MEF-SSIM of F against {A, B}, the structural score published tables
report), ``nu L_Q`` (1 - Qabf, edge transfer with orientation) and ``lambda_s L_support`` (a region-mask prior: background redundant, a band for
the principal share of each image's anatomy), and for weights v2 ``sigma L_SCD`` (2 - SCD),
``iota L_int`` (one-sided brightness), ``kappa_sd L_sd`` (contrast), ``lambda_l L_lat`` (the
spatial mask's 2-pixel lattice) and ``lambda_c L_ch`` (a sparse-channel share).
Each term is declared once, with its default weight and what it logs, in
:mod:`medfuse.training.terms`; docs/training.md has the table.
With :func:`display_luminance` every term can score the luminance of the RGB a user gets
(after the chroma rule and the clip to [0, 1]) instead of the network's own luminance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medfuse.model.modules import hard_mask

_SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|Gx| + |Gy| with the fixed Sobel kernels, replicate-padded so borders get no false
    edge. The L1 form matches the gradient measure commonly used in fusion losses."""
    gx, gy = _sobel_xy(x)
    return gx.abs() + gy.abs()


def _sobel_xy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel Gx and Gy, replicate-padded (shared by the gradient and Qabf losses)."""
    k = _SOBEL_X.to(x)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), torch.stack([k, k.t()]).unsqueeze(1))
    return g[:, 0:1], g[:, 1:2]


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
        sparse = hard_mask(ch_mask_logits[0], dim=-1)[..., 0]
    else:
        sparse = torch.softmax(ch_mask_logits[0] / tau, dim=-1)[..., 1]
    frac = spa.mean()
    per_layer = (1 - sparse) + sparse * frac  # (C, L)
    return per_layer.mean()


_MEF_WIN = 11
_MEF_C = (0.03 * 255.0) ** 2


def mef_ssim_loss(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - MEF-SSIM (Ma, Zeng & Wang 2015) of F against {A, B}, differentiable in F.

    The same definition as :func:`medfuse.metrics.mef_ssim` (the toolbox2022 SSIM), on the
    0..255 scale it is defined on: per 11x11 patch a reference is built from the sources
    (the stronger contrast, a consistency-weighted mix of their structures) and F's patch
    is scored against it with SSIM's structure/contrast term. The reference depends on the
    sources only, so it is computed without gradients; F enters through its Gaussian
    moments. Why a term at all: the paper's L1-to-max content loss pulls F towards the
    brighter source, which MEF-SSIM penalises wherever the other source carries structure.
    """
    x = [a * 255.0, b * 255.0]
    fi = f * 255.0
    if fi.shape[-1] < _MEF_WIN or fi.shape[-2] < _MEF_WIN:
        return torch.zeros((), device=f.device)
    n = _MEF_WIN * _MEF_WIN
    box = torch.ones(1, 1, _MEF_WIN, _MEF_WIN, device=f.device, dtype=f.dtype)
    gw = _gaussian_window(_MEF_WIN, 1.5).to(f)[None, None]
    eps = 1e-12
    with torch.no_grad():
        sums = [F.conv2d(t, box) for t in x]
        cen = {}
        for i in range(2):
            for j in range(i, 2):
                cen[i, j] = F.conv2d(x[i] * x[j], box) - sums[i] * sums[j] / n
        cen[1, 0] = cen[0, 1]
        norms = [cen[i, i].clamp_min(0).sqrt() for i in range(2)]
        ed = [nrm + 0.001 for nrm in norms]
        num_r = (cen[0, 0] + cen[1, 1] + 2 * cen[0, 1]).clamp_min(0).sqrt()
        r = ((num_r + eps) / (norms[0] + norms[1] + eps)).clamp(1e-6, 1 - 1e-6)
        p = torch.tan(torch.pi / 2 * r).clamp(max=10.0)
        wts = [(e / _MEF_WIN) ** p + eps for e in ed]
        wsum = wts[0] + wts[1]
        coef = [wts[i] / wsum / ed[i] for i in range(2)]
        rnorm2 = sum(coef[i] * coef[j] * cen[i, j] for i in range(2) for j in range(2))
        rnorm = rnorm2.clamp_min(0).sqrt()
        max_ed = torch.maximum(ed[0], ed[1])
        scale = torch.where(rnorm > 0, max_ed / rnorm.clamp_min(1e-12), torch.ones_like(rnorm))
        gx = [F.conv2d(t, gw) for t in x]
        cov = {}
        for i in range(2):
            for j in range(i, 2):
                cov[i, j] = F.conv2d(x[i] * x[j], gw) - gx[i] * gx[j]
        cov[1, 0] = cov[0, 1]
        var_r = scale**2 * sum(coef[i] * coef[j] * cov[i, j] for i in range(2) for j in range(2))
    gf = F.conv2d(fi, gw)
    cov_rf = scale * sum(coef[i] * (F.conv2d(x[i] * fi, gw) - gx[i] * gf) for i in range(2))
    var_f = F.conv2d(fi * fi, gw) - gf * gf
    q = (2 * cov_rf + _MEF_C) / (var_r + var_f + _MEF_C)
    return 1 - q.mean()


def _corr(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Pearson correlation per image over its pixels, (B, 1, H, W) -> (B,)."""
    xc = x - x.mean(dim=(1, 2, 3), keepdim=True)
    yc = y - y.mean(dim=(1, 2, 3), keepdim=True)
    cov = (xc * yc).mean(dim=(1, 2, 3))
    return cov / torch.sqrt((xc * xc).mean(dim=(1, 2, 3)) * (yc * yc).mean(dim=(1, 2, 3)) + eps)


def scd_loss(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, min_std: float = 0.02) -> torch.Tensor:
    """2 - SCD, SCD = corr(F - B, A) + corr(F - A, B) (Aslantas & Bendes 2015, the metric's
    definition per image), averaged over the images whose sources both vary (std above
    ``min_std`` on [0, 1]; an empty background patch has no correlation to score).

    Why: F - B is what F took from A. The content loss pulls F towards max(A, B), which
    copies one source where it is brighter; SCD asks that each source's *contrast* be in F
    as well, which is what the reference checkpoint has more of (SCD 1.46 / 1.28 / 1.45
    against 1.32 / 1.27 / 1.15 for the first bundled weights, standard profile, val).
    """
    ok = ((a.std(dim=(1, 2, 3)) > min_std) & (b.std(dim=(1, 2, 3)) > min_std)).to(f.dtype)
    scd = _corr(f - b, a) + _corr(f - a, b)
    return ((2.0 - scd) * ok).sum() / ok.sum().clamp_min(1.0)


def intensity_loss(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    """mean(max(A, B)^power * relu(max(A, B) - F)) / mean(max(A, B)^power): how far F falls
    below the brighter source, weighted towards bright pixels.

    One-sided on purpose: the paper's L1 content loss pulls F to max(A, B) from both sides
    and, against the structural terms, settles below it in the brightest structures: CT
    bone came out grey and bright PET/SPECT uptake got a luminance below the source's own,
    which the chroma rule then shows as olive instead of yellow. Weighted by brightness so
    that bone and hot spots dominate; darker MRI detail is left to the structural terms.
    """
    m = torch.maximum(a, b)
    w = m**power
    return (w * F.relu(m - f)).mean() / w.mean().clamp_min(1e-6)


def contrast_loss(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mean over images of relu(std(max(A, B)) - std(F)) / std(max(A, B)): F's contrast
    (the SD metric) held up to that of the brighter source's image, one-sided."""
    target = torch.maximum(a, b).std(dim=(1, 2, 3))
    return (F.relu(target - f.std(dim=(1, 2, 3))) / target.clamp_min(1e-3)).mean()


def local_contrast(x: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """x minus its Gaussian surround (``sigma`` pixels, separable, borders reflected): how
    far each pixel stands above or below its neighbourhood."""
    size = 2 * int(3 * sigma) + 1
    g = _gaussian_window(size, sigma)[size // 2].to(x)
    pad = size // 2
    s = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    s = F.conv2d(F.pad(s, (0, 0, pad, pad), mode="reflect"), g.view(1, 1, -1, 1))
    return x - s / g.sum() ** 2


def peak_loss(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, sigma: float = 4.0,
              where: torch.Tensor | None = None) -> torch.Tensor:
    """sum(w * relu(c_B - c_F)) / sum(w) with c = :func:`local_contrast` and w = relu(c_B):
    where the second image B has a local peak (a hot lesion standing above the tissue
    around it, a haematoma or bone on CT), F must rise above its own surround at least as
    much. One-sided and weighted by the peak's height.

    Why: the brightness and SD terms lift F wherever B is bright, the grey-matter shell
    around a lesion included, so the lesion's step over its shell shrinks; on a realistic
    PET study the fused lesion kept 0.90 of the colour contrast it has in the PET alone.
    ``a`` is unused; it keeps the loss signature of the other terms. ``where`` (0/1, the
    shape of ``b``) limits the term to some pixels, e.g. those the chroma rule colours
    (uptake, not CT bone: :func:`coloured`).
    """
    cb = local_contrast(b, sigma)
    w = F.relu(cb) if where is None else F.relu(cb) * where
    return (w * F.relu(cb - local_contrast(f, sigma))).sum() / w.sum().clamp_min(1e-6)


def coloured(chroma: torch.Tensor, level: float = 1 / 255) -> torch.Tensor:
    """(B, 1, H, W) 0/1: where the chroma (B, 2, H, W) given to the display luminance is
    not neutral, i.e. where the written image shows the other image's colour (PET and
    SPECT uptake; never grey CT)."""
    from medfuse.colour import TAU

    return ((chroma - TAU).abs().amax(dim=1, keepdim=True) > level).to(chroma.dtype)


def phase_deviation(x: torch.Tensor) -> torch.Tensor:
    """x minus its mean over each aligned 2x2 block (H and W even): the part of a map that
    changes within the blocks the stride-2 transposed convolution writes, i.e. the 2-pixel
    lattice its four phases give when they learn different biases. A map constant on those
    blocks has no energy at the period-2 frequencies at all."""
    return x - F.interpolate(F.avg_pool2d(x, 2), scale_factor=2.0, mode="nearest")


def lattice_loss(margin: torch.Tensor) -> torch.Tensor:
    """mean |d - blockmean_2x2(d)| of the spatial mask's logit margin d (see
    :func:`phase_deviation`): zero for a mask that is smooth at the scale of its own
    generator (AvgPool 2 then a stride-2 transposed convolution), positive for the lattice
    of the authors' checkpoint and the first bundled weights. On the logits, so it acts
    before the hard decision flips within a block."""
    return phase_deviation(margin).abs().mean()


def upsampler_phase_loss(weight: torch.Tensor) -> torch.Tensor:
    """Phase imbalance of the spatial-mask generator's last layer, the cause of the lattice.

    ``weight`` is the ConvTranspose2d(C -> 2, kernel 3, stride 2, padding 1, output
    padding 1) weight, shape (C, 2, 3, 3). Each output pixel's phase (row, column parity)
    sees a different subset of taps: tap 1 for an even coordinate, taps 0 and 2 for an
    odd one, so on a locally constant input the four phases answer with the sums
    w11, w10 + w12, w01 + w21 and w00 + w02 + w20 + w22. Where those differ, the logit
    margin (channel 1 minus channel 0) has a period-2 component everywhere: the lattice
    of the authors' checkpoint and the first bundled weights. The loss is the variance of
    the four margin sums over the phases, averaged over input channels.

    On the weights rather than on the logits: a loss on the logits' 2x2-block deviation
    (:func:`lattice_loss`) is also met by silencing the generator (a constant margin has
    none), and from scratch it did: the MRI generator's ReLUs all died within 400 steps
    and its mask sat at margin 0, flipping between all and nothing (measured).
    """
    w = weight[:, 1] - weight[:, 0]  # (C, 3, 3): the margin's taps
    phases = torch.stack([
        w[:, 1, 1],
        w[:, 1, 0] + w[:, 1, 2],
        w[:, 0, 1] + w[:, 2, 1],
        w[:, 0, 0] + w[:, 0, 2] + w[:, 2, 0] + w[:, 2, 2],
    ])  # (4, C)
    return phases.var(dim=0, unbiased=False).mean()


def lattice_index(mask: torch.Tensor) -> float:
    """Share of a mask's non-DC energy at the period-2 frequencies ((pi, 0), (0, pi),
    (pi, pi)), over a batch (N, 1, H, W). 0 for a mask constant on 2x2 blocks, 1 for a
    pure 2-pixel lattice; a smooth anatomical mask (a thresholded blurred disc) scores
    ~1e-3. The number docs/lab/training-v2.md reports for "no lattice"."""
    m = mask.detach().double()
    m = m - m.mean(dim=(-2, -1), keepdim=True)
    spec = torch.fft.fft2(m).abs() ** 2
    h, w = m.shape[-2:]
    nyq = spec[..., h // 2, 0] + spec[..., 0, w // 2] + spec[..., h // 2, w // 2]
    total = spec.sum(dim=(-2, -1))
    return float(nyq.sum() / total.sum().clamp_min(1e-12))


def channel_sparsity_loss(ch_logits: torch.Tensor, target: float, margin: float = 1.0) -> torch.Tensor:
    """Keep at least ``target`` of each masked layer's channels sparse, on the logits.

    ``ch_logits`` is a body's (1, C, L, 2) parameter; d = l_sparse - l_dense per channel
    and layer (the inference rule makes a channel sparse where d > 0). Per layer the
    k = ceil(target C) channels the network already ranks most sparse are pushed to
    d >= ``margin`` by mean(relu(margin - d)); the others are left to the fusion losses.
    Why not the compute budget: its soft cost (softmax of the logits) was met by every
    channel sitting a little on the dense side, so the first bundled weights had 0 of 32
    sparse channels in every layer and the spatial mask changed nothing.
    """
    d = ch_logits[0, :, :, 1] - ch_logits[0, :, :, 0]  # (C, L)
    k = max(1, math.ceil(target * d.shape[0] - 1e-9))
    top = torch.topk(d, k, dim=0).values  # (k, L)
    return F.relu(margin - top).mean()


def signal_support(a: torch.Tensor, b: torch.Tensor, level: float = 8 / 255, grow: int = 7) -> torch.Tensor:
    """1 where either source has signal (grown by ``grow`` pixels' max filter), else 0.

    The Harvard slices (and most medical images) are anatomy on an empty background; the
    support is that anatomy plus a margin so edges at its border stay principal.
    """
    fg = (torch.maximum(a, b) > level).to(a.dtype)
    return F.max_pool2d(fg, grow, stride=1, padding=grow // 2)


def support_mask_prior(
    margin: torch.Tensor,
    support: torch.Tensor,
    band: tuple[float, float] = (0.3, 0.9),
) -> torch.Tensor:
    """Region-mask prior from the signal support S of the pair (see :func:`signal_support`).

    ``margin`` is the spatial mask's logit margin d = l_principal - l_redundant (the hard
    mask is d > 0). Two parts, averaged:

    - background: mean((1 - S) relu(d + 1)): where neither source has signal the mask
      must be redundant with a margin. A hinge on the logits, not a penalty on the mask,
      because a binary mask's surrogate gradient vanishes exactly where the logits are
      confidently wrong (the background grid of the earlier weights never moved).
    - band: per image, the hard principal share of the support f = sum(M S) / sum(S)
      is steered into ``band`` = (lo, hi): below lo the whole support is lifted,
      (lo - f) / lo * mean(S relu(1 - d)); above hi it is lowered,
      (f - hi) / (1 - hi) * mean(S relu(d + 1)). Inside the band the term is zero and
      the fusion losses alone decide *which* anatomy is principal.

    Hinges on the logits rather than penalties on the mask, because a binary mask's
    surrogate gradient vanishes exactly where the logits are confidently wrong (a sigmoid
    surrogate for the band lost to the background hinge: both masks empty after 100
    steps). The lift is proportional to the shortfall: at full strength whenever f < lo
    it was a bang-bang controller, and under strong fusion losses the functional mask
    flipped between 0 % and ~60 % from step to step (0 % at two validations in a row).
    It lifts the whole support, not the top-k pixels: top-k follows the network's own
    ranking, which carries the transposed convolution's row/column parity, and gave
    striped masks (measured). Per image rather than per batch, so a budget cannot be met
    by giving some images all principal pixels and others none (the SPECT pairs got none
    under the batch budget).
    """
    bg = ((1 - support) * F.relu(margin + 1.0)).mean()
    area = support.sum(dim=(1, 2, 3))
    hard = (margin > 0).to(margin.dtype)
    frac = (hard * support).sum(dim=(1, 2, 3)) / area.clamp_min(1.0)
    lo, hi = band
    has = (area > 0).to(margin.dtype)
    w_lo = has * F.relu(lo - frac) / max(lo, 1e-6)
    w_hi = has * F.relu(frac - hi) / max(1 - hi, 1e-6)
    lift = (support * F.relu(1.0 - margin)).mean(dim=(1, 2, 3))
    lower = (support * F.relu(margin + 1.0)).mean(dim=(1, 2, 3))
    return bg + (w_lo * lift + w_hi * lower).mean()


def background_mask_penalty(spa: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Share of the image that is principal *and* empty background: mean(M_sp (1 - S)).

    Logged (``mask_bg``) rather than optimised: as a loss on the binary mask its surrogate
    gradient vanished where the background was confidently principal, so the grid of the
    first bundled weights never moved; :func:`support_mask_prior` acts on the logits
    instead. The log says whether that worked.
    """
    return (spa * (1 - support)).mean()


def display_luminance(f: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Y of the RGB that inference writes for fused luminance ``f`` (B, 1, H, W) and the
    chroma (B, 2, H, W: Cb, Cr) the tau rule gives it, clipped to [0, 1] per channel as
    :func:`medfuse.colour.ycbcr_to_rgb` does.

    Why: with a strongly coloured PET/SPECT source, bright fused luminance pushes R, G or
    B past 1; the clip then darkens those pixels and flattens their edges, so the image a
    user sees (and ``medfuse eval`` scores) has less structure than the network made.
    Scoring this in the losses lets the network keep its detail inside the colour gamut.
    With neutral chroma (grey pairs) it is ``f`` itself.
    """
    from medfuse.colour import luma, ycbcr_planes

    r, g, b = ycbcr_planes(f, chroma[:, 0:1], chroma[:, 1:2])
    return luma(r.clamp(0.0, 1.0), g.clamp(0.0, 1.0), b.clamp(0.0, 1.0))


def anatomy_loss(f: torch.Tensor, a: torch.Tensor, weight: torch.Tensor,
                 eps: float = 1e-8) -> torch.Tensor:
    """sum_i w_i (1 - r_i) / sum_i w_i, r_i the Pearson correlation of the Sobel magnitudes
    of F and of the MRI ``a`` over patch i, ``weight`` (B,) the pairs it applies to.

    Why: on a realistic study the MRI is the anatomy and the PET is smooth, so every edge
    of the fused luminance should be an MRI edge at its relative strength (the study
    benchmark's anatomy r). On atlas pairs the PET's own edges are meant to be kept
    (Qabf), so the term is given the generated-study pairs only. A patch with no edges
    (air) has no correlation to lose and scores 0."""
    x = sobel_magnitude(f).flatten(1)
    y = sobel_magnitude(a).flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    vy = (y * y).sum(dim=1)
    r = (x * y).sum(dim=1) / torch.sqrt((x * x).sum(dim=1) * vy + eps)
    w = weight.to(f.dtype) * (vy > 1e-6).to(f.dtype)
    return (w * (1.0 - r)).sum() / w.sum().clamp_min(1.0)


def anchor_loss(f: torch.Tensor, f_ref: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """sum_i w_i mean|F_i - R_i| / sum_i w_i: how far fused luminance ``f`` has moved from
    ``f_ref``, the same pairs fused by a previous medfuse model (no gradient), over the
    pairs ``weight`` (B,) selects (all pairs when None).

    Why: the study terms (gamut, anatomy) are meant to change what the network does on
    realistic studies, but they also move its output on the atlas pairs, where that shows
    as lost contrast (SD, SCD). Holding the atlas output to a model whose atlas scores are
    known lets the study terms act where they are meant to."""
    per_pair = (f - f_ref).abs().flatten(1).mean(dim=1)
    if weight is None:
        return per_pair.mean()
    w = weight.to(f.dtype)
    return (w * per_pair).sum() / w.sum().clamp_min(1.0)


def gamut_loss(f: torch.Tensor, chroma: torch.Tensor,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the coloured pixels (:func:`coloured`) of how far the unclipped R, G, B of
    fused luminance ``f`` (B, 1, H, W, the network's own, before any clip) with ``chroma``
    (B, 2, H, W: Cb, Cr) fall outside [0, 1], summed over the three channels.

    Why: the written RGB is clipped per channel, and a clip takes colour away. On a
    realistic PET study the hot lesion's red core sits on bright white matter; at that
    luminance red is out of gamut, the clip turns it pink, and the lesion keeps only 0.84
    (MRI luminance) to 0.90 (the fused luminance) of the colour contrast it has in the PET
    alone, mostly in CIELAB a*. Raising the core does not help (the peaks term saturates);
    luminance that leaves room for the colour does. Zero wherever the colour fits, so grey
    pairs and pale colour are untouched. ``weight`` (B,) limits it to some pairs (the
    generated studies)."""
    from medfuse.colour import ycbcr_planes

    where = coloured(chroma)
    if weight is not None:
        where = where * weight.to(where.dtype).view(-1, 1, 1, 1)
    excess = sum(F.relu(p - 1.0) + F.relu(-p) for p in ycbcr_planes(f, chroma[:, 0:1], chroma[:, 1:2]))
    return (excess * where).sum() / where.sum().clamp_min(1.0)


def qabf_loss(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - Qabf (Xydeas & Petrovic 2000, the standard profile's definition), per image,
    averaged over the batch; differentiable in F.

    The same per-pixel edge preservation as :func:`medfuse.metrics.qabf`: Sobel strength
    g and orientation atan(gy / gx) of each source and of F, Q^XF = Q_g(strength ratio)
    Q_a(orientation agreement) with the metric's sigmoid constants, weighted by the
    source's strength. The paper's gradient loss matches |grad F| to the stronger
    source's magnitude only; Qabf also asks for the orientation of *each* source's edges
    and weights them by strength, which is what the SSIM terms otherwise erode.
    ``eps`` keeps the ratio and the angle finite on flat patches.
    """
    def strength_angle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gx, gy = _sobel_xy(x)
        g = torch.sqrt(gx * gx + gy * gy + eps * eps)
        safe = torch.where(gx.abs() < eps, torch.full_like(gx, eps), gx)
        return g, torch.atan(gy / safe)

    gf, af = strength_angle(f)
    num = torch.zeros(f.shape[0], device=f.device, dtype=f.dtype)
    den = torch.zeros_like(num)
    with torch.no_grad():
        src = [strength_angle(a), strength_angle(b)]
    for gs, as_ in src:
        ratio = torch.minimum(gs, gf) / torch.maximum(gs, gf)
        agree = 1.0 - (as_ - af).abs() / (torch.pi / 2)
        q = (0.9994 / (1 + torch.exp(-15.0 * (ratio - 0.5)))) * (0.9879 / (1 + torch.exp(-22.0 * (agree - 0.8))))
        num = num + (q * gs).sum(dim=(1, 2, 3))
        den = den + gs.sum(dim=(1, 2, 3))
    return (1 - num / den.clamp_min(eps)).mean()




#: Label codes of the generated studies' tissue maps (:mod:`medfuse.studies.generate`):
#: CSF, grey and white matter, and the first lesion (lesion i is ``LESION_CODE + i``).
CSF_CODE, GREY_CODE, WHITE_CODE, LESION_CODE = 3, 4, 5, 10


def _masked_mean(x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean of ``x`` over 0/1 mask ``m`` (both (B, 1, H, W)) and the pixel count."""
    n = m.flatten(1).sum(dim=1)
    return (x * m).flatten(1).sum(dim=1) / n.clamp_min(1.0), n


def _kept_shortfall(step_f: torch.Tensor, step_src: torch.Tensor, ok: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean relu(1 - kept), mean kept) over the images where ``ok``, kept = step_f /
    step_src (signed: negative is an inverted step); None when no image qualifies."""
    if not bool(ok.any()):
        return None
    kept = step_f[ok] / step_src[ok]
    return F.relu(1.0 - kept).mean(), kept.detach().mean()


def tissue_step_loss(f: torch.Tensor, a: torch.Tensor, tissue: torch.Tensor,
                     min_pixels: int = 16, min_step: float = 0.02
                     ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean relu(1 - k_i), mean k_i) over the patches i that hold grey and white matter,
    k_i = (mean_white F - mean_grey F) / (mean_white A - mean_grey A): the share of the
    MRI ``a``'s grey/white luminance step the fused luminance ``f`` keeps, with its sign
    (0 kept in full or more, 1 flat, 2 inverted). ``tissue`` (B, 1, H, W) holds the
    generated studies' label codes; patches with fewer than ``min_pixels`` of either
    tissue, or an MRI step under ``min_step``, are left out. None: no patch qualifies.

    Why: on a realistic PET study the fused luminance follows the MRI's edges (edge r
    0.93) yet keeps a fifth of its grey/white step: the colour map's luminance is high
    where uptake is high, which is grey matter, where T1 is dark, so the two cancel. A
    gradient correlation does not see a step that flattens or inverts; this is the study
    benchmark's 'grey/white step kept', measured per patch."""
    grey = (tissue == GREY_CODE).to(f.dtype)
    white = (tissue == WHITE_CODE).to(f.dtype)
    fg, ng = _masked_mean(f, grey)
    fw, nw = _masked_mean(f, white)
    ag, _ = _masked_mean(a, grey)
    aw, _ = _masked_mean(a, white)
    step_a = aw - ag
    ok = (ng >= min_pixels) & (nw >= min_pixels) & (step_a.abs() >= min_step)
    return _kept_shortfall(fw - fg, step_a, ok)


def lesion_rings(tissue: torch.Tensor, code: int, inner: int = 3, outer: int = 10,
                 erode: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(core, shell) 0/1 masks of lesion ``code`` in ``tissue`` (B, 1, H, W): the lesion
    eroded by ``erode`` pixels, and the brain (CSF, grey, white matter) ``inner`` to
    ``outer`` pixels outside it, the study benchmark's core and surround (there 0.75
    radius, and radius + 3 to + 10 mm; a training pixel is about 1 mm)."""
    les = (tissue == code).to(torch.float32)
    core = 1.0 - F.max_pool2d(1.0 - les, 2 * erode + 1, 1, erode)
    near = F.max_pool2d(les, 2 * outer + 1, 1, outer)
    close = F.max_pool2d(les, 2 * inner + 1, 1, inner)
    brain = ((tissue >= CSF_CODE) & (tissue <= WHITE_CODE)).to(torch.float32)
    return core * les, near * (1.0 - close) * brain


def lesion_loss(f: torch.Tensor, b: torch.Tensor, tissue: torch.Tensor, min_core: int = 8,
                min_shell: int = 16, min_contrast: float = 0.02
                ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean relu(1 - k), mean k) over every (patch, lesion) with a core and a shell
    (:func:`lesion_rings`), k = (core - shell mean of F) / (core - shell mean of B): how
    far a lesion of the functional luminance ``b`` stands from its surround in the fused
    luminance ``f``, as a share of how far it stands in ``b``, with its sign (a cold
    lesion must stay darker, a hot one brighter). One-sided: more conspicuous is free.
    Lesions whose step in ``b`` is under ``min_contrast`` are left out. None: no lesion
    in the batch.

    Why: the study benchmark's lesion ratio (a lesion's CIELAB distance to its surround,
    fused over functional) falls below 1 where the fused luminance pulls the lesion
    towards the MRI's tissue: a cold PET region takes white matter's brightness, a CT
    haematoma grey matter's. The chroma comes from the functional image either way, so
    the lightness step is the part the network decides."""
    codes = [int(c) for c in torch.unique(tissue) if int(c) >= LESION_CODE]
    steps_f, steps_b = [], []
    for code in codes:
        core, shell = lesion_rings(tissue, code)
        core, shell = core.to(f.dtype), shell.to(f.dtype)
        fc, nc = _masked_mean(f, core)
        fs, ns = _masked_mean(f, shell)
        bc, _ = _masked_mean(b, core)
        bs, _ = _masked_mean(b, shell)
        ok = (nc >= min_core) & (ns >= min_shell) & ((bc - bs).abs() >= min_contrast)
        steps_f.append((fc - fs)[ok])
        steps_b.append((bc - bs)[ok])
    if not codes:
        return None
    sf, sb = torch.cat(steps_f), torch.cat(steps_b)
    return _kept_shortfall(sf, sb, torch.ones_like(sf, dtype=torch.bool))


# The weights class is made from the term registry; imported here for the callers that
# have always found it beside the functions.
from medfuse.training.terms import LossWeights  # noqa: E402, F401
