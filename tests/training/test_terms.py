"""The loss-term registry is the one list: weights, log columns, the total, the progress
bar, recipe keys and the user guide's table all follow it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from medfuse.training.terms import TERMS, LossWeights, compute_terms, log_columns, progress_text

ROOT = Path(__file__).resolve().parents[2]


def test_loss_weights_have_one_field_per_term_and_parameter() -> None:
    fields = list(LossWeights().to_dict())
    expected = [n for t in TERMS for n in (t.name, *(p.name for p in t.params))]
    assert fields == expected
    assert all(getattr(LossWeights(), t.name) == t.default for t in TERMS)
    assert LossWeights(gamut=2.0).active()[-1] == "gamut"


def test_log_columns_and_progress_cover_every_term() -> None:
    cols = log_columns()
    assert all(c in cols for t in TERMS for c in t.columns)
    row = {c: 0.5 for c in cols}
    text = progress_text(row)
    for name in ("gamut", "anatomy", "anchor", "peaks", "mask_bg"):  # once missing from the bar
        assert f"{name}=0.5000" in text


def test_the_user_guide_lists_every_term_with_its_default() -> None:
    text = (ROOT / "docs" / "training.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)`(?: \(experimental\))? \| ([0-9.]+) \|", text, re.M))
    assert set(rows) == {t.name for t in TERMS}
    assert all(float(rows[t.name]) == t.default for t in TERMS)
    flagged = set(re.findall(r"^\| `([a-z_]+)` \(experimental\)", text, re.M))
    assert flagged == {t.name for t in TERMS if t.experimental}


def test_the_total_is_the_weighted_sum_of_the_registry_terms() -> None:
    from medfuse.model import GeSeNet
    from medfuse.training.terms import Batch

    torch.manual_seed(0)
    model = GeSeNet().train()
    a, b = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    tissue = torch.full((2, 1, 16, 16), 4, dtype=torch.long)  # grey, white, a cold lesion
    tissue[..., 8:] = 5
    tissue[..., 4:12, 0:8] = 10
    b = torch.where(tissue == 10, 0.1 * b, b)
    chroma = torch.full((2, 2, 16, 16), 0.5)
    chroma[:, 1] = 0.8
    w = LossWeights(**{t.name: float(i + 1) for i, t in enumerate(TERMS) if t.name != "semantic"},
                    semantic=0.0)
    out = model.fuse(a, b)
    margins = [model.spatial_margin(br) for br in model.BRANCHES]
    values = compute_terms(Batch(model, out, out.fused, a, b, w, None, None, chroma,
                                 torch.tensor([1.0, 0.0]), out.fused.detach() * 0.9, margins,
                                 tissue))
    weighted = [t for t in TERMS if t.name in values]
    assert {t.name for t in TERMS} - {t.name for t in weighted} == {"semantic"}
    expected = sum(getattr(w, t.name) * values[t.name] for t in weighted)
    assert float(values["total"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert "mask_bg" in values  # logged beside the support prior, not weighted
    assert "step_kept" in values and "lesion_kept" in values
