"""Recipe files: the shipped ones load and round-trip, ``--set`` wins over the recipe in
every stage (or in one), and a bad file is one line naming the key, exit 2, nothing
written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfuse.cli import app
from medfuse.errors import UsageError
from medfuse.training.recipe import load_recipe, parse_recipe, schema, shipped_recipes

runner = CliRunner()


def test_every_shipped_recipe_loads_and_round_trips() -> None:
    assert {"paper", "v2", "finetune", "medfuse"} <= set(shipped_recipes())
    for name in shipped_recipes():
        r = load_recipe(name)
        again = parse_recipe(r.to_toml(), "written")
        assert [s.values for s in again.resolved()] == [s.values for s in r.resolved()], name
        assert again.fine_tune == r.fine_tune


def test_the_reproduction_recipe_is_the_nine_stage_chain() -> None:
    stages = load_recipe("medfuse").resolved()
    assert [s.name for s in stages] == ["scratch", "binary", "structure", "edges", "edges6",
                                        "display", "edges10", "v2", "studies"]
    assert stages[0].values["train.init"] == "none"
    assert [s.values["train.init"] for s in stages[1:]] == [
        "previous:last", "previous", "previous", "previous", "previous", "previous:last",
        "previous", "previous"]
    assert [s.values["train.seed"] for s in stages] == [0, 1, 3, 4, 5, 6, 7, 0, 2]
    last = stages[-1].values
    assert last["data.studies"] == 200 and last["losses.anchor"] == 20.0
    assert last["train.anchor_weights"] == "init" and last["validation.criterion"] == "last"
    assert stages[3].values["train.stop_after"] == 1105 and stages[3].values["losses.qabf"] == 5.0
    # stage 8 is the shipped v2 recipe's settings (what weights v2 were made with)
    v2 = load_recipe("v2").resolved()[0].values
    for key in ("losses.scd", "losses.lattice", "losses.qabf", "train.lr", "train.steps",
                "train.mask_lr_scale", "validation.criterion", "losses.sparse_target"):
        assert stages[7].values[key] == v2[key], key


def test_set_wins_everywhere_or_in_one_stage() -> None:
    r = load_recipe("medfuse").with_overrides(["losses.qabf=4", "stages.v2.train.lr=1e-5",
                                               "train.init=bundled"])
    stages = r.resolved()
    assert all(s.values["losses.qabf"] == 4.0 for s in stages)  # over every stage's own
    assert stages[7].values["train.lr"] == 1e-5 and stages[6].values["train.lr"] == 1.5e-4
    assert stages[0].values["train.init"] == "bundled"  # the first stage only
    assert stages[1].values["train.init"] == "previous:last"
    # the recipe written to the run folder gives back the same stages
    again = parse_recipe(r.to_toml(), "written").resolved()
    assert [s.values for s in again] == [s.values for s in stages]
    with pytest.raises(UsageError, match="no stage 'nine'"):
        load_recipe("medfuse").with_overrides(["stages.nine.train.lr=1"])


def test_python_callers_get_the_same_overrides_as_the_cli() -> None:
    from medfuse.training.chain import resolve_recipe

    a = resolve_recipe("paper", {"losses.ssim": 3, "train.steps": 5}).resolved()[0].values
    b = resolve_recipe("paper", ["losses.ssim=3", "train.steps=5"]).resolved()[0].values
    assert a == b and a["losses.ssim"] == 3.0 and a["train.steps"] == 5
    with pytest.raises(UsageError, match="give --init"):
        resolve_recipe("v2")


def test_schema_covers_every_loss_term_and_parameter() -> None:
    from medfuse.training.terms import LossWeights

    keys = {k.split(".", 1)[1] for k in schema() if k.startswith("losses.")}
    assert keys == set(LossWeights().to_dict())


@pytest.mark.parametrize(("body", "key", "why"), [
    ("[losses]\nssim = 1.0\nssim_typo = 2.0\n", "losses.ssim_typo", "unknown key"),
    ("[train]\nlr = \"fast\"\n", "train.lr", "must be a number"),
    ("[train]\nsteps = 0\n", "train.steps", "must be at least 1"),
    ("[losses]\nqabf = -1.0\n", "losses.qabf", "must be at least 0"),
    ("[[stages]]\nname = \"a\"\n[stages.train]\nbatch = 2.5\n", "stages.a.train.batch",
     "must be an integer"),
    ("[optimiser]\nlr = 1.0\n", "optimiser", "unknown key"),
    ("[losses]\nsupport_band = [0.9, 0.3]\n", "losses.support_band", "low < high"),
])
def test_a_bad_recipe_file_is_one_line_naming_the_key_and_nothing_is_written(
        tmp_path: Path, body: str, key: str, why: str) -> None:
    recipe = tmp_path / "mine.toml"
    recipe.write_text(body)
    res = runner.invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                              "--recipe", str(recipe)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert key in lines[0] and why in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def test_a_bad_set_is_one_line_too(tmp_path: Path) -> None:
    for item, key in (("losses.nope=1", "losses.nope"), ("train.lr=abc", "train.lr"),
                      ("validation.criterion=val_mi", "validation.criterion"),
                      ("nokey", "KEY=VALUE")):
        res = runner.invoke(app, ["train", "--data", str(tmp_path), "--out",
                                  str(tmp_path / "run"), "--set", item])
        assert res.exit_code == 2 and key in res.output, (item, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "run").exists()


def test_show_recipe_prints_the_recipe_with_the_overrides() -> None:
    res = runner.invoke(app, ["train", "--recipe", "finetune", "--set", "losses.qabf=3",
                              "--steps", "7", "--show-recipe"])
    assert res.exit_code == 0, res.output
    r = parse_recipe(res.output, "shown").resolved()[0].values
    assert r["losses.qabf"] == 3.0 and r["train.steps"] == 7 and r["train.init"] == "bundled"
