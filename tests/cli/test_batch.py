"""``medfuse batch`` in-process: folders and pairs.csv, past bad pairs, never outside OUT_DIR."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from helpers.checks import files_under, no_leftovers
from helpers.cli import run
from helpers.cohort import outputs_in
from helpers.synth import (
    MR_AFFINE,
    MR_SHAPE,
    PET_AFFINE,
    image_task,
    pet_values,
    write_mr_series,
    write_nifti,
)
from medfuse.io.images import read_pixels, write_image
from medfuse.phantom import brain_phantom


def test_batch_with_the_network(tmp_path: Path, random_weights: Path) -> None:
    src = image_task(tmp_path / "in")
    write_image(src / "MRI" / "lonely.png", np.zeros((32, 32), np.float32))
    (src / "PET" / "broken.png").write_text("junk")
    write_image(src / "MRI" / "broken.png", np.zeros((32, 32), np.float32))
    out = tmp_path / "out"
    r = run("batch", src, out, "-w", random_weights, "--batch-size", "2")
    assert r.code == 1, r.text  # something failed
    assert outputs_in(out) == ["p0.png", "p1.png", "p2.png"]
    assert "lonely.png: no matching input" in r.err and "failed broken" in r.err
    assert "fused 3, skipped 0 (existing), failed 2" in r.err
    assert read_pixels(out / "p0.png")[0].shape == (32, 32, 3)


def test_skip_existing_and_force(tmp_path: Path, mean_engine: None) -> None:
    src = image_task(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert run("batch", src, out).code == 0
    r = run("batch", src, out, "--skip-existing")
    assert r.code == 0 and "fused 0, skipped 2" in r.err
    r = run("batch", src, out)
    assert r.code == 1 and "exists" in r.err and "--force" in r.err
    r = run("batch", src, out, "--force", "-q")
    assert r.code == 0 and r.err == "" and r.out == ""


def test_truncated_png_among_good_pairs(tmp_path: Path, mean_engine: None) -> None:
    """One 10-byte PNG: every good pair is written, the bad one reported, exit 1."""
    src = image_task(tmp_path / "in", 4)
    bad = src / "PET" / "p2.png"
    bad.write_bytes(bad.read_bytes()[:10])
    out = tmp_path / "out"
    r = run("batch", src, out)
    assert r.code == 1, r.text
    assert outputs_in(out) == ["p0.png", "p1.png", "p3.png"]
    failed = [ln for ln in r.err_lines() if ln.startswith("failed")]
    assert len(failed) == 1 and "p2" in failed[0] and str(bad) in failed[0]
    assert "fused 3, skipped 0 (existing), failed 1" in r.err
    assert "Traceback" not in r.text
    assert no_leftovers(tmp_path)


def test_pairs_csv(tmp_path: Path, mean_engine: None) -> None:
    src = image_task(tmp_path / "in", 2)
    csv = tmp_path / "pairs.csv"
    csv.write_text("mri,other,out\nMRI/p0.png,PET/p0.png,first.png\nMRI/p1.png,PET/p1.png,\n")
    out = tmp_path / "out"
    r = run("batch", src, out, "--pairs", csv)
    assert r.code == 0, r.text
    assert outputs_in(out) == ["first.png", "p1.png"]


def test_pairs_csv_with_bom_and_subfolders(tmp_path: Path, mean_engine: None) -> None:
    """Excel's UTF-8 (with a byte-order mark, CRLF) works; ``out`` may name a subfolder."""
    src = image_task(tmp_path / "in", 2)
    csv = tmp_path / "pairs.csv"
    csv.write_bytes("\ufeffmri,other,out\r\nMRI/p0.png,PET/p0.png,a/b/first.png\r\n"
                    "MRI/p1.png,PET/p1.png,\r\n".encode())
    out = tmp_path / "out"
    r = run("batch", src, out, "--pairs", csv)
    assert r.code == 0, r.text
    assert outputs_in(out) == ["a/b/first.png", "p1.png"]


