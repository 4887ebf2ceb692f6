"""GeSeNet structure, determinism and the golden parity test against the authors' checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medfuse.model import GeSeNet


def test_parameter_count_and_keys() -> None:
    m = GeSeNet()
    sd = m.state_dict()
    assert len(sd) == 77
    assert sum(p.numel() for p in m.parameters()) == 240_587
    assert tuple(sd["inf_rmm.body.ch_mask"].shape) == (1, 32, 4, 2)
    assert "decoder1.bn.running_mean" in sd


@pytest.mark.parametrize("size", [(8, 8), (16, 24), (32, 32)])
def test_shapes_and_range(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    m = GeSeNet().eval()
    a, b = torch.rand(2, 1, *size), torch.rand(2, 1, *size)
    out = m.fuse(a, b)
    assert out.fused.shape == (2, 1, *size)
    assert out.fused.min() >= 0 and out.fused.max() <= 1
    assert set(torch.unique(out.mask_mri).tolist()) <= {0.0, 1.0}


def test_odd_size_rejected_by_network() -> None:
    with pytest.raises(ValueError, match="even"):
        GeSeNet().eval().fuse(torch.rand(1, 1, 9, 8), torch.rand(1, 1, 9, 8))


def test_inference_is_bit_identical_and_draws_no_random_numbers() -> None:
    torch.manual_seed(0)
    m = GeSeNet().eval()
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


def _load_pair(shared: Path, task: str, mod: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    from medfuse.prepare.pair import prepare_pair

    s = shared / "reference" / "samples" / task
    p = prepare_pair(s / "MRI" / f"{i}.png", s / mod / f"{i}.png")
    return p.mri_y, p.other_y


TASKS = [("MRI_CT", "CT"), ("MRI_PET", "PET"), ("MRI_SPECT", "SPECT")]


@pytest.mark.parametrize("task,mod", TASKS)
def test_golden_parity(shared: Path, reference_checkpoint: Path, task: str, mod: str) -> None:
    """Reference checkpoint + hard masks reproduce the recorded fused Y and masks."""
    from PIL import Image

    from medfuse.engine import load_model

    eng = load_model(reference_checkpoint, "cpu")
    par = shared / "reference" / "parity" / task
    pairs = [_load_pair(shared, task, mod, i) for i in range(1, 6)]
    fused, mm, mf = eng.fuse_luminance(
        np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), with_masks=True
    )
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
