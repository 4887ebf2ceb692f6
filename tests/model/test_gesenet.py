"""GeSeNet structure, determinism, its public methods, and the golden parity test against
the authors' checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.networks import TASKS, sample_luminance, seeded_model, tensor_pair
from medfuse.model import GeSeNet


def test_parameter_count_and_keys() -> None:
    m = GeSeNet()
    sd = m.state_dict()
    assert len(sd) == 77
    assert sum(p.numel() for p in m.parameters()) == 240_587
    assert tuple(sd["inf_rmm.body.ch_mask"].shape) == (1, 32, 4, 2)
    assert "decoder1.bn.running_mean" in sd


def test_reference_checkpoint_loads_strictly(reference_checkpoint: Path) -> None:
    state = torch.load(reference_checkpoint, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state.get("model", state))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    GeSeNet().load_state_dict(state, strict=True)


@pytest.mark.parametrize("size", [(8, 8), (16, 24), (32, 32)])
def test_shapes_and_range(size: tuple[int, int]) -> None:
    m = seeded_model(0)
    a, b = torch.rand(2, 1, *size), torch.rand(2, 1, *size)
    out = m.fuse(a, b)
    assert out.fused.shape == (2, 1, *size)
    assert out.fused.min() >= 0 and out.fused.max() <= 1
    assert set(torch.unique(out.mask_mri).tolist()) <= {0.0, 1.0}
    assert out.body_mri.shape == (2, GeSeNet.FEATURES, *size)


def test_odd_size_rejected_by_network() -> None:
    with pytest.raises(ValueError, match="even"):
        GeSeNet().eval().fuse(torch.rand(1, 1, 9, 8), torch.rand(1, 1, 9, 8))


def test_inference_is_bit_identical_and_draws_no_random_numbers() -> None:
    m = seeded_model(0)
    a, b = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    state = torch.get_rng_state()
    with torch.no_grad():
        f1 = m(a, b)
        f2 = m(a, b)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(f1, f2)


def test_training_mode_is_stochastic() -> None:
    torch.manual_seed(0)
    m = GeSeNet().train()
    a, b = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert not torch.equal(m(a, b), m(a, b))


def test_sobel_initialisation() -> None:
    w = GeSeNet().inf_eem.sobelconv.convx.weight
    assert w[0, 0].tolist() == [[1, 0, -1], [2, 0, -2], [1, 0, -1]]


def test_body_features_are_the_fuse_bodies() -> None:
    m = seeded_model(2)
    a, b = tensor_pair(1, 16, 16, seed=1)
    with torch.no_grad():
        out = m.fuse(a, b)
        bodies = m.body_features(a, b)
    assert torch.equal(bodies[0], out.body_mri) and torch.equal(bodies[1], out.body_functional)


def test_branch_accessors() -> None:
    m = seeded_model(2)
    assert m.BRANCHES == ("mri", "functional")
    logits = m.channel_mask_logits("mri")
    assert isinstance(logits, torch.nn.Parameter) and logits.shape == (1, GeSeNet.FEATURES, 4, 2)
    assert logits is not m.channel_mask_logits("functional")
    with pytest.raises(ValueError, match="branch must be"):
        m.channel_mask_logits("pet")  # type: ignore[arg-type]
    counts = m.sparse_channel_counts()
    assert set(counts) == {"mri", "functional"}
    assert all(len(v) == 4 and all(0 <= n <= GeSeNet.FEATURES for n in v) for v in counts.values())
    # Hand count from the logits: class 1 strictly above class 0.
    raw = m.channel_mask_logits("functional")[0].detach()
    assert counts["functional"] == (raw[..., 1] > raw[..., 0]).sum(0).tolist()


def test_spatial_margin_only_after_training_pass() -> None:
    m = seeded_model(3)
    a, b = tensor_pair(1, 16, 16)
    with torch.no_grad():
        m.fuse(a, b)
        assert m.spatial_margin("mri") is None
        m.train()
        m.fuse(a, b)
    margin = m.spatial_margin("functional")
    assert margin is not None and margin.shape == (1, 1, 16, 16)


def test_masked_body_is_the_eval_body() -> None:
    """masked_body on a pass's own features and mask reproduces that pass's body output."""
    m = seeded_model(4)
    a, b = tensor_pair(1, 16, 16, seed=2)
    with torch.no_grad():
        out = m.fuse(a, b)
        e = m.inf_eem(m.inf_conv(a))
        assert torch.equal(m.masked_body("mri", e, out.mask_mri), out.body_mri)


@pytest.mark.parametrize("task,mod", TASKS)
def test_golden_parity(shared: Path, reference_checkpoint: Path, task: str, mod: str) -> None:
    """Reference checkpoint + hard masks reproduce the recorded fused Y and masks."""
    from PIL import Image

    from medfuse.engine import load_model

    eng = load_model(reference_checkpoint, "cpu")
    par = shared / "reference" / "parity" / task
    pairs = [sample_luminance(shared, task, mod, i) for i in range(1, 6)]
    fused, mm, mf = eng.fuse_luminance(
        np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), with_masks=True
    )
    assert mm is not None and mf is not None
    for i in range(5):
        ref = np.load(par / f"{i + 1}_fused_y.npy")
        d = np.abs(fused[i] - ref)
        assert d.mean() <= 1e-5 and d.max() <= 1e-3
        ref_m = np.asarray(Image.open(par / f"{i + 1}_mask_mri.png"))
        ref_f = np.asarray(Image.open(par / f"{i + 1}_mask_functional.png"))
        assert np.array_equal((mm[i] * 255).astype(np.uint8), ref_m)
        assert np.array_equal((mf[i] * 255).astype(np.uint8), ref_f)
    manifest = json.loads((shared / "reference" / "parity" / "manifest.json").read_text())
    for row in (r for r in manifest if r["task"] == task):
        k = int(row["name"].split(".")[0]) - 1
        assert mm[k].mean() == pytest.approx(row["mask_fraction_mri"])
