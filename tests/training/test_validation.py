"""Validation scores what a user gets, and the best checkpoint needs meaningful masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.training import phantom_dataset


def test_selection_prefers_meaningful_masks() -> None:
    from medfuse.training.validation import selection_score

    good = {"val_qabf": 0.5, "principal_mri": 0.4, "principal_functional": 0.6}
    degenerate = {"val_qabf": 0.7, "principal_mri": 0.25, "principal_functional": 1.0}
    assert selection_score(good) > selection_score(degenerate)
    tied = dict(good, val_qabf=0.7, tied_functional=0.6)  # a dead generator's rounding mask
    assert selection_score(good) > selection_score(tied)
    assert selection_score(dict(good, tied_mri=0.01, tied_functional=0.0)) == selection_score(good)


def test_last_takes_the_latest_meaningful_validation() -> None:
    """``last`` ranks by step whatever the scores, and a later validation with degenerate
    masks still ranks below every meaningful one."""
    from medfuse.training.validation import selection_score

    good = {"val_qabf": 0.7, "principal_mri": 0.4, "principal_functional": 0.6}
    worse = dict(good, val_qabf=0.5)
    degenerate = dict(good, principal_functional=1.0)
    assert selection_score(worse, "last", 1000) > selection_score(good, "last", 500)
    assert selection_score(good, "last", 500) > selection_score(degenerate, "last", 100000)


def test_validation_reports_tied_masks(tmp_path: Path) -> None:
    """A mask generator whose last layer is zero with equal biases ties everywhere: the
    validation reports the whole anatomy tied, and the ordinary network almost none."""
    from medfuse.model import GeSeNet
    from medfuse.training.data import load_split
    from medfuse.training.validation import validate

    torch.manual_seed(0)
    val = load_split(phantom_dataset(tmp_path, n_train=1, n_val=2), "val")
    model = GeSeNet().eval()
    res = validate(model, val, torch.device("cpu"))
    assert res["tied_mri"] < 0.05 and res["tied_functional"] < 0.05
    with torch.no_grad():
        up = model.vis_rmm.spa_mask[5]
        up.weight.zero_()
        up.bias.fill_(-0.2)
    res = validate(model, val, torch.device("cpu"))
    assert res["tied_functional"] == pytest.approx(1.0) and res["tied_mri"] < 0.05


def test_validation_columns_keep_the_harvard_header() -> None:
    from medfuse.training.validation import validation_columns

    cols = validation_columns(["MRI_PET"])
    assert cols[:6] == ["step", "val_qabf", "val_ssim", "val_mef_ssim", "principal_mri",
                        "principal_functional"]
    i = cols.index("qabf_MRI_CT")
    assert cols[i:i + 3] == ["qabf_MRI_CT", "qabf_MRI_PET", "qabf_MRI_SPECT"] and cols[-1] == "best"
    assert "ssim_extra" in validation_columns(["extra"])


def test_validation_scores_the_written_colour_image(tmp_path: Path) -> None:
    """validate() gives eval's numbers: the fused luminance coloured by the chroma rule,
    written to 8 bits, scored by compute_metrics_colour."""
    from medfuse.colour import TAU, fuse_colour
    from medfuse.io.images import to_uint
    from medfuse.metrics import compute_metrics_colour
    from medfuse.model import GeSeNet
    from medfuse.training.data import as_batch, load_split
    from medfuse.training.validation import validate

    torch.manual_seed(0)
    val = load_split(phantom_dataset(tmp_path, n_train=1, n_val=2), "val")
    assert not np.all(val.chroma == TAU)  # the phantom PET is coloured
    model = GeSeNet().eval()
    res = validate(model, val, torch.device("cpu"))
    with torch.no_grad():
        fused = model.fuse(as_batch(val.mri, torch.device("cpu")), as_batch(val.other, torch.device("cpu"))).fused
    want = []
    for k in range(len(val)):
        n = np.full_like(val.mri[k], TAU)
        rgb = fuse_colour(fused[k, 0].numpy(), [(n, n), (val.chroma[k, 0], val.chroma[k, 1])])
        want.append(compute_metrics_colour(val.mri[k] * 255, val.other[k] * 255,
                                           to_uint(rgb, 8).astype(np.float64), "standard", ["Qabf"])["Qabf"])
    assert res["qabf_MRI_PET"] == pytest.approx(float(np.mean(want)), abs=1e-9)
