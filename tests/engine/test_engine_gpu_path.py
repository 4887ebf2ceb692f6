"""The engine's GPU-path changes, checked where they can be without a GPU: the CPU path
is untouched (bit-identical fused luminance with or without masks), CUDA-only fold options
reach the network on CUDA only, and page-locked staging is used on CUDA only."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from helpers.networks import image_pair, seeded_model
from medfuse.engine import Engine


class _Recorder:
    """Records fold options; never runs (the tests stop before a forward pass)."""

    RECEPTIVE_RADIUS = 1
    SIZE_MULTIPLE = 2
    training = False

    def __init__(self) -> None:
        self.fold_calls: list[dict[str, Any]] = []

    def fold(self, **options: Any) -> _Recorder:
        self.fold_calls.append(options)
        return self


def test_masks_only_when_asked_and_fused_unchanged() -> None:
    engine = Engine(model=seeded_model(7), device=torch.device("cpu"))
    a, b = image_pair(3, 30, 34, seed=5)
    with_masks = engine.fuse_luminance(a, b, with_masks=True)
    without = engine.fuse_luminance(a, b)
    assert without[1] is None and without[2] is None
    assert np.array_equal(with_masks[0], without[0])  # bit for bit
    assert with_masks[1] is not None and with_masks[1].shape == (3, 30, 34)


def test_cuda_fold_options_reach_the_network_on_cuda_only() -> None:
    net = _Recorder()
    cpu = Engine(model=net, device=torch.device("cpu"), precision="float32")  # type: ignore[arg-type]
    cpu._network()
    assert net.fold_calls[-1] == {"dtype": torch.float32}
    gpu = Engine(model=net, device=torch.device("cuda"), precision="float32")  # type: ignore[arg-type]
    gpu._network()  # builds no tensor: the recorder's fold only records
    assert net.fold_calls[-1] == {"dtype": torch.float32, "sparse": "never"}
    gpu.cuda_fold_options = {}
    gpu._network()
    assert net.fold_calls[-1] == {"dtype": torch.float32}


def test_inputs_on_cpu_do_not_use_page_locked_memory() -> None:
    engine = Engine(model=seeded_model(7), device=torch.device("cpu"))
    a, b = image_pair(2, 31, 33, seed=1)
    ta, tb = engine._inputs(a, b)
    assert ta.shape == (2, 1, 32, 34) and tb.shape == (2, 1, 32, 34)  # padded to even sides
    assert engine._pinned is None
    assert np.array_equal(ta[:, 0, :31, :33].numpy(), a)
