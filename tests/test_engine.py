"""Engine-level checks of the fast path: the default (fast) engine equals the plain dense
model through padding, batching and exact two-pass tiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import medfuse.engine as engine_mod
from medfuse.engine import Engine, build_model
from medfuse.errors import UsageError

TOL = 1e-4


def engines(seed: int = 1234, **kw: object) -> tuple[Engine, Engine]:
    torch.manual_seed(seed)
    model = build_model()
    dev = torch.device("cpu")
    return (
        Engine(model=model, device=dev, fast=True, **kw),  # type: ignore[arg-type]
        Engine(model=model, device=dev, fast=False, **kw),  # type: ignore[arg-type]
    )


def arrays(n: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, h, w), np.float32), rng.random((n, h, w), np.float32)


def check(fast: tuple, dense: tuple) -> None:  # type: ignore[type-arg]
    assert np.abs(fast[0] - dense[0]).max() <= TOL
    assert np.array_equal(fast[1], dense[1])
    assert np.array_equal(fast[2], dense[2])


def test_odd_sizes_batched() -> None:
    fast, dense = engines()
    a, b = arrays(3, 37, 50)
    check(fast.fuse_luminance(a, b, with_masks=True), dense.fuse_luminance(a, b, with_masks=True))


def test_single_image() -> None:
    fast, dense = engines()
    a, b = arrays(1, 30, 41, seed=2)
    got = fast.fuse_luminance(a[0], b[0], with_masks=True)
    assert got[0].shape == (30, 41)
    check(got, dense.fuse_luminance(a[0], b[0], with_masks=True))


def test_micro_batch_does_not_change_results() -> None:
    fast, _ = engines()
    a, b = arrays(5, 32, 32, seed=3)
    one = fast.fuse_luminance(a, b)[0]
    fast.cpu_micro_batch = 4
    four = fast.fuse_luminance(a, b)[0]
    assert np.abs(one - four).max() <= 1e-5
    assert fast._slices_per_call() == 4


def test_tiled_equals_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small tiles (monkeypatched) force many tiles; the result must equal the dense model
    run on the whole image, masks included."""
    fast, dense = engines(seed=11)
    a, b = arrays(1, 120, 106, seed=4)
    whole = dense.fuse_luminance(a, b, with_masks=True)
    monkeypatch.setattr(engine_mod, "TILE", 64)
    fast.tile_threshold = 64 * 64
    tiled = fast.fuse_luminance(a, b, with_masks=True)
    check(tiled, whole)


def test_training_mode_uses_model() -> None:
    fast, _ = engines()
    fast.model.train()
    assert fast._network() is fast.model
    fast.model.eval()
    assert fast._network() is not fast.model


def test_weights_change_is_seen() -> None:
    fast, dense = engines()
    a, b = arrays(1, 32, 32, seed=5)
    before = fast.fuse_luminance(a, b)[0]
    with torch.no_grad():
        fast.model.decoder1.conv.bias.add_(0.5)
    after = fast.fuse_luminance(a, b)[0]
    assert np.abs(after - before).max() > 1e-3
    assert np.abs(after - dense.fuse_luminance(a, b)[0]).max() <= TOL


def test_precision() -> None:
    fast, _ = engines()
    assert fast.compute_dtype() == torch.float32  # auto on CPU
    fast.precision = "bfloat16"
    assert fast.compute_dtype() == torch.bfloat16
    fast.precision = "float64"
    with pytest.raises(UsageError):
        fast.compute_dtype()


def test_bfloat16_engine_runs() -> None:
    fast, dense = engines(precision="bfloat16")
    a, b = arrays(1, 32, 32, seed=6)
    got = fast.fuse_luminance(a, b)[0]
    assert got.dtype == np.float32
    assert np.abs(got - dense.fuse_luminance(a, b)[0]).max() < 0.1


def test_reference_samples(shared: Path, reference_checkpoint: Path) -> None:
    """The authors' checkpoint on the first sample pair of each task (its masks are a fixed grid and
    all ones, unlike random weights'): fast == dense within 1e-4, masks identical."""
    from medfuse.engine import load_model
    from medfuse.prepare.pair import prepare_pair

    fast = load_model(reference_checkpoint, "cpu")
    dense = load_model(reference_checkpoint, "cpu", fast=False)
    for task, mod in (("MRI_CT", "CT"), ("MRI_PET", "PET"), ("MRI_SPECT", "SPECT")):
        s = shared / "reference" / "samples" / task
        pairs = [prepare_pair(s / "MRI" / f"{i}.png", s / mod / f"{i}.png") for i in (1,)]
        a = np.stack([p.mri_y for p in pairs])
        b = np.stack([p.other_y for p in pairs])
        check(fast.fuse_luminance(a, b, with_masks=True), dense.fuse_luminance(a, b, with_masks=True))
