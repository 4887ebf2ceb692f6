"""``medfuse eval`` end to end: options, files, exit codes, and the promise that a saved
fused image scores exactly as it did in memory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.cli import run
from helpers.eval_data import SIZE, blob_image, image_dataset, read_csv, save, volume_task
from medfuse.metrics import METRIC_NAMES, compute_metrics_colour

BASELINES = ("average", "max", "laplacian", "gff")


def _run(*args: str | Path) -> tuple[int, str]:
    """Exit code and everything printed (stdout and stderr)."""
    ran = run("eval", *args)
    return ran.code, ran.text


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return image_dataset(tmp_path / "data")


# -- the command -------------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_all_methods_both_profiles(dataset: Path, tmp_path: Path, random_weights: Path) -> None:
    csv_path, json_path = tmp_path / "out" / "s.csv", tmp_path / "out" / "s.json"
    report, saved = tmp_path / "report", tmp_path / "saved"
    methods = [a for b in BASELINES for a in ("--method", b)]
    code, text = _run(dataset, "--split", "val", *methods, "--method", f"net=gesenet:{random_weights}",
                     "--profile", "standard", "--profile", "toolbox2022", "--device", "cpu",
                     "--csv", csv_path, "--json", json_path, "--report", report,
                     "--save-fused", saved)
    assert code == 0, text
    assert "MRI_CT" in text and "MRI_PET" in text and "± " in text

    rows = read_csv(csv_path)
    assert len(rows) == (3 + 2) * 5 * 2
    assert list(rows[0]) == ["task", "image", "method", "profile", *METRIC_NAMES, "status", "note"]
    assert {r["method"] for r in rows} == {*BASELINES, "net"}
    assert {r["profile"] for r in rows} == {"standard", "toolbox2022"}
    assert all(r["status"] == "ok" for r in rows)

    doc = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert doc["profiles"] == ["standard", "toolbox2022"]
    assert [m["label"] for m in doc["methods"]] == [*BASELINES, "net"]
    entry = next(s for s in doc["summary"] if (s["task"], s["method"], s["profile"], s["metric"])
                 == ("MRI_CT", "gff", "toolbox2022", "Qabf"))
    vals = [float(r["Qabf"]) for r in rows
            if (r["task"], r["method"], r["profile"]) == ("MRI_CT", "gff", "toolbox2022")]
    assert entry["mean"] == pytest.approx(np.mean(vals)) and entry["n"] == 3

    # The csv numbers are those of the saved 8-bit files, scored from disk.
    mri = np.asarray(Image.open(dataset / "MRI_PET/val/MRI/202.png"), np.float64)
    pet = np.asarray(Image.open(dataset / "MRI_PET/val/PET/202.png"), np.float64)
    fused = np.asarray(Image.open(saved / "net" / "MRI_PET" / "202.png"), np.float64)
    assert fused.shape == (SIZE, SIZE, 3)
    want = compute_metrics_colour(mri, pet, fused, "standard")
    got = next(r for r in rows if (r["task"], r["image"], r["method"], r["profile"])
               == ("MRI_PET", "202", "net", "standard"))
    for m in METRIC_NAMES:
        assert float(got[m]) == pytest.approx(want[m], rel=1e-12, abs=1e-12)

    md = (report / "report.md").read_text()
    assert "## Summary: means per task" in md and "### profile `toolbox2022`" in md
    assert "**" in md and "Nabf ↓" in md
    assert (report / "examples-MRI_CT.png").is_file() and (report / "examples-MRI_PET.png").is_file()
    grid = np.asarray(Image.open(report / "examples-MRI_PET.png"))
    assert grid.shape[1] >= 7 * SIZE  # MRI, PET and five methods side by side


def test_fused_dir_scores_like_the_run_that_saved_it(dataset: Path, tmp_path: Path) -> None:
    saved, first, second = tmp_path / "saved", tmp_path / "a.csv", tmp_path / "b.csv"
    code, text = _run(dataset, "--split", "val", "--method", "gff", "--save-fused", saved,
                     "--csv", first, "--profile", "all")
    assert code == 0, text
    code, text = _run(dataset, "--split", "val", "--fused", f"gff={saved / 'gff'}", "--csv", second,
                     "--profile", "all")
    assert code == 0, text
    assert read_csv(first) == read_csv(second)


def test_fused_missing_file(dataset: Path, tmp_path: Path) -> None:
    fused = tmp_path / "fused"
    for name in ("101", "103"):  # 102 is missing
        save(fused / f"{name}.png", blob_image(50))
    task = dataset / "MRI_CT" / "val"
    out = tmp_path / "m.csv"
    code, text = _run(task, "--fused", fused, "--csv", out)
    assert code == 1
    assert "missing" in text and "102" in text and "--allow-missing" in text
    rows = read_csv(out)
    assert [(r["image"], r["status"]) for r in rows] == [("101", "ok"), ("102", "missing"), ("103", "ok")]
    assert rows[1]["EN"] == ""
    code, text = _run(task, "--fused", fused, "--allow-missing")
    assert code == 0, text
    assert "102" in text


def test_fused_needs_task_folders_for_several_tasks(dataset: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    save(flat / "101.png", blob_image(1))
    code, text = _run(dataset, "--split", "val", "--fused", flat)
    assert code == 2 and "one folder per task" in text


def test_fused_wrong_size_is_a_failure(dataset: Path, tmp_path: Path) -> None:
    fused = tmp_path / "fused"
    for name in ("101", "102", "103"):
        save(fused / f"{name}.png", blob_image(2))
    save(fused / "103.png", blob_image(3)[:20, :20])
    code, text = _run(dataset / "MRI_CT" / "val", "--fused", fused)
    assert code == 1 and "103" in text and "20x20" in text


def test_size_mismatch_and_constant_images(dataset: Path, tmp_path: Path) -> None:
    task = dataset / "MRI_CT" / "val"
    save(task / "CT" / "102.png", blob_image(5)[:30, :30])  # mismatched pair
    save(task / "MRI" / "104.png", np.full((SIZE, SIZE), 90, np.uint8))  # constant pair
    save(task / "CT" / "104.png", np.full((SIZE, SIZE), 30, np.uint8))
    report, out = tmp_path / "r", tmp_path / "c.csv"
    code, text = _run(task, "--method", "average", "--report", report, "--csv", out)
    assert code == 1
    assert "size mismatch" in text and "102" in text
    rows = {r["image"]: r for r in read_csv(out)}
    assert rows["102"]["status"] == "error" and rows["101"]["status"] == "ok"
    assert rows["104"]["SCD"] == "nan" and rows["104"]["Qabf"] == "nan"
    md = (report / "report.md").read_text()
    assert "## Undefined values (NaN)" in md and "**SCD**" in md and "(1 NaN)" in md
    assert "Images that could not be scored" in md
    code, text = _run(task, "--method", "average", "--resize")
    assert code == 0, text


def test_report_without_matplotlib(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report = tmp_path / "r"
    code, text = _run(dataset, "--split", "val", "--method", "max", "--method", "average",
                     "--report", report, "--examples", "1")
    assert code == 0, text
    md = (report / "report.md").read_text()
    assert "matplotlib is not installed" in md and "| MRI_CT | max |" in md
    assert sorted(p.name for p in report.iterdir()) == [
        "examples-MRI_CT.png", "examples-MRI_PET.png", "report.md"]


def test_usage_errors_exit_2_and_write_nothing(dataset: Path, tmp_path: Path) -> None:
    existing = tmp_path / "s.csv"
    existing.write_text("keep")
    cases = [
        ((dataset, "--split", "val"), "at least one --method"),
        ((dataset, "--split", "val", "--method", "wavelet"), "unknown fusion rule"),
        ((dataset, "--split", "val", "--method", "max", "--profile", "x"), "--profile"),
        ((dataset, "--split", "val", "--method", "max", "--method", "max"), "labelled 'max'"),
        ((dataset, "--split", "val", "--method", "max", "--csv", existing), "--force"),
        ((tmp_path / "nowhere", "--method", "max"), "not found"),
    ]
    for args, message in cases:
        code, text = _run(*args, "--json", tmp_path / "never.json")
        assert code == 2, (args, text)
        assert message in text, (args, text)
        assert text.count("error:") == 1
    assert existing.read_text() == "keep"
    assert not (tmp_path / "never.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_force_overwrites(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    out.write_text("old")
    code, text = _run(dataset / "MRI_PET" / "val", "--method", "average", "--csv", out,
                     "--metric", "EN,Qabf", "--force")
    assert code == 0, text
    rows = read_csv(out)
    assert len(rows) == 2 and list(rows[0])[4:6] == ["EN", "Qabf"]


def test_bad_weights_fail_before_work(dataset: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "s.csv"
    code, text = _run(dataset, "--split", "val", "--method", f"gesenet:{bad}", "--csv", out)
    assert code == 1 and "cannot read weights" in text
    assert not out.exists()


def test_default_and_explicit_weights_side_by_side(dataset: Path, tmp_path: Path,
                                                   random_weights: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain ``gesenet`` takes $MEDFUSE_WEIGHTS (or --weights); with the same file as an
    explicit checkpoint the two columns must agree exactly."""
    monkeypatch.setenv("MEDFUSE_WEIGHTS", str(random_weights))
    out = tmp_path / "w.csv"
    code, text = _run(dataset / "MRI_PET" / "val", "--method", "gesenet", "--method",
                     f"same=gesenet:{random_weights}", "--metric", "EN,SSIM", "--csv", out,
                     "--device", "cpu")
    assert code == 0, text
    rows = read_csv(out)
    by = {(r["image"], r["method"]): (r["EN"], r["SSIM"]) for r in rows}
    assert {m for _, m in by} == {"gesenet", "same"}
    assert all(by[(img, "gesenet")] == by[(img, "same")] for img in ("201", "202"))
    code, text = _run(dataset / "MRI_PET" / "val", "--method", "max", "--weights", random_weights)
    assert code == 2 and "--weights applies to --method gesenet" in text


