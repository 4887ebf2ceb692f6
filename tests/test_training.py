"""Training: losses on hand-made cases, pseudo-labels, a tiny run, checkpoints and resume."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from medfuse.errors import UsageError
from medfuse.io.images import write_image
from medfuse.phantom import brain_phantom
from medfuse.training.labels import pseudo_labels
from medfuse.training.losses import (
    LossWeights,
    background_mask_penalty,
    content_loss,
    display_luminance,
    gradient_loss,
    mask_budget,
    mef_ssim_loss,
    qabf_loss,
    signal_support,
    sobel_magnitude,
    ssim,
    ssim_loss,
    support_mask_prior,
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


def test_pseudo_labels_rule() -> None:
    mri = np.zeros((32, 32), np.float32)
    ct = np.zeros((32, 32), np.float32)
    mri[8:24, 8:24] = 0.3
    mri[8:24, 8:16] = 0.8  # brighter half of the head
    ct[8:24, 8:24] = 0.2
    ct[10:12, 10:22] = 0.9  # bone
    lab = pseudo_labels(mri, ct, "ct")
    assert lab[0, 0] == 0 and lab[16, 20] == 1 and lab[16, 10] == 2 and lab[11, 15] == 3
    assert set(np.unique(pseudo_labels(mri, ct, "pet"))) <= {0, 1, 2, 3}


def _dataset(root: Path, n_train: int = 4, n_val: int = 2, size: int = 32) -> Path:
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            mri, pet = brain_phantom(size, seed=i + (100 if split == "val" else 0))
            write_image(root / "MRI_PET" / split / "MRI" / f"{i}.png", mri)
            write_image(root / "MRI_PET" / split / "PET" / f"{i}.png", pet)
    return root


def test_loss_falls_on_synthetic_pairs(tmp_path: Path) -> None:
    from medfuse.model import GeSeNet
    from medfuse.training.data import PatchSampler, load_split
    from medfuse.training.trainer import loss_terms

    torch.manual_seed(0)
    data = load_split(_dataset(tmp_path), "train")
    a, b, lab = PatchSampler(data, patch=16, stride=8, seed=0).sample(8)
    at, bt = torch.from_numpy(a.copy()).unsqueeze(1), torch.from_numpy(b.copy()).unsqueeze(1)
    model = GeSeNet().train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    w = LossWeights(semantic=0.0)
    losses = []
    for _ in range(30):
        total = loss_terms(model, at, bt, None, w, None)["total"]
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_sampler_is_seeded(tmp_path: Path) -> None:
    from medfuse.training.data import PatchSampler, load_split

    data = load_split(_dataset(tmp_path), "train")
    x1 = PatchSampler(data, 16, 8, seed=3).sample(4)
    x2 = PatchSampler(data, 16, 8, seed=3).sample(4)
    x3 = PatchSampler(data, 16, 8, seed=4).sample(4)
    assert all(np.array_equal(p, q) for p, q in zip(x1, x2))
    assert not np.array_equal(x1[0], x3[0])


def test_tiny_run_checkpoint_resume_export(tmp_path: Path) -> None:
    from medfuse.engine import load_model
    from medfuse.training.trainer import TrainConfig, export_best, train, train_semantic

    data = _dataset(tmp_path / "data")
    sem = train_semantic(data, tmp_path / "sem", steps=20, batch=2, patch=16, device="cpu")
    assert 0 <= sem["val_pixel_accuracy"] <= 1
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=6, batch=2, patch=16,
                      checkpoint_every=3, val_every=3, device="cpu",
                      semantic=str(tmp_path / "sem" / "semantic.pt"))
    cfg.weights.compute_target = 0.75
    s1 = train(cfg)
    assert s1["steps"] == 6 and (tmp_path / "run" / "best.pt").is_file()
    with open(tmp_path / "run" / "val.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert 0 <= float(rows[-1]["principal_mri"]) <= 1
    cfg.steps = 9
    s2 = train(cfg, resume=True)
    assert s2["steps"] == 9
    with pytest.raises(Exception, match="already holds a run"):
        train(cfg)
    bad = TrainConfig(data=str(data), out=str(tmp_path / "bad"), steps=1, criterion="val_mi")
    with pytest.raises(UsageError, match="unknown selection criterion"):
        train(bad)
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    stage2 = TrainConfig(data=str(data), out=str(tmp_path / "st"), steps=3, batch=2, patch=16,
                         val_every=3, device="cpu", straight_through=True, display_luma=True,
                         criterion="val_qabf+ssim", init=str(tmp_path / "run" / "last.pt"),
                         weights=LossWeights(mef_ssim=1.0, mask_support=1.0, compute_target=0.75))
    assert train(stage2)["steps"] == 3
    rows = list(csv.DictReader(open(tmp_path / "st" / "log.csv")))
    assert float(rows[-1]["mef_ssim"]) > 0 and rows[-1]["mask_support"] != ""
    dest = export_best(tmp_path / "run", tmp_path / "w.pt")
    eng = load_model(dest, "cpu")
    f, _, _ = eng.fuse_luminance(np.zeros((16, 16), np.float32), np.ones((16, 16), np.float32))
    assert np.isfinite(f).all()


def test_resume_is_repeatable(tmp_path: Path) -> None:
    """Six steps straight equal three steps, a resume, and three more."""
    from medfuse.training.trainer import TrainConfig, train

    data = _dataset(tmp_path / "data", 3, 1)
    common = dict(data=str(data), batch=2, patch=16, checkpoint_every=3, val_every=100,
                  device="cpu", seed=5)
    train(TrainConfig(out=str(tmp_path / "a"), steps=6, **common))  # type: ignore[arg-type]
    cfg = TrainConfig(out=str(tmp_path / "b"), steps=6, stop_after=3, **common)  # type: ignore[arg-type]
    assert train(cfg)["steps"] == 3
    cfg.stop_after = None
    train(cfg, resume=True)
    sa = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    sb = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=1e-6), k


def test_straight_through_masks_are_binary_in_training() -> None:
    from medfuse.model import GeSeNet

    torch.manual_seed(0)
    m = GeSeNet().train()
    m.set_straight_through(True)
    a, b = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    out = m.fuse(a, b)
    assert set(torch.unique(out.mask_mri).tolist()) <= {0.0, 1.0}
    with torch.no_grad():  # training sees exactly the masks and output inference gives
        ref = m.eval().fuse(a, b)
    m.train()
    assert torch.equal(out.mask_mri, ref.mask_mri)
    assert torch.equal(out.mask_functional, ref.mask_functional)
    assert torch.allclose(out.fused, ref.fused, atol=1e-6)
    out.fused.mean().backward()  # gradients still reach the mask logits
    assert m.inf_rmm.spa_mask[5].weight.grad is not None
    assert m.inf_rmm.body.ch_mask.grad is not None


def test_selection_prefers_meaningful_masks() -> None:
    from medfuse.training.trainer import selection_score

    good = {"val_qabf": 0.5, "principal_mri": 0.4, "principal_functional": 0.6}
    degenerate = {"val_qabf": 0.7, "principal_mri": 0.25, "principal_functional": 1.0}
    assert selection_score(good) > selection_score(degenerate)


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


def test_sampler_cuts_chroma_with_its_pair(tmp_path: Path) -> None:
    """Chroma patches are rotated and flipped with the luminance they belong to, and the
    chroma-carrying sampler draws the same patches as the plain one."""
    from medfuse.training.data import PatchSampler, load_split

    data = load_split(_dataset(tmp_path), "train")
    assert data.chroma is not None and data.chroma.shape == (len(data), 2, 32, 32)
    data.chroma[:, 0] = data.other  # a chroma plane we can recognise after the transforms
    data.chroma[:, 1] = data.mri
    a, b, lab = PatchSampler(data, 16, 8, seed=7).sample(6)
    a2, b2, lab2, chroma = PatchSampler(data, 16, 8, seed=7).sample_with_chroma(6)
    assert np.array_equal(a, a2) and np.array_equal(b, b2) and np.array_equal(lab, lab2)
    assert np.array_equal(chroma[:, 0], b2) and np.array_equal(chroma[:, 1], a2)


def test_validation_scores_the_written_colour_image(tmp_path: Path) -> None:
    """validate() gives eval's numbers: the fused luminance coloured by the chroma rule,
    written to 8 bits, scored by compute_metrics_colour."""
    from medfuse.colour import TAU, fuse_colour
    from medfuse.io.images import to_uint
    from medfuse.metrics import compute_metrics_colour
    from medfuse.model import GeSeNet
    from medfuse.training.data import load_split
    from medfuse.training.trainer import _tensor, validate

    torch.manual_seed(0)
    val = load_split(_dataset(tmp_path, n_train=1, n_val=2), "val")
    assert not np.all(val.chroma == TAU)  # the phantom PET is coloured
    model = GeSeNet().eval()
    res = validate(model, val, torch.device("cpu"))
    with torch.no_grad():
        fused = model.fuse(_tensor(val.mri, torch.device("cpu")), _tensor(val.other, torch.device("cpu"))).fused
    want = []
    for k in range(len(val)):
        n = np.full_like(val.mri[k], TAU)
        rgb = fuse_colour(fused[k, 0].numpy(), [(n, n), (val.chroma[k, 0], val.chroma[k, 1])])
        want.append(compute_metrics_colour(val.mri[k] * 255, val.other[k] * 255,
                                           to_uint(rgb, 8).astype(np.float64), "standard", ["Qabf"])["Qabf"])
    assert res["qabf_MRI_PET"] == pytest.approx(float(np.mean(want)), abs=1e-9)