@pytest.mark.parametrize("bad_out", ["../x.png", "ABSOLUTE", "a/../../x.png", "~/x.png"])
def test_pairs_csv_never_writes_outside_out_dir(tmp_path: Path, mean_engine: None,
                                                bad_out: str) -> None:
    src = image_task(tmp_path / "in", 2)
    outside = tmp_path / "outside" / "x.png"
    target = str(outside) if bad_out == "ABSOLUTE" else bad_out
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"mri,other,out\nMRI/p0.png,PET/p0.png,{target}\nMRI/p1.png,PET/p1.png,\n")
    out = tmp_path / "work" / "out"
    before = files_under(tmp_path)
    r = run("batch", src, out, "--pairs", csv)
    assert r.code == 1, r.text
    failed = [ln for ln in r.err_lines() if ln.startswith("failed")]
    assert len(failed) == 1 and "pairs.csv line 2" in failed[0] and "output folder" in failed[0]
    assert outputs_in(out) == ["p1.png"]  # the good row is still fused
    after = [f for f in files_under(tmp_path) if not f.startswith("work/out/")]
    assert after == before  # nothing anywhere else
    assert not outside.exists() and not (tmp_path / "work" / "x.png").exists()


def test_ambiguous_names_reported(tmp_path: Path, mean_engine: None) -> None:
    """``MRI/a.png`` beside ``MRI/a.jpg``: which one pairs with ``PET/a.png`` would be a
    guess, so neither is used and the ambiguity is reported."""
    src = image_task(tmp_path / "in", 2)
    write_image(src / "MRI" / "p1.jpg", brain_phantom(32, seed=1)[0])
    out = tmp_path / "out"
    r = run("batch", src, out)
    assert r.code == 1, r.text
    assert outputs_in(out) == ["p0.png"]
    assert "several inputs share this name (p1.jpg, p1.png)" in r.err


def test_a_root_of_task_folders_is_one_batch(tmp_path: Path, mean_engine: None) -> None:
    """The root eval takes (MRI_CT/, MRI_PET/, MRI_SPECT/) is one batch; outputs land in
    OUT/TASK/, where eval --fused finds them."""
    from helpers.synth import image_task as colour_task

    data = tmp_path / "data"
    colour_task(data / "MRI_PET", n=2)
    spect = colour_task(data / "MRI_SPECT", n=1)
    (spect / "PET").rename(spect / "SPECT")
    ct = data / "MRI_CT"
    for i in range(2):
        mri, _ = brain_phantom(32, seed=i)
        write_image(ct / "MRI" / f"p{i}.png", mri)
        write_image(ct / "CT" / f"p{i}.png", mri[::-1].copy())
    out = tmp_path / "out"
    r = run("batch", data, out)
    assert r.code == 0, r.text
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "MRI_CT/p0.png", "MRI_CT/p1.png", "MRI_PET/p0.png", "MRI_PET/p1.png",
        "MRI_SPECT/p0.png"]
    assert "fused 5" in r.err
    r = run("eval", data, "--fused", f"mean={out}", "--metric", "SSIM",
            "--json", tmp_path / "e.json")
    assert r.code == 0, r.text


def test_empty_and_missing_folders(tmp_path: Path, mean_engine: None) -> None:
    (tmp_path / "in" / "MRI").mkdir(parents=True)
    (tmp_path / "in" / "CT").mkdir()
    r = run("batch", tmp_path / "in", tmp_path / "out")
    assert r.code == 2 and "no matching pairs" in r.err and len(r.err_lines()) == 1
    r = run("batch", tmp_path / "none", tmp_path / "out")
    assert r.code == 2 and "not found" in r.err
    (tmp_path / "nothing" / "x").mkdir(parents=True)
    r = run("batch", tmp_path / "nothing", tmp_path / "out")
    assert r.code == 2 and "holds no task folder" in r.err
    r = run("batch", tmp_path / "in", tmp_path / "out", "--pairs", tmp_path / "none.csv")
    assert r.code == 2 and "pairs file not found" in r.err
    assert not (tmp_path / "out").exists()


