"""The loss terms on hand-computed cases, against the metrics they follow, and with
gradients where training needs them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfuse.phantom import brain_phantom
from medfuse.training.losses import (
    anatomy_loss,
    anchor_loss,
    background_mask_penalty,
    channel_sparsity_loss,
    coloured,
    content_loss,
    contrast_loss,
    display_luminance,
    gamut_loss,
    gradient_loss,
    intensity_loss,
    lattice_index,
    lattice_loss,
    local_contrast,
    mask_budget,
    mef_ssim_loss,
    peak_loss,
    phase_deviation,
    qabf_loss,
    scd_loss,
    signal_support,
    sobel_magnitude,
    ssim,
    ssim_loss,
    support_mask_prior,
    upsampler_phase_loss,
)


def t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, np.float32))[None, None]


def test_content_loss_hand_computed() -> None:
    a = t(np.array([[0.2, 0.8]]))
    b = t(np.array([[0.5, 0.1]]))
    f = t(np.array([[0.5, 0.6]]))
    # max(A, B) = [0.5, 0.8]; |F - max| = [0, 0.2]; mean = 0.1
    assert float(content_loss(f, a, b)) == pytest.approx(0.1)


def test_sobel_of_ramp() -> None:
    ramp = t(np.tile(np.arange(8, dtype=np.float32), (8, 1)))
    g = sobel_magnitude(ramp)[0, 0]
    # Interior of a unit horizontal ramp: |Gx| = 1 + 2 + 1 = 4 (x2 for the +-1 neighbours).
    assert float(g[4, 4]) == pytest.approx(8.0)
    assert float(sobel_magnitude(torch.ones(1, 1, 8, 8)).abs().max()) == 0.0


def test_gradient_loss_zero_when_fused_copies_the_edgier_source() -> None:
    a = t(np.tile(np.linspace(0, 1, 16), (16, 1)))
    b = torch.full_like(a, 0.3)
    assert float(gradient_loss(a, a, b)) == pytest.approx(0.0, abs=1e-7)
    assert float(gradient_loss(b, a, b)) > 0


def test_ssim_identity_and_loss() -> None:
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim_loss(x, x, x)) == pytest.approx(0.0, abs=1e-5)
    assert float(ssim(x, 1 - x)) < 0


def test_mask_budget() -> None:
    spa = torch.zeros(2, 1, 4, 4)
    spa[0] = 1
    assert float(mask_budget(spa, 0.5)) == pytest.approx(0.0)
    assert float(mask_budget(torch.zeros(1, 1, 4, 4), 0.5)) == pytest.approx(0.5)


def test_mef_ssim_loss_matches_the_toolbox_metric_and_has_gradients() -> None:
    from medfuse.metrics import mef_ssim

    rng = np.random.default_rng(3)
    a = rng.random((40, 48))
    b = np.clip(0.5 * a + 0.5 * rng.random((40, 48)), 0, 1)
    a[:12] = 0.0
    b[:12] = 0.0
    f = np.clip((a + b) / 2 + 0.05 * rng.random((40, 48)), 0, 1)
    tt = lambda x: torch.from_numpy(x)[None, None]  # noqa: E731 - float64 for the comparison
    ft = tt(f).clone().requires_grad_(True)
    loss = mef_ssim_loss(ft, tt(a), tt(b))
    assert float(loss.detach()) == pytest.approx(1 - mef_ssim(a * 255, b * 255, f * 255), abs=1e-7)
    loss.backward()
    assert ft.grad is not None and float(ft.grad.abs().sum()) > 0
    # A fused image equal to a source with the only structure scores better than noise.
    flat = np.zeros_like(a)
    assert float(mef_ssim_loss(tt(a), tt(a), tt(flat))) < float(mef_ssim_loss(tt(f), tt(a), tt(flat)))


def test_qabf_loss_follows_the_metric() -> None:
    from medfuse.metrics import qabf

    a, b = brain_phantom(64, seed=1)
    a = a.astype(np.float64)
    b = (b if b.ndim == 2 else b.mean(axis=-1)).astype(np.float64)
    a, b = a / max(a.max(), 1e-9), b / max(b.max(), 1e-9)
    tt = lambda x: torch.from_numpy(np.ascontiguousarray(x))[None, None]  # noqa: E731
    for f in ((a + b) / 2, np.maximum(a, b), a):
        got = 1 - float(qabf_loss(tt(f), tt(a), tt(b)))
        assert got == pytest.approx(qabf(a * 255, b * 255, f * 255), abs=2e-3)
    ft = tt((a + b) / 2).clone().requires_grad_(True)
    qabf_loss(ft, tt(a), tt(b)).backward()
    assert ft.grad is not None and float(ft.grad.abs().sum()) > 0


def test_background_mask_penalty_counts_principal_pixels_without_signal() -> None:
    a = torch.zeros(1, 1, 32, 32)
    a[..., 8:24, 8:24] = 0.5  # anatomy in the middle, empty background around it
    b = torch.zeros_like(a)
    on_anatomy = torch.zeros_like(a)
    on_anatomy[..., 10:22, 10:22] = 1.0
    everywhere = torch.ones_like(a)
    sup = signal_support(a, b)
    assert float(background_mask_penalty(on_anatomy, sup)) == 0.0
    # support = anatomy grown by 3 px on each side: 22 x 22 of the 32 x 32 image
    assert float(background_mask_penalty(everywhere, sup)) == pytest.approx(1 - 22 * 22 / 32**2)


def test_support_mask_prior_hand_cases() -> None:
    sup = torch.zeros(2, 1, 8, 8)
    sup[..., 2:6, 2:6] = 1.0  # 16 support pixels of 64
    margin = torch.full((2, 1, 8, 8), -2.0)  # everything confidently redundant
    # background fine, no anatomy principal (f = 0, full shortfall): lift the support,
    # mean(S relu(1 - d)) = 16 * 3 / 64
    assert float(support_mask_prior(margin, sup, (0.25, 0.75))) == pytest.approx(16 * 3 / 64)
    part = margin.clone()
    part[..., 2, 2:4] = 2.0  # f = 2/16 = 0.125: half the shortfall, half the lift
    assert float(support_mask_prior(part, sup, (0.25, 0.75))) == pytest.approx(0.5 * 14 * 3 / 64)
    good = margin.clone()
    good[..., 2:4, 2:6] = 2.0  # half of each support principal, background redundant
    assert float(support_mask_prior(good, sup, (0.25, 0.75))) == 0.0
    grid = good.clone()
    grid[..., 0, 0] = 0.5  # one principal background pixel per image: relu(0.5 + 1) / 64
    assert float(support_mask_prior(grid, sup, (0.25, 0.75))) == pytest.approx(1.5 / 64)
    full = torch.full_like(margin, 3.0)  # all principal: background, and f = 1 is the
    expect = (48 * 4 + 16 * 4) / 64  # full excess above hi, lowering the whole support
    assert float(support_mask_prior(full, sup, (0.25, 0.75))) == pytest.approx(expect)
    empty = torch.zeros(2, 1, 8, 8)  # no support at all: only the background part counts
    assert float(support_mask_prior(margin, empty)) == 0.0
    # the support is the anatomy grown by the max filter
    a = torch.zeros(1, 1, 9, 9)
    a[..., 4, 4] = 1.0
    assert int(signal_support(a, torch.zeros_like(a), grow=3).sum()) == 9


def test_display_luminance_is_the_written_rgb_luminance() -> None:
    """Equals Y of the chroma rule's RGB (clipped) in NumPy; grey pairs pass unchanged;
    saturated chroma with bright luminance is darkened by the clip, as in the output."""
    from medfuse.colour import TAU, luminance, ycbcr_to_rgb

    rng = np.random.default_rng(0)
    f = rng.uniform(0.02, 0.98, (2, 1, 8, 8)).astype(np.float32)
    chroma = rng.uniform(0.1, 0.9, (2, 2, 8, 8)).astype(np.float32)
    got = display_luminance(torch.from_numpy(f), torch.from_numpy(chroma)).numpy()
    want = luminance(ycbcr_to_rgb(f[:, 0], chroma[:, 0], chroma[:, 1]))
    np.testing.assert_allclose(got[:, 0], want, atol=1e-6)
    neutral = torch.full((2, 2, 8, 8), TAU)
    np.testing.assert_allclose(display_luminance(torch.from_numpy(f), neutral).numpy(), f, atol=1e-6)
    red = torch.tensor([0.5, 0.95]).view(1, 2, 1, 1).expand(1, 2, 8, 8)  # Cb neutral-ish, strong Cr
    bright = torch.full((1, 1, 8, 8), 0.9, requires_grad=True)
    y = display_luminance(bright, red)
    assert float(y.detach().max()) < 0.85  # R clipped at 1
    y.sum().backward()
    assert float(bright.grad.abs().sum()) > 0  # G and B still carry gradient


# --- weights v2 -------------------------------------------------------------------------


def _pair(seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.nn.functional.avg_pool2d(torch.rand(2, 1, size + 2, size + 2, generator=g), 3, 1)
    b = torch.nn.functional.avg_pool2d(torch.rand(2, 1, size + 2, size + 2, generator=g), 3, 1)
    return a, b


def test_scd_loss_is_two_minus_the_metric() -> None:
    from medfuse.metrics import compute_metrics

    a, b = _pair(1)
    assert float(scd_loss(a + b, a, b)) == pytest.approx(0.0, abs=1e-4)  # F = A + B: SCD = 2
    f = torch.maximum(a, b)
    for k in range(2):
        want = compute_metrics(a[k, 0].double().numpy() * 255, b[k, 0].double().numpy() * 255,
                               f[k, 0].double().numpy() * 255, metrics=["SCD"])["SCD"]
        assert 2 - float(scd_loss(f[k : k + 1], a[k : k + 1], b[k : k + 1])) == pytest.approx(want, abs=1e-4)
    flat = torch.zeros_like(a)  # no varying source: nothing to score, no NaN
    assert float(scd_loss(a, a, flat)) == 0.0
    ft = f.clone().requires_grad_(True)
    scd_loss(ft, a, b).backward()
    assert ft.grad is not None and torch.isfinite(ft.grad).all() and float(ft.grad.abs().sum()) > 0


def test_intensity_loss_is_one_sided_and_brightness_weighted() -> None:
    a = t(np.array([[0.2, 1.0]]))
    b = t(np.array([[0.5, 0.0]]))
    m = torch.maximum(a, b)
    assert float(intensity_loss(m, a, b)) == 0.0
    assert float(intensity_loss(m + 0.3, a, b)) == 0.0  # brighter than both: no penalty
    # F = 0.4 everywhere: shortfalls [0.1, 0.6], weights m^2 = [0.25, 1]
    f = torch.full_like(a, 0.4, requires_grad=True)
    want = (0.25 * 0.1 + 1.0 * 0.6) / 2 / ((0.25 + 1.0) / 2)
    loss = intensity_loss(f, a, b)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert f.grad is not None and float(f.grad[0, 0, 0, 1]) < float(f.grad[0, 0, 0, 0]) < 0


def test_contrast_loss_hand_cases() -> None:
    a, b = _pair(2)
    m = torch.maximum(a, b)
    assert float(contrast_loss(m, a, b)) == 0.0
    assert float(contrast_loss(2 * m, a, b)) == 0.0  # more contrast than the target: free
    assert float(contrast_loss(torch.full_like(m, 0.5), a, b)) == pytest.approx(1.0)
    half = (0.5 * m).requires_grad_(True)
    assert float(contrast_loss(half, a, b).detach()) == pytest.approx(0.5, rel=1e-5)
    contrast_loss(half, a, b).backward()
    assert half.grad is not None and float(half.grad.abs().sum()) > 0


def _checker(h: int = 8, w: int = 8) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((x + y) % 2 * 2 - 1).float().view(1, 1, h, w)


def test_lattice_loss_and_index_on_hand_made_masks() -> None:
    blocks = torch.tensor([[1.0, -2.0], [3.0, 0.5]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    blocks = blocks.view(1, 1, 4, 4)
    assert float(phase_deviation(blocks).abs().max()) == 0.0
    assert float(lattice_loss(blocks)) == 0.0  # constant on the transposed conv's 2x2 blocks
    assert float(lattice_loss(_checker())) == pytest.approx(1.0)  # +-1 checkerboard
    rows = torch.tensor([1.0, 0.0]).repeat(4).view(1, 1, 8, 1).expand(1, 1, 8, 8)
    assert lattice_index(rows) == pytest.approx(1.0)  # alternate rows: pure period 2
    assert lattice_index((_checker() > 0).float()) == pytest.approx(1.0)
    assert lattice_index((blocks > 0).float()) == pytest.approx(0.0, abs=1e-12)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disc = (((yy - 31.5) ** 2 + (xx - 30.0) ** 2) < 20.0**2).float().view(1, 1, 64, 64)
    assert lattice_index(disc) < 0.01  # a smooth anatomical shape
    d = _checker().requires_grad_(True)
    lattice_loss(d).backward()
    assert d.grad is not None and float(d.grad.abs().sum()) > 0


def test_channel_sparsity_loss_pushes_the_top_channels_only() -> None:
    logits = torch.zeros(1, 8, 2, 2)
    logits[0, :, :, 0] = 1.0  # every channel dense by 1
    logits[0, 0, :, 1] = 3.0  # channel 0 already sparse by 2 in both layers
    lg = logits.clone().requires_grad_(True)
    # target 0.25 of 8 = 2 channels per layer: channel 0 (d = 2, no loss) and the best of
    # the rest (d = -1, hinge 1 - (-1) = 2): mean over 2 x 2 entries = 1.0
    loss = channel_sparsity_loss(lg, 0.25)
    assert float(loss.detach()) == pytest.approx(1.0)
    loss.backward()
    assert lg.grad is not None
    touched = (lg.grad[0].abs().sum(dim=(1, 2)) > 0).nonzero().flatten().tolist()
    assert len(touched) == 1 and touched[0] != 0  # only the one channel short of the margin
    done = logits.clone()
    done[0, :2, :, 1] = 3.0
    assert float(channel_sparsity_loss(done, 0.25)) == 0.0


def test_upsampler_phase_loss_is_zero_exactly_when_a_flat_input_gives_no_lattice() -> None:
    up = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1)
    bilinear = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    flat = torch.full((1, 3, 6, 6), 0.7)
    with torch.no_grad():
        up.weight.zero_()
        up.weight[:, 1] = bilinear  # margin taps balanced: every phase sums to 1
        up.bias.zero_()
    assert float(upsampler_phase_loss(up.weight).detach()) == pytest.approx(0.0, abs=1e-12)
    d = up(flat)[:, 1:2] - up(flat)[:, 0:1]
    inner = d[..., 2:-2, 2:-2].detach()  # away from the zero-padded border
    assert float(phase_deviation(inner).abs().max()) < 1e-6
    with torch.no_grad():
        up.weight[:, 1] = 0.0
        up.weight[:, 1, 1, 1] = 1.0  # centre tap only: one phase of four answers
    # phase sums (1, 0, 0, 0): variance 3/16 per input channel
    assert float(upsampler_phase_loss(up.weight).detach()) == pytest.approx(3 / 16)
    d = (up(flat)[:, 1:2] - up(flat)[:, 0:1])[..., 2:-2, 2:-2].detach()
    assert float(phase_deviation(d).abs().mean()) > 0.1
    loss = upsampler_phase_loss(up.weight)
    loss.backward()
    assert up.weight.grad is not None and float(up.weight.grad.abs().sum()) > 0


def test_local_contrast_and_peak_hand_cases() -> None:
    flat = torch.full((1, 1, 40, 40), 0.3)
    assert float(local_contrast(flat).abs().max()) < 1e-6  # no surround difference
    b = flat.clone()
    b[..., 18:22, 18:22] = 0.9  # a hot spot
    c = local_contrast(b)
    assert float(c[0, 0, 20, 20]) > 0.4 and float(c[0, 0, 20, 10]) < 0
    assert float(peak_loss(b, flat, b)) == 0.0  # F keeps the peak
    assert float(peak_loss(2 * b, flat, b)) == 0.0  # more than the peak: free
    lost = float(peak_loss(flat, flat, b))  # F flat: the whole peak is missing
    half = float(peak_loss(0.3 + 0.5 * (b - 0.3), flat, b))
    assert 0 < half < lost
    assert half == pytest.approx(lost / 2, rel=1e-4)
    f = flat.clone().requires_grad_(True)
    peak_loss(f, flat, b).backward()
    assert f.grad is not None and float(f.grad[0, 0, 20, 20]) < 0  # pushes the peak up


def test_peak_loss_where_and_coloured() -> None:
    """``where`` drops the pixels it zeroes; ``coloured`` marks non-neutral chroma only."""
    flat = torch.full((1, 1, 40, 40), 0.3)
    b = flat.clone()
    b[..., 18:22, 18:22] = 0.9
    chroma = torch.full((1, 2, 40, 40), 0.5)
    assert float(coloured(chroma).sum()) == 0.0  # grey (CT): nothing coloured
    assert float(peak_loss(flat, flat, b, where=coloured(chroma))) == 0.0
    chroma[:, 1, 16:24, 16:24] = 0.8  # the hot spot is shown in colour
    where = coloured(chroma)
    assert float(where.sum()) == 64.0
    assert float(peak_loss(flat, flat, b, where=where)) > 0.0


def test_gamut_loss_hand_cases() -> None:
    """Zero for grey chroma and for colour that fits at the given luminance; positive for
    saturated red on bright luminance, and its gradient lowers that luminance."""
    from medfuse.colour import rgb_to_ycbcr

    y0, cb, cr = rgb_to_ycbcr(np.array([0.9, 0.2, 0.2]))  # a red that fits near its own Y
    red = torch.tensor([float(cb), float(cr)]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    grey = torch.full((1, 2, 4, 4), 0.5)
    bright = torch.full((1, 1, 4, 4), 0.8, requires_grad=True)
    assert float(gamut_loss(bright.detach(), grey)) == 0.0
    assert float(gamut_loss(torch.full((1, 1, 4, 4), float(y0)), red)) == 0.0
    assert float(gamut_loss(bright.detach(), red, torch.zeros(1))) == 0.0  # pair not given the term
    loss = gamut_loss(bright, red, torch.ones(1))
    assert float(loss.detach()) == pytest.approx(0.8 + 1.403 * (float(cr) - 0.5) - 1.0, abs=1e-3)
    loss.backward()
    assert bright.grad is not None and float(bright.grad.sum()) > 0  # descent lowers Y


def test_anatomy_loss_hand_cases() -> None:
    """0 when F's edges are the MRI's (any gain), near 1 for unrelated edges, 0 for pairs
    with weight 0 or without MRI edges; its gradient reaches F."""
    torch.manual_seed(3)
    mri = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 20, 20), 3, 1)
    other = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 20, 20), 3, 1)
    on = torch.ones(2)
    assert float(anatomy_loss(0.5 * mri + 0.1, mri, on)) == pytest.approx(0.0, abs=1e-5)
    assert float(anatomy_loss(other, mri, on)) > 0.5
    assert float(anatomy_loss(other, mri, torch.zeros(2))) == 0.0
    assert float(anatomy_loss(other, torch.full_like(mri, 0.3), on)) == 0.0
    f = other.clone().requires_grad_(True)
    anatomy_loss(f, mri, on).backward()
    assert f.grad is not None and float(f.grad.abs().sum()) > 0


def test_anchor_loss_hand_cases() -> None:
    """The mean absolute move from the anchor's output, averaged over the selected pairs
    only; zero where F is the anchor's; its gradient reaches F."""
    ref = torch.zeros(2, 1, 4, 4)
    f = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.3)]).requires_grad_(True)
    assert float(anchor_loss(ref, ref)) == 0.0
    g = f.detach()
    assert float(anchor_loss(g, ref)) == pytest.approx(0.2)
    assert float(anchor_loss(g, ref, torch.tensor([1.0, 0.0]))) == pytest.approx(0.1)
    assert float(anchor_loss(g, ref, torch.tensor([0.0, 1.0]))) == pytest.approx(0.3)
    assert float(anchor_loss(g, ref, torch.zeros(2))) == 0.0
    anchor_loss(f, ref, torch.tensor([1.0, 0.0])).backward()
    assert f.grad is not None and float(f.grad[0].abs().sum()) > 0 and float(f.grad[1].abs().sum()) == 0
