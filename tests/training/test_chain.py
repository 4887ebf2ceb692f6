"""Recipes with stages, run into one folder: a run interrupted anywhere (mid-stage, between
stages, in a later stage) and resumed ends with exactly the bits of an uninterrupted one;
a fine-tune on generated NIfTI study pairs holds out whole studies and writes its
before/after table; the result carries the recipe it was made with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.training import phantom_dataset
from medfuse.errors import UsageError

TWO_STAGES = """
name = "tiny"
[train]
batch = 2
patch = 16
semantic = "none"
[validation]
every = 100
before_after = false
[checkpoint]
every = 2

[[stages]]
name = "first"
[stages.train]
steps = 4
seed = 3

[[stages]]
name = "second"
[stages.train]
init = "previous:last"
steps = 4
straight_through = true
seed = 4
[stages.losses]
qabf = 2.0
mask_support = 1.0
"""


class Killed(Exception):
    """Stands for the process dying in the middle of an optimiser step."""


def _kill_after(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    real = torch.optim.Adam.step
    count = {"n": 0}

    def step(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        count["n"] += 1
        if count["n"] > calls:
            raise Killed
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)


def _same_run(a: Path, b: Path) -> None:
    for stage in ("01-first", "02-second"):
        ca = torch.load(a / "stages" / stage / "last.pt", weights_only=True)
        cb = torch.load(b / "stages" / stage / "last.pt", weights_only=True)
        assert ca["step"] == cb["step"] == 4
        for k, v in ca["model"].items():
            assert torch.equal(v, cb["model"][k]), (stage, k)
        for i, st in ca["optimizer"]["state"].items():
            for key, v in st.items():
                assert torch.equal(v, cb["optimizer"]["state"][i][key]), (stage, i, key)
        assert ca["sampler"] == cb["sampler"] and torch.equal(ca["torch_rng"], cb["torch_rng"])
    wa = torch.load(a / "weights.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "weights.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(v, wb[k]) for k, v in wa.items())


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(data, recipe file, run folder) of the uninterrupted run every case compares with."""
    from medfuse.training.chain import RunOptions, run_recipe

    root = tmp_path_factory.mktemp("straight")
    data = str(phantom_dataset(root / "data", 3, 1))
    recipe = root / "tiny.toml"
    recipe.write_text(TWO_STAGES)
    assert run_recipe(str(recipe), RunOptions(data=data, out=str(root / "a"),
                                              device="cpu"))["complete"]
    return data, recipe, root / "a"


@pytest.mark.parametrize("kill_after", [
    3, 7,
    pytest.param(4, marks=pytest.mark.slow), pytest.param(5, marks=pytest.mark.slow),
], ids=["mid-stage-1", "mid-stage-2", "between-stages", "start-of-stage-2"])
def test_interrupted_and_resumed_equals_straight_through(
        tmp_path: Path, kill_after: int, monkeypatch: pytest.MonkeyPatch,
        straight: tuple[str, Path, Path]) -> None:
    from medfuse.training.chain import RunOptions, run_recipe

    data, recipe, first = straight
    with monkeypatch.context() as m:
        _kill_after(m, kill_after)
        with pytest.raises(Killed):
            run_recipe(str(recipe), RunOptions(data=data, out=str(tmp_path / "b"), device="cpu"))
    assert not (tmp_path / "b" / "weights.pt").exists()
    with pytest.raises(UsageError, match="already holds a run"):
        run_recipe(str(recipe), RunOptions(data=data, out=str(tmp_path / "b"), device="cpu"))
    resumed = run_recipe(None, RunOptions(data=data, out=str(tmp_path / "b"), device="cpu",
                                          resume=True))
    assert resumed["complete"]
    _same_run(first, tmp_path / "b")
    # each step is logged once, even those redone after the interruption
    for stage in ("01-first", "02-second"):
        for run in (first, tmp_path / "b"):
            text = (run / "stages" / stage / "val.csv").read_text()
            assert [ln.split(",")[0] for ln in text.splitlines()[1:]] == ["4"], (run, stage)


def test_resume_refuses_another_recipe_and_a_crafted_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.training import crafted_checkpoint
    from medfuse.errors import WeightsError
    from medfuse.training.chain import RunOptions, run_recipe

    data = str(phantom_dataset(tmp_path / "data", 2, 1))
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TWO_STAGES)
    with monkeypatch.context() as m:
        _kill_after(m, 3)
        with pytest.raises(Killed):
            run_recipe(str(recipe), RunOptions(data=data, out=str(tmp_path / "b"), device="cpu"))
    opts = RunOptions(data=data, out=str(tmp_path / "b"), device="cpu", resume=True)
    with pytest.raises(UsageError, match="another recipe or other --set"):
        run_recipe(str(recipe), opts, ["losses.qabf=9"])
    marker = tmp_path / "pwned"
    crafted_checkpoint(tmp_path / "b" / "stages" / "01-first" / "last.pt", marker)
    with pytest.raises(WeightsError, match="weights_only"):
        run_recipe(None, opts)
    assert not marker.exists()


def test_fine_tune_on_generated_nifti_studies_writes_its_before_after_table(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medfuse.cli import app
    from medfuse.engine import load_model
    from medfuse.training.data import load_studies
    from medfuse.training.studies import write_study_folder

    cohort = write_study_folder(tmp_path / "cohort", 3, "pet", seed=1, resolution=6,
                                anatomy="phantom")
    assert len(list((cohort / "MRI").glob("*.nii.gz"))) == 3
    train, val = load_studies(cohort, holdout=0.34, max_slices=4)
    # whole studies are held out: no study has slices on both sides
    studies = {n.split("/")[1].split("[")[0] for n in train.names}
    held = {n.split("/")[1].split("[")[0] for n in val.names}
    assert len(held) == 1 and len(studies) == 2 and not studies & held
    assert train.mri.shape[1:] == val.mri.shape[1:] and train.mri.shape[1] % 8 == 0
    assert val.chroma is not None and (val.chroma != 0.5).any()  # the PET colour map's chroma
    res = CliRunner().invoke(app, [
        "train", "--recipe", "finetune", "--data", str(cohort), "--out", str(tmp_path / "ft"),
        "--steps", "2", "--val-every", "2", "--checkpoint-every", "2", "--device", "cpu",
        "--set", "train.patch=16", "--set", "train.batch=2", "--set", "data.max_slices=4",
        "--export", str(tmp_path / "mine.pt")])
    assert res.exit_code == 0, res.output
    table = (tmp_path / "ft" / "before_after.md").read_text()
    assert "| all | Qabf |" in table and "gesenet-medfuse.pt" in table
    rows = (tmp_path / "ft" / "before_after.csv").read_text().splitlines()
    assert rows[0] == "task,metric,before,after,change" and len(rows) == 5
    saved = torch.load(tmp_path / "mine.pt", weights_only=True)
    assert 'name = "finetune"' in saved["metadata"]["recipe"]
    assert "steps = 2" in (tmp_path / "ft" / "recipe.toml").read_text()
    load_model(tmp_path / "mine.pt", "cpu")  # the engine reads weights with metadata
