"""``medfuse info`` and ``medfuse demo``."""

from __future__ import annotations

from pathlib import Path

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
