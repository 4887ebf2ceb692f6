"""The tissue-step and lesion terms on hand-made tensors: zero where the fused luminance
keeps the step, large where it inverts it, a gradient that points the right way, and
nothing where a batch has no tissue map."""

from __future__ import annotations

import pytest
import torch

from medfuse.training.losses import (
    GREY_CODE,
    LESION_CODE,
    WHITE_CODE,
    lesion_loss,
    lesion_rings,
    tissue_step_loss,
)


def _head(n: int = 2, size: int = 48) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Label codes (grey left, white right, a cold 12-pixel lesion in the grey), a T1-like
    MRI (white brighter than grey) and a PET-like luminance (grey hot, the lesion cold)."""
    t = torch.full((n, 1, size, size), GREY_CODE, dtype=torch.long)
    t[..., size // 2 :] = WHITE_CODE
    t[..., 18:30, 4:16] = LESION_CODE
    mri = torch.where(t == WHITE_CODE, 0.85, 0.6)
    pet = torch.where(t == WHITE_CODE, 0.45, 0.8)
    pet = torch.where(t == LESION_CODE, 0.3, pet)
    return t, mri, pet


def test_a_fused_image_equal_to_the_mri_keeps_the_whole_step() -> None:
    t, mri, _ = _head()
    loss, kept = tissue_step_loss(mri, mri, t)
    assert float(loss) == 0.0 and float(kept) == pytest.approx(1.0)
    bigger = tissue_step_loss(torch.where(t == WHITE_CODE, 0.95, 0.5), mri, t)
    assert float(bigger[0]) == 0.0 and float(bigger[1]) > 1.0  # one-sided: more is free


def test_a_flat_or_inverted_step_costs_one_or_two() -> None:
    t, mri, pet = _head()
    flat = tissue_step_loss(torch.full_like(mri, 0.7), mri, t)
    assert float(flat[0]) == pytest.approx(1.0)
    inverted = tissue_step_loss(1.0 - mri, mri, t)
    assert float(inverted[0]) == pytest.approx(2.0) and float(inverted[1]) == pytest.approx(-1.0)
    # the PET's luminance runs against the T1's: what the term is there to catch
    assert float(tissue_step_loss(pet, mri, t)[0]) > 1.5


def test_the_step_gradient_brightens_white_and_darkens_grey() -> None:
    t, mri, _ = _head()
    f = torch.full_like(mri, 0.7).requires_grad_(True)
    loss, _ = tissue_step_loss(f, mri, t)
    loss.backward()
    assert f.grad is not None
    assert float(f.grad[t == WHITE_CODE].max()) < 0 and float(f.grad[t == GREY_CODE].min()) > 0


def test_patches_without_both_tissues_are_left_out() -> None:
    t, mri, _ = _head()
    assert tissue_step_loss(mri, mri, torch.zeros_like(t)) is None  # atlas pairs: no map
    only_grey = torch.full_like(t, GREY_CODE)
    assert tissue_step_loss(mri, mri, only_grey) is None


def test_lesion_rings_are_the_eroded_lesion_and_the_brain_around_it() -> None:
    t, _, _ = _head(1)
    core, shell = lesion_rings(t, LESION_CODE)
    assert float(core.sum()) == 8 * 8  # 12 x 12 eroded by 2 on each side
    assert bool((shell * (t == LESION_CODE)).sum() == 0)
    assert float(shell.sum()) > 100


def test_a_cold_lesion_kept_costs_nothing_and_one_filled_in_costs_one() -> None:
    t, _, pet = _head()
    loss, kept = lesion_loss(pet, pet, t)
    assert float(loss) == 0.0 and float(kept) == pytest.approx(1.0)
    _, shell = lesion_rings(t, LESION_CODE)
    surround = float((pet * shell).sum() / shell.sum())
    filled = torch.where(t == LESION_CODE, surround, pet)  # the lesion takes its surround's value
    assert float(lesion_loss(filled, pet, t)[0]) == pytest.approx(1.0, abs=1e-5)
    reversed_ = torch.where(t == LESION_CODE, 0.95, pet)  # a cold lesion shown hot
    loss, kept = lesion_loss(reversed_, pet, t)
    assert float(kept) < 0 and float(loss) > 1.0


def test_the_lesion_gradient_darkens_a_cold_core() -> None:
    t, _, pet = _head()
    f = torch.where(t == LESION_CODE, 0.7, pet).requires_grad_(True)
    loss, _ = lesion_loss(f, pet, t)
    loss.backward()
    assert f.grad is not None and float(f.grad[t == LESION_CODE].sum()) > 0


def test_no_lesion_in_the_batch_gives_no_term() -> None:
    t, mri, pet = _head()
    assert lesion_loss(pet, pet, torch.where(t == LESION_CODE, GREY_CODE, t)) is None


def test_the_label_codes_are_the_generated_studies_own() -> None:
    from medfuse.studies.anatomy import TISSUES
    from medfuse.studies.generate import LESION_LABEL
    from medfuse.training.losses import CSF_CODE

    assert LESION_CODE == LESION_LABEL
    assert [TISSUES[c] for c in (CSF_CODE, GREY_CODE, WHITE_CODE)] == ["csf", "gm", "wm"]
