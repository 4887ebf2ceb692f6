"""medfuse.evaluation.request: the whole ``eval`` as one call, checked before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.eval_data import image_dataset, read_csv, volume_task
from medfuse.errors import UsageError
from medfuse.evaluation import EvalRequest, evaluate_files
from medfuse.io.layout import find_tasks


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return image_dataset(tmp_path / "data")


def test_tasks_come_from_the_dataset_layout(dataset: Path) -> None:
    """eval reads datasets as batch and train do (medfuse.io.layout.find_tasks)."""
    tasks = find_tasks(dataset, "val", images_only=False)
    assert [t.name for t in tasks] == ["MRI_CT", "MRI_PET"]
    assert [len(t.pairs) for t in tasks] == [3, 2]
    assert [t.modality for t in tasks] == ["ct", "pet"]
    (only,) = find_tasks(dataset / "MRI_CT" / "val", images_only=False)
    assert only.name == "MRI_CT" and len(only.pairs) == 3  # a split folder takes its parent's name
    (only,) = find_tasks(dataset / "MRI_CT", "val", images_only=False)
    assert only.name == "MRI_CT"
    for args in ((dataset / "MRI_CT",), (dataset,)):
        with pytest.raises(UsageError, match="--split"):
            evaluate_files(EvalRequest(*args, methods=["max"]))
    with pytest.raises(UsageError, match="not found"):
        evaluate_files(EvalRequest(dataset / "nope", methods=["max"]))


def test_writes_what_was_asked(dataset: Path, tmp_path: Path) -> None:
    done: list[tuple[int, int]] = []
    request = EvalRequest(dataset, methods=["average", "m=max"], split="val",
                          metrics=["EN"], csv=tmp_path / "s.csv", json=tmp_path / "s.json",
                          report=tmp_path / "r", examples=1)
    report = evaluate_files(request, progress=lambda d, t: done.append((d, t)))
    assert report.written == [tmp_path / "s.csv", tmp_path / "s.json", tmp_path / "r" / "report.md"]
    assert len(read_csv(tmp_path / "s.csv")) == 5 * 2
    assert done[-1] == (10, 10)
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"medfuse eval {dataset} --split val --method average --method m=max" in md


def test_mistakes_are_found_before_any_work(dataset: Path, tmp_path: Path) -> None:
    existing = tmp_path / "s.csv"
    existing.write_text("keep")
    cases = [
        (dict(), "at least one --method"),
        (dict(methods=["max"], weights="w.pt"), "--weights applies to --method gesenet"),
        (dict(methods=["max"], csv=existing), "--force"),
        (dict(methods=["max"], csv=tmp_path / "x", json=tmp_path / "x"), "same file"),
        (dict(methods=["max"], metrics=["PSNR"]), "--metric"),
    ]
    for options, message in cases:
        with pytest.raises(UsageError, match=message):
            evaluate_files(EvalRequest(dataset, split="val", **options))  # type: ignore[arg-type]
    assert existing.read_text() == "keep"


def test_command_line_reproduces_the_request(tmp_path: Path) -> None:
    request = EvalRequest(tmp_path / "my data", methods=["a=gesenet:w 1.pt"], fused=["x"],
                          profiles=["all"], slice_index=3, axis="coronal", device="cpu")
    assert request.command_line() == (
        f"medfuse eval '{tmp_path / 'my data'}' --method 'a=gesenet:w 1.pt' --fused x "
        "--profile standard --profile toolbox2022 --axis coronal --slice 3 --device cpu")
    clip = EvalRequest(tmp_path, methods=["average"], gamut_map="clip")
    assert clip.command_line().endswith("--method average --profile standard --gamut-map clip")


def test_a_folder_of_volume_pairs(tmp_path: Path) -> None:
    root = volume_task(tmp_path / "MRI_PET", ("s1", "s2"))
    out = tmp_path / "v.csv"
    report = evaluate_files(EvalRequest(root, methods=["average"], csv=out))
    rows = read_csv(out)
    assert [r["image"] for r in rows] == ["s1", "s2"]
    assert all(r["status"] == "ok" and r["note"].startswith("mean over 4 of 8") for r in rows)
    assert report.result.nan_count() == 0
