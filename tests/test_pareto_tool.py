"""docs/tools/pareto.py: the front over two or four axes, and the study columns it reads.

The model card's Pareto table comes from this script, so a wrong front or a misread study
file would put a wrong claim in the card."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pareto():
    spec = importlib.util.spec_from_file_location("pareto_tool", ROOT / "docs" / "tools" / "pareto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_front_in_two_dimensions(pareto) -> None:
    points = {"a": (0.70, 1.5), "b": (0.71, 1.4), "c": (0.69, 1.4), "d": (0.70, 1.5)}
    # c is dominated by a (and b); a and d tie exactly, so neither dominates the other
    assert pareto.front(points) == {"a", "b", "d"}


def test_front_in_four_dimensions_keeps_a_study_gain(pareto) -> None:
    # atlas-only, "study" is dominated by "atlas"; with the study axes it is not
    atlas = {"atlas": (0.7155, 1.593), "study": (0.7137, 1.507)}
    assert pareto.front(atlas) == {"atlas"}
    both = {"atlas": (0.7155, 1.593, 0.980, 0.90), "study": (0.7137, 1.507, 0.986, 0.95),
            "worse": (0.7130, 1.500, 0.985, 0.94)}
    assert pareto.front(both) == {"atlas", "study"}


def _studies(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "studies.json"
    path.write_text(json.dumps({"scores": rows}))
    return path


def test_pet_study_reads_medfuse_on_pet(tmp_path: Path, pareto) -> None:
    rows = [
        {"study": "pet", "method": "composite", "anatomy_r": 0.986, "lesion_ratio": {"hot": 0.84}},
        {"study": "spect", "method": "medfuse", "anatomy_r": 0.997, "lesion_ratio": {"hot": 0.86}},
        {"study": "pet", "method": "medfuse", "anatomy_r": 0.9862, "lesion_ratio": {"hot": 0.953}},
    ]
    assert pareto.pet_study(_studies(tmp_path, rows)) == (0.9862, 0.953)


def test_pet_study_without_a_medfuse_pet_row_is_refused(tmp_path: Path, pareto) -> None:
    rows = [{"study": "spect", "method": "medfuse", "anatomy_r": 0.997, "lesion_ratio": {"hot": 0.86}}]
    with pytest.raises(SystemExit, match="no medfuse score on a PET study"):
        pareto.pet_study(_studies(tmp_path, rows))
