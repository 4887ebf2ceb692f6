"""``medfuse eval`` and medfuse.evaluation / medfuse.report on a tiny synthetic dataset."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medfuse.cli import app
from medfuse.errors import UsageError
from medfuse.evaluation import (
    ImageScore,
    Summary,
    best_methods,
    discover_tasks,
    parse_fused,
    parse_method,
    parse_metrics,
    parse_profiles,
    summarise,
)
from medfuse.metrics import METRIC_NAMES, compute_metrics_colour

runner = CliRunner()
SIZE = 40  # large enough for every metric's windows, small enough to be instant
BASELINES = ("average", "max", "laplacian", "gff")


def run(*args: str | Path) -> tuple[int, str]:
    res = runner.invoke(app, ["eval", *[str(a) for a in args]])
    return res.exit_code, res.output


def blob_image(seed: int, colour: bool = False) -> np.ndarray:
    """Smooth random structure as uint8 (RGB pseudo-colour when ``colour``)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    grey = ndimage.gaussian_filter(rng.random((SIZE, SIZE)), 2.5)
    grey = (grey - grey.min()) / (grey.max() - grey.min())
    if colour:
        rgb = np.stack([grey, grey**2, 1 - grey], axis=-1)
        return (rgb * 255).round().astype(np.uint8)
    return (grey * 255).round().astype(np.uint8)


def save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """root/MRI_CT/val (3 grey pairs), root/MRI_PET/val (2 colour pairs), plus a train split
    that must be ignored with --split val."""
    root = tmp_path / "data"
    for i, name in enumerate(("101", "102", "103")):
        save(root / "MRI_CT" / "val" / "MRI" / f"{name}.png", blob_image(i))
        save(root / "MRI_CT" / "val" / "CT" / f"{name}.png", blob_image(10 + i))
    for i, name in enumerate(("201", "202")):
        save(root / "MRI_PET" / "val" / "MRI" / f"{name}.png", blob_image(20 + i))
        save(root / "MRI_PET" / "val" / "PET" / f"{name}.png", blob_image(30 + i, colour=True))
    save(root / "MRI_CT" / "train" / "MRI" / "999.png", blob_image(40))
    save(root / "MRI_CT" / "train" / "CT" / "999.png", blob_image(41))
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- discovery and option parsing ------------------------------------------------------------


def test_discover_root_with_split(dataset: Path) -> None:
    tasks = discover_tasks(dataset, "val")
    assert [t.name for t in tasks] == ["MRI_CT", "MRI_PET"]
    assert [len(t.pairs) for t in tasks] == [3, 2]
    assert [t.modality for t in tasks] == ["ct", "pet"]


def test_discover_task_folder_and_task_root(dataset: Path) -> None:
    (only,) = discover_tasks(dataset / "MRI_CT" / "val")
    assert only.name == "MRI_CT" and len(only.pairs) == 3  # a split folder takes its parent's name
    (only,) = discover_tasks(dataset / "MRI_CT", "val")
    assert only.name == "MRI_CT"


def test_discover_refuses_splits_as_tasks(dataset: Path) -> None:
    with pytest.raises(UsageError, match="--split"):
        discover_tasks(dataset / "MRI_CT")
    with pytest.raises(UsageError, match="--split"):
        discover_tasks(dataset)
    with pytest.raises(UsageError, match="not found"):
        discover_tasks(dataset / "nope")


def test_parse_method(random_weights: Path) -> None:
    assert parse_method("average").label == "average"
    assert parse_method("Guided").kind == "gff"
    m = parse_method(f"mine=gesenet:{random_weights}")
    assert (m.label, m.kind, m.path) == ("mine", "gesenet", random_weights)
    assert parse_method(f"gesenet:{random_weights}").label == "gesenet-random"
    assert parse_method("gesenet").path is None
    with pytest.raises(UsageError, match="not found"):
        parse_method("gesenet:/no/such.pth")
    with pytest.raises(UsageError, match="unknown fusion rule"):
        parse_method("wavelet")
    with pytest.raises(UsageError, match="only gesenet"):
        parse_method("average:x")


def test_parse_profiles_and_metrics(tmp_path: Path) -> None:
    assert parse_profiles(None) == ["standard"]
    assert parse_profiles(["all"]) == ["standard", "toolbox2022"]
    assert parse_profiles(["toolbox2022", "standard", "standard"]) == ["toolbox2022", "standard"]
    with pytest.raises(UsageError, match="--profile"):
        parse_profiles(["matlab"])
    assert parse_metrics(None) == list(METRIC_NAMES)
    assert parse_metrics(["ssim,en", "Qabf"]) == ["EN", "SSIM", "Qabf"]
    with pytest.raises(UsageError, match="--metric"):
        parse_metrics(["PSNR"])
    assert parse_fused(f"x={tmp_path}").label == "x"
    with pytest.raises(UsageError, match="not found"):
        parse_fused(str(tmp_path / "missing"))


# -- aggregation -------------------------------------------------------------------------------


def test_summarise_leaves_nan_out_and_counts_it() -> None:
    rows = [ImageScore("T", str(i), "m", "standard", {"SCD": v})
            for i, v in enumerate([1.0, 2.0, math.nan, 3.0])]
    rows.append(ImageScore("T", "x", "m", "standard", {"SCD": math.nan}, "missing", "gone"))
    (s,) = summarise(rows, ["SCD"])
    assert (s.mean, s.n, s.n_nan) == (2.0, 3, 1)
    assert s.std == pytest.approx(1.0)  # sample standard deviation


def test_best_respects_direction() -> None:
    sums = [Summary("T", m, "standard", metric, mean, 0.0, 3, 0)
            for m, mean in (("a", 0.1), ("b", 0.3))
            for metric in ("Qabf", "Nabf")]
    assert best_methods(sums) == {("T", "standard", "Qabf", "b"), ("T", "standard", "Nabf", "a")}


