"""GeSeNet's training loop: losses fall, a tiny run checkpoints, resumes bit-exactly and
exports, the run folder and the export follow the output policy, and a checkpoint that
would run code is refused before it runs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.training import crafted_checkpoint, phantom_dataset
from medfuse.errors import UsageError, WeightsError
from medfuse.training.losses import LossWeights


@pytest.mark.slow
def test_loss_falls_on_synthetic_pairs(tmp_path: Path) -> None:
    from medfuse.model import GeSeNet
    from medfuse.training.data import PatchSampler, load_split
    from medfuse.training.trainer import loss_terms

    torch.manual_seed(0)
    data = load_split(phantom_dataset(tmp_path), "train")
    a, b, lab = PatchSampler(data, patch=16, stride=8, seed=0).sample(8)
    at, bt = torch.from_numpy(a.copy()).unsqueeze(1), torch.from_numpy(b.copy()).unsqueeze(1)
    model = GeSeNet().train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    w = LossWeights(semantic=0.0)
    losses = []
    for _ in range(30):
        total = loss_terms(model, at, bt, None, w, None)["total"]
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


@pytest.mark.slow
def test_tiny_run_checkpoint_resume_export(tmp_path: Path) -> None:
    from medfuse.engine import load_model
    from medfuse.training.semantic import train_semantic
    from medfuse.training.trainer import TrainConfig, export_best, train

    data = phantom_dataset(tmp_path / "data")
    sem = train_semantic(data, tmp_path / "sem", steps=20, batch=2, patch=16, device="cpu")
    assert 0 <= sem["val_pixel_accuracy"] <= 1
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=6, batch=2, patch=16,
                      checkpoint_every=3, val_every=3, device="cpu",
                      semantic=str(tmp_path / "sem" / "semantic.pt"))
    cfg.weights.compute_target = 0.75
    s1 = train(cfg)
    assert s1["steps"] == 6 and (tmp_path / "run" / "best.pt").is_file()
    with open(tmp_path / "run" / "val.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert 0 <= float(rows[-1]["principal_mri"]) <= 1
    cfg.steps = 9
    s2 = train(cfg, resume=True)
    assert s2["steps"] == 9
    with pytest.raises(Exception, match="already holds a run"):
        train(cfg)
    bad = TrainConfig(data=str(data), out=str(tmp_path / "bad"), steps=1, criterion="val_mi")
    with pytest.raises(UsageError, match="unknown selection criterion"):
        train(bad)
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    stage2 = TrainConfig(data=str(data), out=str(tmp_path / "st"), steps=3, batch=2, patch=16,
                         val_every=3, device="cpu", straight_through=True, display_luma=True,
                         criterion="val_qabf+ssim", init=str(tmp_path / "run" / "last.pt"),
                         weights=LossWeights(mef_ssim=1.0, mask_support=1.0, compute_target=0.75))
    assert train(stage2)["steps"] == 3
    rows = list(csv.DictReader(open(tmp_path / "st" / "log.csv")))
    assert float(rows[-1]["mef_ssim"]) > 0 and rows[-1]["mask_support"] != ""
    dest = export_best(tmp_path / "run", tmp_path / "w.pt")
    eng = load_model(dest, "cpu")
    f, _, _ = eng.fuse_luminance(np.zeros((16, 16), np.float32), np.ones((16, 16), np.float32))
    assert np.isfinite(f).all()
    # Every file the run wrote loads without unpickling code.
    for name in ("last.pt", "best.pt"):
        torch.load(tmp_path / "run" / name, weights_only=True)
    torch.load(dest, weights_only=True)


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    """Six steps straight equal three steps, a resume (weights_only loading), and three
    more: identical weights and optimiser moments, not merely close ones."""
    from medfuse.training.trainer import TrainConfig, train

    data = phantom_dataset(tmp_path / "data", 3, 1)
    common = dict(data=str(data), batch=2, patch=16, checkpoint_every=3, val_every=100,
                  device="cpu", seed=5)
    train(TrainConfig(out=str(tmp_path / "a"), steps=6, **common))  # type: ignore[arg-type]
    cfg = TrainConfig(out=str(tmp_path / "b"), steps=6, stop_after=3, **common)  # type: ignore[arg-type]
    assert train(cfg)["steps"] == 3
    cfg.stop_after = None
    assert train(cfg, resume=True)["steps"] == 6
    ca = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    cb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    sa, sb = ca["model"], cb["model"]
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=1e-6), k
        assert torch.equal(sa[k], sb[k]), k
    for i, st in ca["optimizer"]["state"].items():
        for key, v in st.items():
            assert torch.equal(v, cb["optimizer"]["state"][i][key]), (i, key)
    assert ca["sampler"] == cb["sampler"]
    assert torch.equal(ca["torch_rng"], cb["torch_rng"])


def test_resume_refuses_a_checkpoint_that_runs_code(tmp_path: Path) -> None:
    """A last.pt whose unpickling would create a file is refused with one line naming it;
    the file is never created."""
    from medfuse.training.trainer import TrainConfig, train

    data = phantom_dataset(tmp_path / "data", 2, 1)
    marker = tmp_path / "pwned"
    last = crafted_checkpoint(tmp_path / "run" / "last.pt", marker)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=2, batch=2, patch=16,
                      device="cpu")
    with pytest.raises(WeightsError) as err:
        train(cfg, resume=True)
    msg = str(err.value)
    assert str(last) in msg and "weights_only" in msg
    assert "\n" not in msg and "\x1b" not in msg
    assert not marker.exists()


def test_init_and_semantic_refuse_files_that_run_code(tmp_path: Path) -> None:
    from medfuse.training.semantic import load_semantic
    from medfuse.training.trainer import TrainConfig, train

    data = phantom_dataset(tmp_path / "data", 2, 1)
    marker = tmp_path / "pwned"
    bad = crafted_checkpoint(tmp_path / "bad.pt", marker)
    with pytest.raises(WeightsError, match="bad.pt"):
        load_semantic(bad, torch.device("cpu"))
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=1, batch=2, patch=16,
                      device="cpu", init=str(bad))
    with pytest.raises(WeightsError, match="bad.pt"):
        train(cfg)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run2"), steps=1, batch=2, patch=16,
                      device="cpu", semantic=str(bad))
    with pytest.raises(WeightsError, match="bad.pt"):
        train(cfg)
    assert not marker.exists()
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing written for a bad input


def test_export_refuses_a_best_checkpoint_that_runs_code(tmp_path: Path) -> None:
    from medfuse.training.trainer import export_best

    marker = tmp_path / "pwned"
    crafted_checkpoint(tmp_path / "run" / "best.pt", marker)
    with pytest.raises(WeightsError, match="best.pt"):
        export_best(tmp_path / "run", tmp_path / "w.pt")
    assert not marker.exists() and not (tmp_path / "w.pt").exists()


def test_run_folder_and_export_follow_the_output_policy(tmp_path: Path) -> None:
    """--export refuses an existing file without force and an input even with it; a run
    folder is started over only with force, which replaces the run's files and nothing
    else; all of it is refused before training starts."""
    from medfuse.training.trainer import TrainConfig, train

    data = phantom_dataset(tmp_path / "data", 2, 1)
    run = tmp_path / "run"
    common = dict(data=str(data), out=str(run), steps=1, batch=2, patch=16, val_every=100,
                  device="cpu")
    existing = tmp_path / "w.pt"
    existing.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="exists"):
        train(TrainConfig(**common), export=existing)  # type: ignore[arg-type]
    assert existing.read_bytes() == b"keep me" and not run.exists()
    with pytest.raises(UsageError, match="inside input folder"):
        train(TrainConfig(**common), export=data / "w.pt")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="inside input folder"):
        train(TrainConfig(**{**common, "out": str(data / "run")}))  # type: ignore[arg-type]
    s = train(TrainConfig(**common), export=run / "weights.pt")  # type: ignore[arg-type]
    assert Path(s["export"]).is_file()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already holds a run"):
        train(TrainConfig(**common))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="overwrite input"):
        train(TrainConfig(**common), force=True, export=run / "best.pt")  # type: ignore[arg-type]
    init = TrainConfig(**{**common, "init": str(run / "best.pt")})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="overwrite input"):
        train(init, force=True)  # starting over would delete the weights it starts from
    log_rows = len((run / "log.csv").read_text().splitlines())
    s = train(TrainConfig(**{**common, "steps": 2}), force=True,  # type: ignore[arg-type]
              export=run / "weights.pt")
    assert s["steps"] == 2
    assert len((run / "log.csv").read_text().splitlines()) == log_rows  # fresh, not appended
    assert (run / "notes.txt").read_text() == "mine"
    assert not list(run.glob(".medfuse-*"))  # no staging left-overs


def test_straight_through_masks_are_binary_in_training() -> None:
    from medfuse.model import GeSeNet

    torch.manual_seed(0)
    m = GeSeNet().train()
    m.set_straight_through(True)
    a, b = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    out = m.fuse(a, b)
    assert set(torch.unique(out.mask_mri).tolist()) <= {0.0, 1.0}
    with torch.no_grad():  # training sees exactly the masks and output inference gives
        ref = m.eval().fuse(a, b)
    m.train()
    assert torch.equal(out.mask_mri, ref.mask_mri)
    assert torch.equal(out.mask_functional, ref.mask_functional)
    assert torch.allclose(out.fused, ref.fused, atol=1e-6)
    out.fused.mean().backward()  # gradients still reach the mask logits
    assert m.inf_rmm.spa_mask[5].weight.grad is not None
    assert m.inf_rmm.body.ch_mask.grad is not None


def test_v2_terms_in_loss_terms_reach_the_mask_logits() -> None:
    from medfuse.model import GeSeNet
    from medfuse.training.trainer import loss_terms

    torch.manual_seed(1)
    m = GeSeNet().train()
    m.set_straight_through(True)
    a = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 18, 18), 3, 1)
    b = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 18, 18), 3, 1)
    w = LossWeights(semantic=0.0, mask_support=1.0, scd=1.0, intensity=1.0, contrast=1.0,
                    lattice=1.0, lattice_logits=1.0, channel_sparsity=1.0, sparse_target=0.5)
    terms = loss_terms(m, a, b, None, w, None)
    for k in ("scd", "intensity", "contrast", "lattice", "lattice_logits", "channel_sparsity"):
        assert k in terms and torch.isfinite(terms[k]), k
    terms["total"].backward()
    assert float(m.inf_rmm.body.ch_mask.grad.abs().sum()) > 0  # channel-sparsity hinge
    assert float(m.vis_rmm.spa_mask[5].weight.grad.abs().sum()) > 0  # lattice and prior
    off = loss_terms(m, a, b, None, LossWeights(semantic=0.0), None)
    assert not {"scd", "intensity", "contrast", "lattice", "lattice_logits", "channel_sparsity"} & set(off)


def test_peaks_studies_only_scores_only_the_study_pairs_of_a_batch() -> None:
    """With ``peaks_studies_only`` the peaks term sees only the pairs flagged as generated
    studies: a batch of atlas pairs scores 0, one study pair in it scores as that pair
    alone does, and without the switch the flags change nothing."""
    from medfuse.model import GeSeNet
    from medfuse.training.trainer import loss_terms

    torch.manual_seed(2)
    m = GeSeNet().eval()
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    blob = torch.exp(-((yy - 12) ** 2 + (xx - 12) ** 2) / 8.0)
    a = torch.full((2, 1, 24, 24), 0.3)
    b = torch.stack([0.2 + 0.6 * blob, 0.2 + 0.3 * blob]).unsqueeze(1)  # two hot lesions
    w = LossWeights(semantic=0.0, peaks=1.0, peaks_studies_only=True)
    with torch.no_grad():
        none = loss_terms(m, a, b, None, w, None, studies=torch.tensor([0.0, 0.0]))["peaks"]
        second = loss_terms(m, a, b, None, w, None, studies=torch.tensor([0.0, 1.0]))["peaks"]
        alone = loss_terms(m, a[1:], b[1:], None, w, None, studies=torch.tensor([1.0]))["peaks"]
        both = loss_terms(m, a, b, None, LossWeights(semantic=0.0, peaks=1.0), None,
                          studies=torch.tensor([0.0, 0.0]))["peaks"]
    assert float(none) == 0.0
    assert float(second) > 0.0 and float(second) == pytest.approx(float(alone), rel=1e-5)
    assert float(both) > 0.0


def test_anchor_holds_the_atlas_pairs_only() -> None:
    """The anchor term compares F with the anchor model's output on the atlas pairs of a
    batch (study pairs are free to move); a model anchored to itself scores 0."""
    from medfuse.model import GeSeNet
    from medfuse.training.trainer import loss_terms

    torch.manual_seed(4)
    m = GeSeNet().eval()
    a, b = torch.rand(2, 1, 24, 24), torch.rand(2, 1, 24, 24)
    w = LossWeights(semantic=0.0, anchor=1.0)
    with torch.no_grad():
        own = m.fuse(a, b).fused
        moved = own.clone()
        moved[1] += 0.25  # the anchor differs on the second pair only
        same = loss_terms(m, a, b, None, w, None, anchor=own)["anchor"]
        atlas2 = loss_terms(m, a, b, None, w, None, studies=torch.tensor([1.0, 0.0]), anchor=moved)
        study2 = loss_terms(m, a, b, None, w, None, studies=torch.tensor([0.0, 1.0]), anchor=moved)
        off = loss_terms(m, a, b, None, LossWeights(semantic=0.0), None, anchor=moved)
    assert float(same) == pytest.approx(0.0, abs=1e-7)
    assert float(atlas2["anchor"]) == pytest.approx(0.25, abs=1e-5)
    assert float(study2["anchor"]) == pytest.approx(0.0, abs=1e-6)
    assert "anchor" not in off
    assert float(atlas2["total"]) > float(study2["total"])


def test_anchor_needs_weights_and_refuses_files_that_run_code(tmp_path: Path) -> None:
    from medfuse.training.trainer import TrainConfig, check_config, train

    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), weights=LossWeights(anchor=1.0))
    with pytest.raises(UsageError, match="losses.anchor needs train.anchor_weights"):
        check_config(cfg)
    cfg.anchor_weights = str(tmp_path / "missing.pt")
    with pytest.raises(UsageError, match="missing.pt"):
        check_config(cfg)
    data = phantom_dataset(tmp_path / "data", 2, 1)
    marker = tmp_path / "pwned"
    bad = crafted_checkpoint(tmp_path / "bad.pt", marker)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=1, batch=2, patch=16,
                      device="cpu", anchor_weights=str(bad), weights=LossWeights(anchor=1.0))
    with pytest.raises(WeightsError, match="bad.pt"):
        train(cfg)
    assert not marker.exists()


@pytest.mark.slow
def test_a_run_anchored_to_its_own_init_starts_at_zero(tmp_path: Path) -> None:
    """--init and --anchor-weights the same file, inference masks in training: the first
    logged anchor value is the drift of a few steps, far below the content term."""
    from medfuse.model import GeSeNet
    from medfuse.training.trainer import TrainConfig, train

    data = phantom_dataset(tmp_path / "data")
    torch.manual_seed(0)
    init = tmp_path / "init.pt"
    torch.save(GeSeNet().state_dict(), init)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=50, batch=2, patch=16,
                      val_every=50, checkpoint_every=50, device="cpu", init=str(init),
                      anchor_weights=str(init), straight_through=True, lr=1e-5,
                      weights=LossWeights(semantic=0.0, anchor=1.0))
    train(cfg)
    with open(tmp_path / "run" / "log.csv") as fh:
        row = list(csv.DictReader(fh))[0]
    assert 0.0 <= float(row["anchor"]) < 0.1 * float(row["content"])


def test_peaks_studies_only_needs_studies(tmp_path: Path) -> None:
    from medfuse.training.trainer import TrainConfig, check_config

    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"),
                      weights=LossWeights(peaks=1.0, peaks_studies_only=True))
    with pytest.raises(UsageError, match="data.studies"):
        check_config(cfg)
    cfg.studies = 4
    check_config(cfg)


def test_mask_lr_scale_puts_the_channel_logits_in_their_own_group() -> None:
    from medfuse.model import GeSeNet
    from medfuse.training.trainer import _param_groups

    m = GeSeNet()
    one = _param_groups(m, 1e-3, 1.0)
    assert len(one) == 1 and [id(p) for p in one[0]["params"]] == [id(p) for p in m.parameters()]
    two = _param_groups(m, 1e-3, 30.0)
    assert two[1]["lr"] == pytest.approx(3e-2)
    assert {id(p) for p in two[1]["params"]} == {id(m.channel_mask_logits(b)) for b in m.BRANCHES}
    assert len(two[0]["params"]) + 2 == len(list(m.parameters()))


def test_fitted_schedule() -> None:
    from medfuse.training.trainer import fitted_schedule

    # 40 steps done, 10 steps/s, 200 s left, validations of 5 s: 7 reserved -> 165 s,
    # 95 % of it -> 1567 more steps
    steps, every = fitted_schedule(40, 10.0, 200.0, 5.0, validations=6)
    assert steps == 40 + int(165 * 0.95 * 10) and every == steps // 6
    assert fitted_schedule(40, 10.0, 10.0, 5.0)[0] == 41  # no time left: stop next step


@pytest.mark.slow
def test_fit_steps_sets_the_schedule_and_resume_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import medfuse.training.trainer as tr

    monkeypatch.setattr(tr, "FIT_WARMUP", 4)
    monkeypatch.setattr(tr, "FIT_SKIP", 1)
    data = phantom_dataset(tmp_path / "data", 3, 1)
    cfg = tr.TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=100000, batch=2,
                         patch=16, device="cpu", max_minutes=0.05, fit_steps=True,
                         weights=LossWeights(semantic=0.0, lattice=1.0, channel_sparsity=1.0))
    summary = tr.train(cfg)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert 4 < saved["steps"] < 100000 and saved["val_every"] >= 1
    assert summary["steps"] <= saved["steps"]
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["config"]["steps"] == saved["steps"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "val.csv")))
    assert int(rows[0]["step"]) == 4  # the validation that timed the fit
    again = tr.TrainConfig(**{**cfg.__dict__, "steps": 100000, "max_minutes": 1e-9})
    tr.train(again, resume=True)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["steps"] == saved["steps"]
