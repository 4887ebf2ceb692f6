"""Seeded GeSeNets, random inputs and the equality check shared by the engine and model
tests (no tests here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfuse.model import GeSeNet

#: Max abs difference allowed between the folded form and the training form (fused
#: luminance and body outputs in [0, 1]-ish units); masks must be identical.
FOLD_TOL = 1e-4
TASKS = [("MRI_CT", "CT"), ("MRI_PET", "PET"), ("MRI_SPECT", "SPECT")]


def seeded_model(seed: int = 1234) -> GeSeNet:
    """A randomly initialised GeSeNet in eval mode; the same seed gives the same weights."""
    torch.manual_seed(seed)
    return GeSeNet().eval()


def image_pair(n: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) float32 arrays in [0, 1), as the engine takes them."""
    rng = np.random.default_rng(seed)
    return rng.random((n, h, w), np.float32), rng.random((n, h, w), np.float32)


def tensor_pair(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, H, W) float32 tensors in [0, 1), as the network takes them."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, h, w, generator=g), torch.rand(n, 1, h, w, generator=g)


def assert_same_output(got: Any, ref: Any, bodies: bool = True) -> None:
    """Fused luminance (and body outputs) within FOLD_TOL, masks identical."""
    assert (got.fused.float() - ref.fused).abs().max().item() <= FOLD_TOL
    assert torch.equal(got.mask_mri.float(), ref.mask_mri)
    assert torch.equal(got.mask_functional.float(), ref.mask_functional)
    if bodies:
        assert (got.body_mri.float() - ref.body_mri).abs().max().item() <= FOLD_TOL
        assert (got.body_functional.float() - ref.body_functional).abs().max().item() <= FOLD_TOL


def assert_same_arrays(got: tuple, ref: tuple) -> None:  # type: ignore[type-arg]
    """Engine results (fused, mask_mri, mask_functional): fused within FOLD_TOL, masks equal."""
    assert np.abs(got[0] - ref[0]).max() <= FOLD_TOL
    assert np.array_equal(got[1], ref[1])
    assert np.array_equal(got[2], ref[2])


def sample_luminance(shared: Path, task: str, modality: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """One of the authors' sample pairs as (MRI Y, other Y), prepared as fusion does."""
    from medfuse.prepare.pair import prepare_pair

    s = shared / "reference" / "samples" / task
    p = prepare_pair(s / "MRI" / f"{i}.png", s / modality / f"{i}.png")
    return p.mri_y, p.other_y
