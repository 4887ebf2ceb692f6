"""The Engine: the folded form equals the training form through padding, batching and
exact two-pass tiling; any network with the FusionNetwork contract runs through it; input
errors say what was received; and library calls leave the process alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.networks import TASKS, assert_same_arrays, image_pair, sample_luminance, seeded_model
from medfuse.engine import Engine, build_model, load_model
from medfuse.engine import runtime as runtime_mod
from medfuse.errors import UsageError, WeightsError

CPU = torch.device("cpu")


def engines(seed: int = 1234, **kw: Any) -> tuple[Engine, Engine]:
    model = seeded_model(seed)
    return Engine(model=model, device=CPU, fast=True, **kw), Engine(model=model, device=CPU, fast=False, **kw)


def test_odd_sizes_batched() -> None:
    fast, dense = engines()
    a, b = image_pair(3, 37, 50)
    assert_same_arrays(fast.fuse_luminance(a, b, with_masks=True), dense.fuse_luminance(a, b, with_masks=True))


def test_single_image() -> None:
    fast, dense = engines()
    a, b = image_pair(1, 30, 41, seed=2)
    got = fast.fuse_luminance(a[0], b[0], with_masks=True)
    assert got[0].shape == (30, 41) and got[1] is not None and got[1].shape == (30, 41)
    assert_same_arrays(got, dense.fuse_luminance(a[0], b[0], with_masks=True))
    assert fast.fuse_luminance(a[0], b[0])[1:] == (None, None)


def test_micro_batch_does_not_change_results() -> None:
    fast, _ = engines()
    a, b = image_pair(5, 32, 32, seed=3)
    one = fast.fuse_luminance(a, b)[0]
    fast.cpu_micro_batch = 4
    four = fast.fuse_luminance(a, b)[0]
    assert np.abs(one - four).max() <= 1e-5
    assert fast._slices_per_call() == 4


def test_tiled_equals_whole() -> None:
    """Small tiles force many tiles; the result must equal the training form run on the
    whole image, masks included."""
    fast, dense = engines(seed=11)
    a, b = image_pair(1, 120, 106, seed=4)
    whole = dense.fuse_luminance(a, b, with_masks=True)
    fast.tile_size, fast.tile_threshold = 64, 64 * 64
    assert_same_arrays(fast.fuse_luminance(a, b, with_masks=True), whole)


def test_tile_size_must_keep_tiles_exact() -> None:
    fast, _ = engines()
    fast.tile_size, fast.tile_threshold = 63, 16 * 16  # odd: breaks GeSeNet's 2x2 grid
    with pytest.raises(ValueError, match="multiples of 2"):
        fast.fuse_luminance(*image_pair(1, 40, 40))


def test_training_mode_uses_model() -> None:
    fast, _ = engines()
    fast.model.train()
    assert fast._network() is fast.model
    fast.model.eval()
    assert fast._network() is not fast.model


def test_weights_change_is_seen() -> None:
    fast, dense = engines()
    a, b = image_pair(1, 32, 32, seed=5)
    before = fast.fuse_luminance(a, b)[0]
    with torch.no_grad():
        fast.model.decoder1.conv.bias.add_(0.5)  # type: ignore[attr-defined]
    after = fast.fuse_luminance(a, b)[0]
    assert np.abs(after - before).max() > 1e-3
    assert np.abs(after - dense.fuse_luminance(a, b)[0]).max() <= 1e-4


def test_precision() -> None:
    fast, dense = engines()
    assert fast.compute_dtype() == torch.float32  # auto on CPU
    fast.precision = "bfloat16"
    assert fast.compute_dtype() == torch.bfloat16
    dense.precision = "bfloat16"
    assert dense.compute_dtype() == torch.float32  # the training form computes in float32
    fast.precision = "float64"
    with pytest.raises(UsageError, match="'float64': expected auto"):
        fast.compute_dtype()


def test_bfloat16_engine_runs() -> None:
    fast, dense = engines(precision="bfloat16")
    a, b = image_pair(1, 32, 32, seed=6)
    got = fast.fuse_luminance(a, b)[0]
    assert got.dtype == np.float32
    assert np.abs(got - dense.fuse_luminance(a, b)[0]).max() < 0.1


@pytest.mark.parametrize(
    "a,b,match",
    [
        (np.zeros((16, 16)), np.zeros((16, 18)), r"shape mismatch: MRI \(16, 16\) vs other \(16, 18\)"),
        (np.zeros((1, 1, 16, 16)), np.zeros((1, 1, 16, 16)), r"got shape \(1, 1, 16, 16\)"),
        (np.zeros((16, 7)), np.zeros((16, 7)), "at least 8x8, got 16x7"),
    ],
)
def test_input_errors_say_what_was_received(a: np.ndarray, b: np.ndarray, match: str) -> None:
    fast, _ = engines()
    with pytest.raises(ValueError, match=match):
        fast.fuse_luminance(a, b)


# -- the network protocol --------------------------------------------------------------------
class _Out:
    def __init__(self, fused: torch.Tensor, mm: torch.Tensor, mf: torch.Tensor) -> None:
        self.fused, self.mask_mri, self.mask_functional = fused, mm, mf


class ToyNetwork:
    """Not a GeSeNet: 5 body channels, sides in multiples of 4, receptive radius 1, and a
    global term (the mean of its body features) like channel attention."""

    RECEPTIVE_RADIUS = 1
    SIZE_MULTIPLE = 4
    training = False

    def __init__(self) -> None:
        self.fold_calls: list[dict[str, Any]] = []

    def fold(self, **options: Any) -> ToyNetwork:
        self.fold_calls.append(options)
        return self

    def body_features(self, mri: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        powers = torch.arange(1, 6, dtype=mri.dtype).view(1, 5, 1, 1)
        return mri**powers, other**powers

    def fuse(self, mri: torch.Tensor, other: torch.Tensor,
             pooled: tuple[torch.Tensor, torch.Tensor] | None = None,
             return_bodies: bool = True) -> _Out:
        assert mri.shape[-2] % 4 == 0 and mri.shape[-1] % 4 == 0
        if pooled is None:
            pooled = tuple(t.mean((-2, -1), keepdim=True) for t in self.body_features(mri, other))  # type: ignore[assignment]
        assert pooled is not None
        local = F.avg_pool2d((mri + other) / 2, 3, stride=1, padding=1, count_include_pad=False)
        fused = local / 2 + (pooled[0].mean(1, keepdim=True) + pooled[1].mean(1, keepdim=True)) / 4
        return _Out(fused, (mri > other).float(), (other >= mri).float())


def test_any_network_with_the_protocol_runs_whole_and_tiled() -> None:
    net = ToyNetwork()
    eng = Engine(model=net, device=CPU)  # type: ignore[arg-type]
    a, b = image_pair(2, 37, 50, seed=9)
    whole = eng.fuse_luminance(a, b, with_masks=True)
    assert whole[0].shape == (2, 37, 50)
    assert net.fold_calls and net.fold_calls[0] == {"dtype": torch.float32}
    assert np.array_equal(whole[1], (a > b).astype(np.float32))
    eng.tile_size, eng.tile_threshold = 16, 100  # many tiles, margin 32 >= radius 1
    tiled = eng.fuse_luminance(a, b, with_masks=True)
    assert np.allclose(tiled[0], whole[0], atol=1e-6)
    assert np.array_equal(tiled[1], whole[1]) and np.array_equal(tiled[2], whole[2])


def test_margin_below_receptive_radius_is_refused() -> None:
    net = ToyNetwork()
    net.RECEPTIVE_RADIUS = 40
    eng = Engine(model=net, device=CPU, tile_threshold=100, tile_size=16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="below the network's receptive radius 40"):
        eng.fuse_luminance(*image_pair(1, 40, 40))


# -- loading ----------------------------------------------------------------------------------
def test_build_model_checks_and_names_the_source() -> None:
    state = seeded_model(1).state_dict()
    assert not build_model(state).training
    state["decoder1.conv.bias"] = torch.tensor([float("nan")])
    with pytest.raises(WeightsError, match="mine.pt holds non-finite"):
        build_model(state, source="mine.pt")


def test_load_model(random_weights: Path) -> None:
    eng = load_model(random_weights, "cpu", batch_size=3, fast=False, precision="float32")
    assert (eng.device.type, eng.batch_size, eng.fast, eng.precision) == ("cpu", 3, False, "float32")
    assert eng.weights_path == random_weights and not eng.model.training
    assert eng.weights_sha256 is not None and len(eng.weights_sha256) == 64


def test_library_calls_change_no_process_state(random_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_model and a first CPU inference apply none of the entry-point tuning."""
    monkeypatch.setattr(runtime_mod, "_ALLOCATOR_TUNED", None)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    calls: list[str] = []
    monkeypatch.setattr(runtime_mod, "tune_allocator", lambda: calls.append("allocator") or True)
    monkeypatch.setattr(runtime_mod, "tune_process", lambda *a, **k: calls.append("process"))
    env, threads = dict(os.environ), torch.get_num_threads()
    eng = load_model(random_weights, "cpu")
    eng.fuse_luminance(*image_pair(1, 16, 16))
    assert dict(os.environ) == env
    assert torch.get_num_threads() == threads
    assert runtime_mod._ALLOCATOR_TUNED is None and calls == []


@pytest.mark.slow
def test_reference_samples(shared: Path, reference_checkpoint: Path) -> None:
    """The authors' checkpoint on the first sample pair of each task (its masks are a
    fixed grid and all ones, unlike random weights'): folded == training form within
    1e-4, masks identical."""
    fast = load_model(reference_checkpoint, "cpu")
    dense = load_model(reference_checkpoint, "cpu", fast=False)
    for task, mod in TASKS:
        a, b = (x[None] for x in sample_luminance(shared, task, mod, 1))
        assert_same_arrays(fast.fuse_luminance(a, b, with_masks=True), dense.fuse_luminance(a, b, with_masks=True))


def test_public_names_resolve_lazily() -> None:
    import medfuse.engine as pkg

    assert sorted(pkg.__all__) == sorted(pkg._LAZY)
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'fastpath'"):
        pkg.fastpath  # noqa: B018
