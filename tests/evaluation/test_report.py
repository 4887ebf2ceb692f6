"""medfuse.evaluation.report: number formats, tables, the example grid and the Markdown."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medfuse.errors import UsageError
from medfuse.evaluation import EvalResult, Example, ImageScore, MethodSpec
from medfuse.evaluation.aggregate import Summary
from medfuse.evaluation.report import (
    cell_text,
    check_report_dir,
    example_grid,
    fmt,
    fmt_spread,
    planned_files,
    render_markdown,
)
from medfuse.io.layout import Pair, Task


def test_number_formats() -> None:
    assert [fmt(x) for x in (math.nan, 1234.56, 0.0, 0.61234, 2.48e-05)] == [
        "NaN", "1234.6", "0", "0.6123", "2.48e-05"]
    assert [fmt_spread(x) for x in (math.nan, 123.4, 0.0, 0.0512, 1e-5)] == [
        "NaN", "123", "0", "0.051", "1.0e-05"]
    s = Summary("T", "m", "standard", "SCD", 0.81, 0.05, 9, 1)
    assert cell_text(s) == "0.81 ± 0.05 (1 NaN)"
    assert cell_text(s, with_std=False) == "0.81 (1 NaN)" and cell_text(None) == "-"


def _result(tmp_path: Path, with_volume: bool) -> EvalResult:
    pairs = [Pair(n, tmp_path / n, tmp_path / n, "pet") for n in ("a", "b")]
    rows = [ImageScore("MRI_PET", "a", m, "standard", {"EN": v, "SCD": math.nan})
            for m, v in (("x", 1.0), ("y", 2.0))]
    rows += [ImageScore("MRI_PET", "b", m, "standard", {"EN": v, "SCD": 0.5}, "ok", "",
                        [3, 4] if with_volume else None) for m, v in (("x", 3.0), ("y", 1.0))]
    return EvalResult(tasks=[Task("MRI_PET", tmp_path, "pet", pairs)],
                      methods=[MethodSpec("x", "average"), MethodSpec("y", "max")],
                      profiles=["standard"], metrics=["EN", "SCD"], rows=rows, problems=[],
                      examples=[], method_info={}, data_dir=tmp_path)


def test_markdown_tables_nan_section_and_volume_note(tmp_path: Path) -> None:
    md = render_markdown(_result(tmp_path, False), {}, {"MRI_PET": "examples-MRI_PET.png"})
    # EN: x has the best mean; SCD ties (both bold), each with one undefined value
    assert "| MRI_PET | x | **2** | **0.5 (1 NaN)** |" in md
    assert "## MRI_PET (2 pairs, MRI + PET)" in md
    assert "## Undefined values (NaN)" in md and "**SCD**" in md
    assert "volume pairs" not in md
    assert "volume pairs: scored slice by slice" in render_markdown(_result(tmp_path, True), {}, {})


def test_example_grid_columns_and_captions() -> None:
    tile = np.full((20, 30), 128, np.uint8)
    examples = [Example("T", "a", tile, tile, {"x": tile}),
                Example("T", "v", tile, np.stack([tile] * 3, -1), {}, slice=4)]
    assert examples[1].caption == "v #4"
    grid = example_grid(examples, ["x", "y"], "PET")
    assert grid.shape == (22 + 2 * 20 + 3 * 4, 4 * 30 + 5 * 4, 3)
    # a method without a result for a pair is a grey cell
    y, x = 22 + 4 + 20 + 4, 4 + 2 * (30 + 4)
    np.testing.assert_allclose(grid[y + 5 : y + 15, x + 5 : x + 25], 200 / 255, atol=1e-6)


def test_planned_files_and_report_dir_checks(tmp_path: Path) -> None:
    assert planned_files(["MRI_CT", "a b"], ["standard"]) == [
        "report.md", "examples-MRI_CT.png", "boxplots-MRI_CT-standard.png",
        "examples-a_b.png", "boxplots-a_b-standard.png"]
    folder = tmp_path / "r"
    check_report_dir(folder, ["MRI_CT"], ["standard"], force=False)  # nothing there yet
    folder.mkdir()
    (folder / "report.md").write_text("old")
    with pytest.raises(UsageError, match="--force"):
        check_report_dir(folder, ["MRI_CT"], ["standard"], force=False)
    check_report_dir(folder, ["MRI_CT"], ["standard"], force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        check_report_dir(tmp_path / "file", ["MRI_CT"], ["standard"], force=True)
