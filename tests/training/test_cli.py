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
    code, text = run("train", "--data", data, "--out", tmp_path / "run", "--steps", "4",
                     "--set", "train.stop_after=2", "--set", "validation.before_after=false",
                     "--batch", "2", "--patch", "16", "--device", "cpu")
    assert code == 0, text
    marker = tmp_path / "pwned"
    last = crafted_checkpoint(tmp_path / "run" / "stages" / "01-train" / "last.pt", marker)
    (tmp_path / "run" / "stages" / "01-train" / "summary.json").unlink()  # not done: resumed
    code, text = run("train", "--out", tmp_path / "run", "--resume", "--device", "cpu")
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


def test_old_flags_are_deprecated_aliases_of_recipe_keys_and_explicit_wins(tmp_path: Path) -> None:
    from medfuse.training.recipe import parse_recipe

    init = tmp_path / "init.pt"
    init.write_bytes(b"")
    code, text = run("train", "--recipe", "v2", "--alpha", "3", "--steps", "5", "--init", init,
                     "--support-band", "0.2", "0.8", "--straight-through", "--no-content",
                     "--show-recipe")
    assert code == 0, text
    notes = [ln for ln in text.splitlines() if ln.startswith("note:")]
    assert len(notes) == 4 and "--alpha is deprecated" in notes[0], notes
    assert "--set losses.ssim=3" in notes[0]
    r = parse_recipe("\n".join(ln for ln in text.splitlines() if not ln.startswith("note:")),
                     "shown").resolved()[0].values
    assert r["losses.ssim"] == 3.0 and r["train.steps"] == 5  # given on the command line
    assert r["losses.support_band"] == (0.2, 0.8) and r["losses.content"] == 0.0
    assert r["losses.qabf"] == 10.0 and r["losses.scd"] == 0.5  # the v2 recipe's
    assert r["validation.criterion"] == "val_v2" and r["train.init"] == str(init)
    code, text = run("train", "--recipe", "v9", "--data", tmp_path, "--out", tmp_path / "r3")
    assert code == 2 and "no such recipe" in text, text
    code, text = run("train", "--recipe", "v2", "--data", tmp_path, "--out", tmp_path / "r4")
    assert code == 2 and "give --init" in text and "\n" not in text.strip(), text
    code, text = run("train", "--data", tmp_path, "--out", tmp_path / "r5", "--alpah", "3")
    assert code == 2 and "no such option: --alpah" in text, text
    assert not any((tmp_path / r).exists() for r in ("r3", "r4", "r5"))


def test_train_help_is_short_and_hides_the_old_flags() -> None:
    code, text = run("train", "--help")
    assert code == 0
    options = {w for w in text.split() if w.startswith("--")}
    assert 15 <= len(options) <= 22, sorted(options)
    assert "--recipe" in options and "--set" in options and "--resume" in options
    assert not options & {"--alpha", "--peaks-studies-only", "--lattice-logits", "--anchor"}