def test_out_dir_inside_an_input_folder_is_refused(tmp_path: Path, mean_engine: None) -> None:
    """Outputs in ``MRI/fused/`` would be read as an input (a DICOM series folder) by the
    next run: refused before anything is written. Beside ``MRI/`` is fine."""
    src = image_task(tmp_path / "in", 2)
    for out in (src / "MRI" / "fused", src / "PET", src / "PET" / "a" / "b"):
        r = run("batch", src, out)
        assert r.code == 2, r.text
        assert "inside input folder" in r.err and len(r.err_lines()) == 1
    assert files_under(src) == ["MRI/p0.png", "MRI/p1.png", "PET/p0.png", "PET/p1.png"]
    r = run("batch", src, src / "fused")
    assert r.code == 0, r.text
    assert outputs_in(src / "fused") == ["p0.png", "p1.png"]


def test_batch_volumes(tmp_path: Path, mean_engine: None) -> None:
    src = tmp_path / "in"
    write_mr_series(src / "MRI" / "case1")
    write_nifti(src / "MRI" / "case2.nii.gz",
                np.random.default_rng(0).random(MR_SHAPE).astype(np.float32), MR_AFFINE)
    (src / "PET").mkdir()
    write_nifti(src / "PET" / "case1.nii.gz", pet_values(), PET_AFFINE)
    write_nifti(src / "PET" / "case2.nii", pet_values(), PET_AFFINE)
    out = tmp_path / "out"
    r = run("batch", src, out, "--modality", "pet")
    assert r.code == 0, r.text
    assert outputs_in(out) == ["case1.nii.gz", "case2.nii.gz"]
    assert nib.load(out / "case1.nii.gz").shape == MR_SHAPE
    r = run("batch", src, tmp_path / "png", "--format", "png", "-v")
    assert r.code == 0, r.text
    assert len(outputs_in(tmp_path / "png")) == 2 * MR_SHAPE[2]  # case1_0000.png...
    assert "case1: 8 axial slice(s); modality pet" in r.err  # -v: the plan of each pair


def test_workers_parts_and_resume(tmp_path: Path, mean_engine: None) -> None:
    """--workers 2 writes what the serial run writes; two parts fill one folder; --resume
    after a lost output redoes that pair only."""
    from helpers.cohort import digest_tree

    src = image_task(tmp_path / "in", 4)
    assert run("batch", src, tmp_path / "serial", "-q").code == 0
    r = run("batch", src, tmp_path / "pool", "--workers", "2")
    assert r.code == 0 and "fused 4, skipped 0 (existing), failed 0" in r.err, r.text
    assert digest_tree(tmp_path / "pool") == digest_tree(tmp_path / "serial")
    out = tmp_path / "parts"
    for k in ("0", "1"):
        assert run("batch", src, out, "--num-parts", "2", "--part-id", k, "-q").code == 0
    assert digest_tree(out) == digest_tree(tmp_path / "serial")
    (out / "p2.png").unlink()
    r = run("batch", src, out, "--resume")
    assert r.code == 0 and "fused 1, skipped 3 (done), failed 0" in r.err, r.text
    r = run("batch", src, out, "--num-parts", "2", "--part-id", "2")
    assert r.code == 2 and "--part-id 2: parts are numbered 0 to 1" in r.err


def test_ray_backend_without_ray_is_one_line(tmp_path: Path, mean_engine: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    src = image_task(tmp_path / "in", 2)
    r = run("batch", src, tmp_path / "out", "--backend", "ray")
    assert r.code == 2 and len(r.err_lines()) == 1, r.text
    assert 'pip install "medfuse[ray]"' in r.err
