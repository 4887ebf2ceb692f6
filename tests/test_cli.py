"""The core commands in-process (Typer's CliRunner): fuse, batch, masks, demo, info."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medfuse.cli import app
from medfuse.io.images import read_image, write_image
from medfuse.phantom import brain_phantom

runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_help_does_not_import_torch() -> None:
    code = "import sys; from medfuse.cli import app; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fuse_writes_image(tmp_path: Path, pair_files: tuple[Path, Path], random_weights: Path) -> None:
    mri, pet = pair_files
    out = tmp_path / "out" / "fused.png"
    code, text = run("fuse", mri, pet, "-o", out, "--weights", random_weights, "--device", "cpu", "-v")
    assert code == 0, text
    assert "device: cpu" in text
    img = read_image(out)
    assert img.shape == (64, 64) and img.is_colour


def test_fuse_16bit_and_stretch(tmp_path: Path, pair_files: tuple[Path, Path], random_weights: Path) -> None:
    mri, pet = pair_files
    out = tmp_path / "f16.png"
    code, text = run("fuse", mri, pet, "-o", out, "-w", random_weights, "--bit-depth", "16", "--stretch")
    assert code == 0, text
    img = read_image(out)
    assert img.bit_depth == 16
    assert img.pixels.min() == 0.0 and img.pixels.max() == 1.0


def test_fuse_refuses_overwrite_and_input(tmp_path: Path, pair_files: tuple[Path, Path], random_weights: Path) -> None:
    mri, pet = pair_files
    before = mri.read_bytes()
    code, text = run("fuse", mri, pet, "-o", mri, "-w", random_weights, "--force")
    assert code == 2 and "refusing to overwrite input" in text
    assert mri.read_bytes() == before
    out = tmp_path / "o.png"
    out.write_bytes(b"keep")
    code, text = run("fuse", mri, pet, "-o", out, "-w", random_weights)
    assert code == 2 and "--force" in text and out.read_bytes() == b"keep"
    code, _ = run("fuse", mri, pet, "-o", out, "-w", random_weights, "--force")
    assert code == 0 and read_image(out).shape == (64, 64)


@pytest.mark.parametrize(
    "case,code,needle",
    [
        ("missing", 2, "no such file"),
        ("notimage", 1, "not an image"),
        ("mismatch", 1, "size mismatch"),
        ("colour_mri", 1, "MRI must be grey"),
        ("bad_suffix", 2, "output suffix"),
        ("bad_device", 2, "--device"),
    ],
)
def test_fuse_bad_inputs(tmp_path: Path, pair_files: tuple[Path, Path], random_weights: Path,
                         case: str, code: int, needle: str) -> None:
    mri, pet = pair_files
    out = tmp_path / "x.png"
    args: list[str | Path] = ["fuse", mri, pet, "-o", out, "-w", random_weights]
    if case == "missing":
        args[1] = tmp_path / "nope.png"
    elif case == "notimage":
        junk = tmp_path / "junk.png"
        junk.write_text("hello")
        args[1] = junk
    elif case == "mismatch":
        args[2] = write_image(tmp_path / "small.png", np.zeros((32, 40, 3), np.float32) + 0.3)
    elif case == "colour_mri":
        args[1] = pet
    elif case == "bad_suffix":
        args[4] = tmp_path / "x.xyz"
    elif case == "bad_device":
        args += ["--device", "gpu7"]
    got, text = run(*args)
    assert got == code, text
    assert needle in text
    assert "Traceback" not in text
    assert len([ln for ln in text.strip().splitlines() if ln.strip()]) == 1
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_resize_opt_in(tmp_path: Path, pair_files: tuple[Path, Path], random_weights: Path) -> None:
    mri, _ = pair_files
    small = write_image(tmp_path / "small.png", np.zeros((32, 40, 3), np.float32) + 0.3)
    code, text = run("fuse", mri, small, "-o", tmp_path / "r.png", "-w", random_weights, "--resize")
    assert code == 0, text


def test_missing_weights_one_line(tmp_path: Path, pair_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import medfuse.engine as eng

    monkeypatch.delenv("MEDFUSE_WEIGHTS", raising=False)
    monkeypatch.setattr(eng, "bundled_weights_path", lambda: None)
    code, text = run("fuse", *pair_files, "-o", tmp_path / "x.png")
    assert code == 1 and "--weights" in text


def test_weights_env(tmp_path: Path, pair_files: tuple[Path, Path], random_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDFUSE_WEIGHTS", str(random_weights))
    code, text = run("fuse", *pair_files, "-o", tmp_path / "e.png", "-v")
    assert code == 0 and str(random_weights) in text


def test_wrong_weights_file(tmp_path: Path, pair_files: tuple[Path, Path]) -> None:
    import torch

    bad = tmp_path / "bad.pt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, bad)
    code, text = run("fuse", *pair_files, "-o", tmp_path / "x.png", "-w", bad)
    assert code == 1 and "missing 77" in text and "conv.weight" in text


def _batch_dir(root: Path, n: int = 3) -> Path:
    for i in range(n):
        mri, pet = brain_phantom(32, seed=i)
        write_image(root / "MRI" / f"p{i}.png", mri)
        write_image(root / "PET" / f"p{i}.png", pet)
    return root


def test_batch(tmp_path: Path, random_weights: Path) -> None:
    src = _batch_dir(tmp_path / "in")
    write_image(src / "MRI" / "lonely.png", np.zeros((32, 32), np.float32))
    (src / "PET" / "broken.png").write_text("junk")
    write_image(src / "MRI" / "broken.png", np.zeros((32, 32), np.float32))
    out = tmp_path / "out"
    code, text = run("batch", src, out, "-w", random_weights, "--batch-size", "2")
    assert code == 1, text  # something failed
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert "lonely" in text and "broken" in text
    code, text = run("batch", src, out, "-w", random_weights, "--skip-existing")
    assert "skipped" in text
    code, text = run("batch", src, out, "-w", random_weights)
    assert code == 1 and "exists" in text


def test_batch_pairs_csv(tmp_path: Path, random_weights: Path) -> None:
    src = _batch_dir(tmp_path / "in", 2)
    csv = tmp_path / "pairs.csv"
    csv.write_text("mri,other,out\nMRI/p0.png,PET/p0.png,first.png\nMRI/p1.png,PET/p1.png,\n")
    out = tmp_path / "out"
    code, text = run("batch", src, out, "--pairs", csv, "-w", random_weights)
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["first.png", "p1.png"]


def test_batch_empty_folder(tmp_path: Path, random_weights: Path) -> None:
    (tmp_path / "in" / "MRI").mkdir(parents=True)
    (tmp_path / "in" / "CT").mkdir()
    code, text = run("batch", tmp_path / "in", tmp_path / "out", "-w", random_weights)
    assert code == 2 and "no images" in text


def test_masks(tmp_path: Path, pair_files: tuple[Path, Path], random_weights: Path) -> None:
    out = tmp_path / "masks"
    code, text = run("masks", *pair_files, "-o", out, "-w", random_weights)
    assert code == 0, text
    report = json.loads((out / "masks.json").read_text())
    m = read_image(out / "mask_mri.png").pixels
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert report["mri_branch"]["principal_fraction"] == pytest.approx(float(m.mean()))
    assert len(report["functional_branch"]["sparse_channels_per_layer"]) == 4
    assert read_image(out / "overlay_functional.png").is_colour
    code, text = run("masks", *pair_files, "-o", out, "-w", random_weights)
    assert code == 2 and "--force" in text


def test_demo_and_info(tmp_path: Path, random_weights: Path) -> None:
    code, text = run("demo", "-o", tmp_path / "demo", "-w", random_weights)
    assert code == 0, text
    assert (tmp_path / "demo" / "fused.png").is_file()
    code, text = run("info", "-w", random_weights)
    assert code == 0 and "torch" in text and "sha256" in text


def test_parity_cli(tmp_path: Path, shared: Path, reference_checkpoint: Path) -> None:
    """Done-when check: fuse on samples/MRI_PET pair 1 is within 1/255 of the parity PNG,
    and masks equal the parity masks."""
    s = shared / "reference" / "samples" / "MRI_PET"
    out = tmp_path / "f.png"
    code, text = run("fuse", s / "MRI" / "1.png", s / "PET" / "1.png", "-o", out,
                     "-w", reference_checkpoint, "--no-stretch")
    assert code == 0, text
    from PIL import Image

    ref = np.asarray(Image.open(shared / "reference" / "parity" / "MRI_PET" / "1_fused_rgb_clamped.png"), np.int16)
    got = np.asarray(Image.open(out).convert("RGB"), np.int16)
    assert np.abs(ref - got).max() <= 1
    code, text = run("masks", s / "MRI" / "1.png", s / "PET" / "1.png", "-o", tmp_path / "m",
                     "-w", reference_checkpoint)
    assert code == 0, text
    par = shared / "reference" / "parity" / "MRI_PET"
    for branch in ("mri", "functional"):
        a = np.asarray(Image.open(tmp_path / "m" / f"mask_{branch}.png"))
        b = np.asarray(Image.open(par / f"1_mask_{branch}.png"))
        assert np.array_equal(a, b)
