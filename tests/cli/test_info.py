"""``medfuse info`` and ``medfuse demo``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.cli import run
from medfuse import __version__
from medfuse.io.images import read_pixels


def test_info(random_weights: Path) -> None:
    r = run("info", "-w", random_weights, "--device", "cpu")
    assert r.code == 0, r.text
    rows = dict(line.split(None, 1) for line in r.out.splitlines() if line.strip()
                and not line.startswith(("cuda", "model ")))
    assert rows["medfuse"].strip() == __version__
    assert "torch" in rows and rows["device"].strip() == "cpu"
    assert rows["weights"].strip() == str(random_weights)
    assert len(rows["sha256"].strip()) == 64


def test_info_without_weights_still_answers(tmp_path: Path) -> None:
    r = run("info", "-w", tmp_path / "none.pt", "--device", "cpu")
    assert r.code == 0, r.text
    assert "weights" in r.out and "none (" in r.out and "not found" in r.out


def test_info_bad_device_is_one_line() -> None:
    r = run("info", "--device", "gpu7")
    assert r.code == 2 and "--device" in r.err and len(r.err_lines()) == 1


def test_demo(tmp_path: Path, mean_engine: None) -> None:
    out = tmp_path / "demo"
    r = run("demo", "-o", out)
    assert r.code == 0, r.text
    assert sorted(p.name for p in out.iterdir()) == ["fused.png", "mri.png", "pet.png"]
    assert f"on cpu: {(out / 'fused.png').resolve()}" in r.out
    assert read_pixels(out / "fused.png")[0].ndim == 3
    r = run("demo", "-o", out)
    assert r.code == 2 and "--force" in r.err
    assert run("demo", "-o", out, "--force", "-q").out == ""


def test_info_names_the_models_folder_even_when_empty(tmp_path: Path, random_weights: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "models"
    monkeypatch.setenv("MEDFUSE_MODELS_DIR", str(folder))
    r = run("info", "-w", random_weights, "-d", "cpu")
    assert r.code == 0, r.text
    assert f"models folder   {folder} (does not exist yet" in r.out
    folder.mkdir()
    assert f"models folder   {folder} (empty" in run("info", "-w", random_weights, "-d", "cpu").out
    (folder / "mine.pt").write_bytes(random_weights.read_bytes())
    r = run("info", "-w", random_weights, "-d", "cpu")
    assert f"{folder} (1 model, for --weights NAME)" in r.out
    assert "model mine" in r.out and str(folder / "mine.pt") in r.out


def test_info_states_the_licence(random_weights: Path) -> None:
    from medfuse.installation import licence

    r = run("info", "-w", random_weights, "-d", "cpu")
    line = next(ln for ln in r.out.splitlines() if ln.startswith("licence"))
    assert licence() in line and licence() == "MIT"


def test_info_json_is_the_same_facts(random_weights: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDFUSE_MODELS_DIR", str(tmp_path))
    r = run("info", "-w", random_weights, "-d", "cpu", "--json")
    assert r.code == 0, r.text
    facts = json.loads(r.out)
    assert facts["medfuse"] == __version__ and facts["device"] == "cpu"
    assert facts["weights"] == str(random_weights) and len(facts["sha256"]) == 64
    assert facts["models_dir"] == str(tmp_path) and facts["models"] == {}
    assert facts["licence"] == "MIT" and facts["device_error"] is None


def test_info_reports_a_missing_gpu_instead_of_failing(random_weights: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = run("info", "-w", random_weights, "-d", "cuda")
    assert r.code == 0, r.text
    device = next(ln for ln in r.out.splitlines() if ln.startswith("device"))
    assert "none (" in device and "CUDA is not available" in device
    facts = json.loads(run("info", "-w", random_weights, "-d", "cuda:1", "--json").out)
    assert facts["device"] is None and "CUDA is not available" in facts["device_error"]
    assert facts["cuda_available"] is False
