"""The semantic module: its outputs follow the output policy, its weights load safely."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.training import phantom_dataset
from medfuse.errors import UsageError, WeightsError
from medfuse.training.semantic import load_semantic, train_semantic


def test_train_semantic_outputs_follow_the_output_policy(tmp_path: Path) -> None:
    data = phantom_dataset(tmp_path / "data", 2, 1)
    out = tmp_path / "sem"
    s = train_semantic(data, out, steps=2, batch=2, patch=16, device="cpu")
    assert Path(s["weights"]) == out / "semantic.pt"
    net = load_semantic(s["weights"], torch.device("cpu"))
    assert not any(p.requires_grad for p in net.parameters())
    before = (out / "semantic.pt").read_bytes()
    with pytest.raises(UsageError, match="exists"):
        train_semantic(data, out, steps=2, batch=2, patch=16, device="cpu")
    assert (out / "semantic.pt").read_bytes() == before
    train_semantic(data, out, steps=2, batch=2, patch=16, device="cpu", force=True)
    assert (out / "semantic_log.csv").read_text().count("step") == 1  # fresh log
    with pytest.raises(UsageError, match="inside input folder"):
        train_semantic(data, data / "sem", steps=2, batch=2, patch=16, device="cpu", force=True)


def test_load_semantic_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="train-semantic"):
        load_semantic(tmp_path / "missing.pt", torch.device("cpu"))
    other = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(2)}, other)
    with pytest.raises(WeightsError, match="not a semantic net"):
        load_semantic(other, torch.device("cpu"))
    torch.save([1, 2], other)
    with pytest.raises(WeightsError, match="no state dict"):
        load_semantic(other, torch.device("cpu"))