# -- the command -------------------------------------------------------------------------------


def test_eval_all_methods_both_profiles(dataset: Path, tmp_path: Path, random_weights: Path) -> None:
    csv_path, json_path = tmp_path / "out" / "s.csv", tmp_path / "out" / "s.json"
    report, saved = tmp_path / "report", tmp_path / "saved"
    methods = [a for b in BASELINES for a in ("--method", b)]
    code, text = run(dataset, "--split", "val", *methods, "--method", f"net=gesenet:{random_weights}",
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
    code, text = run(dataset, "--split", "val", "--method", "gff", "--save-fused", saved,
                     "--csv", first, "--profile", "all")
    assert code == 0, text
    code, text = run(dataset, "--split", "val", "--fused", f"gff={saved / 'gff'}", "--csv", second,
                     "--profile", "all")
    assert code == 0, text
    assert read_csv(first) == read_csv(second)


def test_fused_missing_file(dataset: Path, tmp_path: Path) -> None:
    fused = tmp_path / "fused"
    for name in ("101", "103"):  # 102 is missing
        save(fused / f"{name}.png", blob_image(50))
    task = dataset / "MRI_CT" / "val"
    out = tmp_path / "m.csv"
    code, text = run(task, "--fused", fused, "--csv", out)
    assert code == 1
    assert "missing" in text and "102" in text and "--allow-missing" in text
    rows = read_csv(out)
    assert [(r["image"], r["status"]) for r in rows] == [("101", "ok"), ("102", "missing"), ("103", "ok")]
    assert rows[1]["EN"] == ""
    code, text = run(task, "--fused", fused, "--allow-missing")
    assert code == 0, text
    assert "102" in text


def test_fused_needs_task_folders_for_several_tasks(dataset: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    save(flat / "101.png", blob_image(1))
    code, text = run(dataset, "--split", "val", "--fused", flat)
    assert code == 2 and "one folder per task" in text


def test_fused_wrong_size_is_a_failure(dataset: Path, tmp_path: Path) -> None:
    fused = tmp_path / "fused"
    for name in ("101", "102", "103"):
        save(fused / f"{name}.png", blob_image(2))
    save(fused / "103.png", blob_image(3)[:20, :20])
    code, text = run(dataset / "MRI_CT" / "val", "--fused", fused)
    assert code == 1 and "103" in text and "20x20" in text


def test_size_mismatch_and_constant_images(dataset: Path, tmp_path: Path) -> None:
    task = dataset / "MRI_CT" / "val"
    save(task / "CT" / "102.png", blob_image(5)[:30, :30])  # mismatched pair
    save(task / "MRI" / "104.png", np.full((SIZE, SIZE), 90, np.uint8))  # constant pair
    save(task / "CT" / "104.png", np.full((SIZE, SIZE), 30, np.uint8))
    report, out = tmp_path / "r", tmp_path / "c.csv"
    code, text = run(task, "--method", "average", "--report", report, "--csv", out)
    assert code == 1
    assert "size mismatch" in text and "102" in text
    rows = {r["image"]: r for r in read_csv(out)}
    assert rows["102"]["status"] == "error" and rows["101"]["status"] == "ok"
    assert rows["104"]["SCD"] == "nan" and rows["104"]["Qabf"] == "nan"
    md = (report / "report.md").read_text()
    assert "## Undefined values (NaN)" in md and "**SCD**" in md and "(1 NaN)" in md
    assert "Images that could not be scored" in md
    code, text = run(task, "--method", "average", "--resize")
    assert code == 0, text


def test_report_without_matplotlib(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report = tmp_path / "r"
    code, text = run(dataset, "--split", "val", "--method", "max", "--method", "average",
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
        code, text = run(*args, "--json", tmp_path / "never.json")
        assert code == 2, (args, text)
        assert message in text, (args, text)
        assert text.count("error:") == 1
    assert existing.read_text() == "keep"
    assert not (tmp_path / "never.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_force_overwrites(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    out.write_text("old")
    code, text = run(dataset / "MRI_PET" / "val", "--method", "average", "--csv", out,
                     "--metric", "EN,Qabf", "--force")
    assert code == 0, text
    rows = read_csv(out)
    assert len(rows) == 2 and list(rows[0])[4:6] == ["EN", "Qabf"]


def test_bad_weights_fail_before_work(dataset: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "s.csv"
    code, text = run(dataset, "--split", "val", "--method", f"gesenet:{bad}", "--csv", out)
    assert code == 1 and "cannot read weights" in text
    assert not out.exists()


def test_default_and_explicit_weights_side_by_side(dataset: Path, tmp_path: Path,
                                                   random_weights: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain ``gesenet`` takes $MEDFUSE_WEIGHTS (or --weights); with the same file as an
    explicit checkpoint the two columns must agree exactly."""
    monkeypatch.setenv("MEDFUSE_WEIGHTS", str(random_weights))
    out = tmp_path / "w.csv"
    code, text = run(dataset / "MRI_PET" / "val", "--method", "gesenet", "--method",
                     f"same=gesenet:{random_weights}", "--metric", "EN,SSIM", "--csv", out,
                     "--device", "cpu")
    assert code == 0, text
    rows = read_csv(out)
    by = {(r["image"], r["method"]): (r["EN"], r["SSIM"]) for r in rows}
    assert {m for _, m in by} == {"gesenet", "same"}
    assert all(by[(img, "gesenet")] == by[(img, "same")] for img in ("201", "202"))
    code, text = run(dataset / "MRI_PET" / "val", "--method", "max", "--weights", random_weights)
    assert code == 2 and "--weights applies to --method gesenet" in text
