"""select_device: what each spelling gives, and one UsageError (naming the choices) for
everything else, before any work starts."""

from __future__ import annotations

import pytest
import torch

from medfuse.engine import select_device
from medfuse.errors import UsageError


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu "])
def test_cpu(spec: str) -> None:
    assert select_device(spec) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["auto", "", None])
def test_auto(spec: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device(spec) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(spec) == torch.device("cuda")


@pytest.mark.parametrize("spec", ["tpu", "gpu", "cuda0", "mps"])
def test_unknown_device(spec: str) -> None:
    with pytest.raises(UsageError, match=rf"--device '{spec}': expected auto, cpu, cuda or cuda:N"):
        select_device(spec)


def test_not_text() -> None:
    with pytest.raises(UsageError, match="expected text .* got int"):
        select_device(0)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_cuda_unavailable(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="CUDA is not available on this machine"):
        select_device(spec)


@pytest.mark.parametrize("spec", ["cuda:1", "cuda:x", "cuda:", "cuda:-1"])
def test_no_such_gpu(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UsageError, match=r"no such GPU \(1 visible\)"):
        select_device(spec)


def test_cuda_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("cuda:1") == torch.device("cuda", 1)
    assert select_device("CUDA") == torch.device("cuda")
