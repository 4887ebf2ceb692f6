"""The reduced-precision check: measured on the phantoms, cached per weights and dtype,
measured again after the weights change, and harmless to the network."""

from __future__ import annotations

import pytest
import torch

from helpers.networks import seeded_model
from medfuse.engine import precision

CPU = torch.device("cpu")


def test_check_verdict_and_error() -> None:
    model = seeded_model()
    ok, err = precision.reduced_precision_check(model, torch.bfloat16, 1.0, CPU)
    assert ok and 0.0 < err < 1.0
    ok0, err0 = precision.reduced_precision_check(model, torch.bfloat16, 0.0, CPU)
    assert not ok0 and err0 == err


def test_cached_per_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    model = seeded_model(2)
    calls: list[int] = []
    real = precision._phantom_inputs
    monkeypatch.setattr(precision, "_phantom_inputs", lambda d: calls.append(1) or real(d))
    first = precision.reduced_precision_error(model, torch.bfloat16, CPU)
    assert precision.reduced_precision_error(model, torch.bfloat16, CPU) == first
    assert len(calls) == 1
    with torch.no_grad():
        model.decoder1.conv.bias.add_(0.25)
    precision.reduced_precision_error(model, torch.bfloat16, CPU)
    assert len(calls) == 2


def test_check_leaves_the_network_alone() -> None:
    model = seeded_model(3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    precision.reduced_precision_check(model, torch.bfloat16, precision.HALF_TOLERANCE, CPU)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
