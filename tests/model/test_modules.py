"""The one hard-mask rule and the masks built on it: shapes, errors, hand-computed values,
agreement between the forms, and the straight-through mask's float64 gradient."""

from __future__ import annotations

import pytest
import torch

from medfuse.model.modules import channel_mask_pair, hard_mask, straight_through_mask


@pytest.mark.parametrize(
    "shape,dim,out",
    [((2, 2, 4, 6), 1, (2, 1, 4, 6)), ((32, 4, 2), -1, (32, 4, 1)), ((2,), 0, (1,))],
)
def test_hard_mask_shapes(shape: tuple[int, ...], dim: int, out: tuple[int, ...]) -> None:
    assert hard_mask(torch.randn(shape), dim).shape == out


@pytest.mark.parametrize("shape,dim", [((2, 3, 4), 1), ((5, 1), -1), ((), 0)])
def test_hard_mask_rejects_non_two_class(shape: tuple[int, ...], dim: int) -> None:
    with pytest.raises(ValueError, match="two-class logits"):
        hard_mask(torch.zeros(shape), dim)


def test_hard_mask_hand_computed_ties_go_to_class_0() -> None:
    logits = torch.tensor([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0], [-1e-7, 0.0], [0.0, -0.0]])
    assert hard_mask(logits, dim=-1)[:, 0].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_hard_mask_keeps_dtype(dtype: torch.dtype) -> None:
    assert hard_mask(torch.randn(3, 2, dtype=dtype), dim=1).dtype == dtype


def test_straight_through_forward_is_the_hard_mask() -> None:
    logits = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    assert torch.equal(straight_through_mask(logits, 0.5, dim=1), hard_mask(logits, dim=1))


def test_straight_through_backward_is_softmax_float64() -> None:
    """Backward is softmax(logits / tau)'s, hand-computed; the hard part contributes
    nothing. (torch's gradcheck does not apply: by design the forward is piecewise
    constant, so its finite differences are zero where the estimator's gradient is not.)"""
    torch.manual_seed(0)
    logits = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    straight_through_mask(logits, 0.7, dim=-1).sum().backward()
    assert logits.grad is not None and logits.grad.dtype == torch.float64
    soft = torch.softmax(logits.detach() / 0.7, dim=-1)
    expected = torch.stack([-soft[:, 0] * soft[:, 1], soft[:, 0] * soft[:, 1]], -1) / 0.7
    assert torch.allclose(logits.grad, expected, rtol=0, atol=1e-12)


def test_channel_mask_pair_hard() -> None:
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    dense, sparse = channel_mask_pair(logits, hard=True, tau=0.5)
    assert dense.shape == sparse.shape == (1, 3, 1, 1)
    assert sparse.flatten().tolist() == [1.0, 0.0, 0.0]
    assert torch.equal(dense + sparse, torch.ones_like(dense))
    st_dense, st_sparse = channel_mask_pair(logits, hard=False, tau=0.5, straight_through=True)
    assert torch.equal(st_sparse, sparse)
