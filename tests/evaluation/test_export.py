"""medfuse.evaluation.export: the CSV and JSON files, NaN handling and the output policy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from helpers.eval_data import read_csv
from medfuse.errors import UsageError
from medfuse.evaluation import (
    EvalResult,
    ImageScore,
    MethodSpec,
    Problem,
    csv_rows,
    to_json,
    write_csv,
    write_json,
)
from medfuse.io.layout import Pair, Task


def _result(tmp_path: Path) -> EvalResult:
    pair = Pair("a", tmp_path / "MRI" / "a.png", tmp_path / "CT" / "a.png", "ct")
    rows = [
        ImageScore("T", "a", "avg", "standard", {"EN": 1.5, "SCD": math.nan}),
        ImageScore("T", "b", "avg", "standard", {"EN": math.nan, "SCD": math.nan}, "error",
                   "cannot decode"),
        ImageScore("T", "v", "avg", "standard", {"EN": 2.0, "SCD": 0.25}, "ok",
                   "mean over 2 of 8 axial slices (3-4)", [3, 4]),
    ]
    return EvalResult(
        tasks=[Task("T", tmp_path, "ct", [pair])], methods=[MethodSpec("avg", "average")],
        profiles=["standard"], metrics=["EN", "SCD"], rows=rows,
        problems=[Problem("T", "b", "", "error", "cannot decode")], examples=[],
        method_info={"avg": "pixel average"}, data_dir=tmp_path, seconds=1.23456,
    )


def test_csv_rows_nan_and_unscored(tmp_path: Path) -> None:
    header, body = csv_rows(_result(tmp_path))
    assert header == ["task", "image", "method", "profile", "EN", "SCD", "status", "note"]
    assert body[0] == ["T", "a", "avg", "standard", "1.5", "nan", "ok", ""]
    assert body[1] == ["T", "b", "avg", "standard", "", "", "error", "cannot decode"]
    assert body[2][-1] == "mean over 2 of 8 axial slices (3-4)"


def test_write_csv_and_json(tmp_path: Path) -> None:
    result = _result(tmp_path)
    path = write_csv(result, tmp_path / "out" / "s.csv")
    assert [r["EN"] for r in read_csv(path)] == ["1.5", "", "2.0"]
    doc = json.loads(write_json(result, tmp_path / "s.json").read_text(),
                     parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert doc == to_json(result) | {"summary": doc["summary"]}
    assert doc["seconds"] == 1.235 and doc["higher_is_better"] == {"EN": True, "SCD": True}
    assert doc["rows"][0]["values"] == {"EN": 1.5, "SCD": None}
    assert doc["rows"][1]["values"] is None and doc["rows"][2]["slices"] == [3, 4]
    assert doc["rows"][0]["slices"] is None
    en = next(s for s in doc["summary"] if s["metric"] == "EN")
    assert (en["mean"], en["n"], en["n_nan"]) == (1.75, 2, 0)
    assert doc["tasks"] == [{"name": "T", "folder": str(tmp_path), "modality": "ct", "pairs": 1}]
    assert doc["problems"][0]["message"] == "cannot decode"


def test_files_are_not_overwritten_without_force(tmp_path: Path) -> None:
    result = _result(tmp_path)
    target = tmp_path / "s.csv"
    target.write_text("keep")
    with pytest.raises(UsageError, match="--force"):
        write_csv(result, target)
    assert target.read_text() == "keep"
    write_csv(result, target, force=True)
    assert read_csv(target)[0]["task"] == "T"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files