def test_a_folder_of_nifti_pairs(tmp_path: Path) -> None:
    """Volume pairs are scored slice by slice (the slices with anatomy, or --slice N) and
    reported as one row per pair; --save-fused keeps the scored slices."""
    root = volume_task(tmp_path / "MRI_PET", ("s1", "s2"))
    out, saved, report = tmp_path / "v.csv", tmp_path / "saved", tmp_path / "r"
    code, text = _run(root, "--method", "average", "--csv", out, "--save-fused", saved,
                      "--report", report, "--examples", "1")
    assert code == 0, text
    rows = read_csv(out)
    assert [(r["image"], r["note"]) for r in rows] == [
        ("s1", "mean over 4 of 8 axial slices (2-5)"), ("s2", "mean over 4 of 8 axial slices (2-5)")]
    assert (saved / "average" / "MRI_PET" / "s2" / "axial_0005.png").is_file()
    assert "volume pairs: scored slice by slice" in (report / "report.md").read_text()
    code, text = _run(root, "--fused", f"average={saved / 'average'}", "--csv", tmp_path / "w.csv")
    assert code == 0, text
    assert read_csv(tmp_path / "w.csv") == rows
    code, text = _run(root, "--method", "max", "--slice", "3", "--csv", tmp_path / "one.csv")
    assert code == 0, text
    assert {r["note"] for r in read_csv(tmp_path / "one.csv")} == {"mean over 1 of 8 axial slices (3)"}
    code, text = _run(root, "--method", "max", "--slice", "9")
    assert code == 1 and "slices 0 to 7" in text
