"""Generated-study training pairs: the shape load_split gives, deterministic by seed, and
usable by a training run beside dataset pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.training import phantom_dataset
from medfuse.errors import UsageError


@pytest.fixture(scope="module")
def pairs():  # noqa: ANN201
    from medfuse.training.studies import study_pairs

    return study_pairs(5, seed=3, size=64)


def test_study_pairs_look_like_dataset_pairs(pairs) -> None:  # noqa: ANN001
    assert pairs.mri.shape == pairs.other.shape == pairs.labels.shape == (5, 64, 64)
    assert pairs.chroma is not None and pairs.chroma.shape == (5, 2, 64, 64)
    for x in (pairs.mri, pairs.other, pairs.chroma):
        assert x.dtype == np.float32 and np.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
    assert pairs.tasks == ["STUDY_PET"] * 3 + ["STUDY_SPECT"] * 2
    assert len(set(pairs.names)) == 5
    # a bright functional image: inside the head the windowed uptake is far from black
    head = pairs.mri > 0.1
    assert pairs.other[head].mean() > 0.1
    # coloured: the chroma is not neutral everywhere
    assert np.abs(pairs.chroma - 0.5).max() > 0.05


def test_study_pairs_carry_tissue_labels_aligned_with_the_mri(pairs) -> None:  # noqa: ANN001
    from medfuse.training.losses import GREY_CODE, WHITE_CODE

    assert pairs.tissue is not None and pairs.tissue.shape == (5, 64, 64)
    assert pairs.tissue.dtype == np.uint8
    codes = set(np.unique(pairs.tissue).tolist())
    assert {GREY_CODE, WHITE_CODE} <= codes and codes <= {0, 1, 2, 3, 4, 5, 10, 11}
    # on the MRI's own grid: the T1's white matter is brighter than its grey matter
    grey, white = pairs.tissue == GREY_CODE, pairs.tissue == WHITE_CODE
    assert pairs.mri[white].mean() > pairs.mri[grey].mean() + 0.05


@pytest.mark.slow  # generates the studies twice more
def test_study_pairs_are_deterministic_by_seed(pairs) -> None:  # noqa: ANN001
    from medfuse.training.studies import study_pairs

    again = study_pairs(5, seed=3, size=64)
    assert again.names == pairs.names
    np.testing.assert_array_equal(again.other, pairs.other)
    other = study_pairs(5, seed=4, size=64)
    assert other.names != pairs.names


def test_concat_needs_one_size(pairs, tmp_path: Path) -> None:  # noqa: ANN001
    from medfuse.training.data import load_split
    from medfuse.training.studies import concat

    data = load_split(phantom_dataset(tmp_path, n_train=2, size=32), "train")
    with pytest.raises(UsageError, match="one size"):
        concat(data, pairs)
    both = concat(load_split(phantom_dataset(tmp_path / "b", n_train=2, size=64), "train"), pairs)
    assert len(both) == 7 and both.tasks[-1] == "STUDY_SPECT" and both.chroma.shape[0] == 7
    assert both.tissue is not None and not both.tissue[:2].any()  # atlas pairs: no labels
    np.testing.assert_array_equal(both.tissue[2:], pairs.tissue)


def test_a_run_trains_on_dataset_and_study_pairs(tmp_path: Path) -> None:
    from medfuse.training.trainer import TrainConfig, train

    data = phantom_dataset(tmp_path / "data", n_train=2, n_val=1, size=64)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=2, batch=2, patch=16,
                      checkpoint_every=2, val_every=2, device="cpu", studies=2)
    summary = train(cfg)
    assert summary["steps"] == 2
    assert '"studies": 2' in (tmp_path / "run" / "config.json").read_text()


def test_the_study_terms_score_study_slices_and_train_the_network(pairs) -> None:  # noqa: ANN001
    import torch

    from medfuse.model import GeSeNet
    from medfuse.training.losses import LossWeights
    from medfuse.training.trainer import loss_terms

    torch.manual_seed(0)
    model = GeSeNet().train()
    a = torch.from_numpy(pairs.mri).unsqueeze(1)
    b = torch.from_numpy(pairs.other).unsqueeze(1)
    tissue = torch.from_numpy(pairs.tissue.astype(np.int64)).unsqueeze(1)
    w = LossWeights(semantic=0.0, tissue_step=1.0, lesion=1.0)
    terms = loss_terms(model, a, b, None, w, None, torch.from_numpy(pairs.chroma),
                       torch.ones(len(pairs)), tissue=tissue)
    assert torch.isfinite(terms["tissue_step"]) and torch.isfinite(terms["step_kept"])
    terms["tissue_step"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
