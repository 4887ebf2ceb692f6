"""``medfuse train`` and ``train-semantic`` in-process (Typer's CliRunner): one error line
and an exit code for refused inputs and outputs, nothing run from a crafted checkpoint."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from helpers.training import crafted_checkpoint, phantom_dataset
from medfuse.cli import app

runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_resume_refuses_a_crafted_checkpoint_in_one_line(tmp_path: Path) -> None:
    data = phantom_dataset(tmp_path / "data", 2, 1)
    marker = tmp_path / "pwned"
    last = crafted_checkpoint(tmp_path / "run" / "last.pt", marker)
    code, text = run("train", "--data", data, "--out", tmp_path / "run", "--resume",
                     "--steps", "2", "--batch", "2", "--patch", "16", "--device", "cpu")
    assert code == 1, text
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(last) in lines[0] and "weights_only" in lines[0]
    assert "\x1b" not in text and "Traceback" not in text
    assert not marker.exists()


def test_train_refuses_outputs_before_training(tmp_path: Path) -> None:
    data = phantom_dataset(tmp_path / "data", 2, 1)
    existing = tmp_path / "w.pt"
    existing.write_bytes(b"keep")
    code, text = run("train", "--data", data, "--out", tmp_path / "run", "--export", existing,
                     "--steps", "1", "--device", "cpu")
    assert code == 2 and "exists (use --force" in text, text
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    code, text = run("train", "--data", data, "--out", tmp_path / "run", "--steps", "1",
                     "--device", "cpu")
    assert code == 2 and "already holds a run" in text, text


def test_train_semantic_refuses_an_existing_output(tmp_path: Path) -> None:
    data = phantom_dataset(tmp_path / "data", 2, 1)
    (tmp_path / "sem").mkdir()
    (tmp_path / "sem" / "semantic.pt").write_bytes(b"keep")
    code, text = run("train-semantic", "--data", data, "--out", tmp_path / "sem", "--steps", "1",
                     "--device", "cpu")
    assert code == 2 and "semantic.pt exists (use --force" in text, text
    assert (tmp_path / "sem" / "semantic.pt").read_bytes() == b"keep"


def test_recipe_sets_defaults_and_explicit_options_win(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import medfuse.training.trainer as tr

    seen = {}

    def fake(cfg, **kw):  # noqa: ANN001, ANN003, ANN202
        seen["cfg"] = cfg
        return {"steps": 0, "best_step": 0, "best_score": 0.0}

    monkeypatch.setattr(tr, "train", fake)
    init = tmp_path / "init.pt"
    code, text = run("train", "--data", tmp_path, "--out", tmp_path / "r", "--recipe", "v2",
                     "--alpha", "3", "--steps", "5", "--init", init)
    assert code == 0, text
    cfg = seen["cfg"]
    v2 = tr.RECIPES["v2"]
    assert cfg.weights.ssim == 3.0 and cfg.steps == 5  # given on the command line
    assert cfg.weights.qabf == v2["qabf_weight"] and cfg.weights.scd == v2["scd"]
    assert cfg.weights.channel_sparsity == v2["channel_sparsity"] and cfg.straight_through
    assert cfg.criterion == "val_v2" and cfg.recipe == "v2" and cfg.display_luma
    assert cfg.weights.lattice == v2["lattice"] > 0 and cfg.weights.lattice_logits == 0
    assert cfg.mask_lr_scale == v2["mask_lr_scale"] and cfg.lr == v2["lr"]
    assert cfg.init == str(init)
    assert cfg.semantic is not None and cfg.semantic.endswith("semantic-medfuse.pt")
    code, text = run("train", "--data", tmp_path, "--out", tmp_path / "r2", "--steps", "5")
    assert code == 0 and seen["cfg"].weights.scd == 0.0 and seen["cfg"].recipe is None
    code, text = run("train", "--data", tmp_path, "--out", tmp_path / "r3", "--recipe", "v9")
    assert code == 2 and "unknown recipe" in text, text
    code, text = run("train", "--data", tmp_path, "--out", tmp_path / "r4", "--recipe", "v2")
    assert code == 2 and "give --init" in text and "\n" not in text.strip(), text
