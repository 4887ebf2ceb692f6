"""medfuse.io.layout: which files pair with which (task folders, dataset roots, pairs.csv)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medfuse.errors import UsageError
from medfuse.io.layout import (
    dataset_pairs,
    find_tasks,
    inputs_by_stem,
    is_input_entry,
    path_stem,
    read_pairs_csv,
    read_task,
    safe_output_name,
)


def touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def task(root: Path, other: str = "PET", stems: tuple[str, ...] = ("1", "2")) -> Path:
    for s in stems:
        touch(root / "MRI" / f"{s}.png", root / other / f"{s}.png")
    return root


def test_path_stem_and_entries(tmp_path: Path) -> None:
    assert path_stem("a/b/7.png") == "7" and path_stem("s1.nii.gz") == "s1"
    assert path_stem("s1.NII.GZ") == "s1" and path_stem("IM.dcm") == "IM"
    assert path_stem("series") == "series" and path_stem(".png") == ".png"
    touch(tmp_path / "a.png", tmp_path / ".hidden.png", tmp_path / "b.txt", tmp_path / "c.nii")
    (tmp_path / "d").mkdir()
    found = {p.name for p in tmp_path.iterdir() if is_input_entry(p)}
    assert found == {"a.png", "c.nii", "d"}
    assert {p.name for p in tmp_path.iterdir() if is_input_entry(p, images_only=True)} == {"a.png"}


def test_read_task_pairs_by_stem_any_case(tmp_path: Path) -> None:
    root = task(tmp_path / "t", "pet")
    touch(root / "MRI" / "3.nii.gz", root / "pet" / "3.nii")
    t = read_task(root)
    assert t.modality == "pet" and t.name == "t"
    assert [(p.name, p.mri.name, p.other.name) for p in t.pairs] == [
        ("1", "1.png", "1.png"), ("2", "2.png", "2.png"), ("3", "3.nii.gz", "3.nii")]
    assert all(p.modality == "pet" for p in t.pairs) and t.problems == []


def test_unpaired_and_ambiguous_entries_are_problems(tmp_path: Path) -> None:
    root = task(tmp_path / "t", "CT")
    touch(root / "MRI" / "lonely.png", root / "CT" / "orphan.png", root / "MRI" / "2.jpg")
    t = read_task(root)
    assert [p.name for p in t.pairs] == ["1"]
    problems = dict(t.problems)
    assert "several inputs share this name (2.jpg, 2.png)" in problems["MRI/2"]
    assert "no matching input in CT/" in problems["MRI/lonely.png"]
    assert problems["CT/orphan.png"] == "no matching MRI"
    unique, probs = inputs_by_stem(root / "MRI")
    assert "2" not in unique and probs[0][0] == "MRI/2"


def test_task_folder_refusals(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="must hold MRI/"):
        read_task(tmp_path)
    root = task(tmp_path / "two", "CT")
    touch(root / "PET" / "1.png")
    with pytest.raises(UsageError, match="several second-modality folders"):
        read_task(root)


def test_find_tasks_layouts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    task(data / "MRI_CT", "CT")
    task(data / "MRI_PET" / "val", "PET")
    task(data / "MRI_PET" / "train", "PET")
    assert [t.name for t in find_tasks(data / "MRI_CT")] == ["MRI_CT"]
    assert [t.name for t in find_tasks(data)] == ["MRI_CT"]  # MRI_PET holds splits only
    assert [(t.name, t.modality) for t in find_tasks(data, "val")] == [("MRI_PET", "pet")]
    assert [t.name for t in find_tasks(data / "MRI_PET", "val")] == ["MRI_PET"]
    assert [t.name for t in find_tasks(data / "MRI_PET" / "val")] == ["MRI_PET"]
    with pytest.raises(UsageError, match="pick one with --split"):
        find_tasks(data / "MRI_PET")
    with pytest.raises(UsageError, match="already a task folder"):
        find_tasks(data / "MRI_CT", "val")
    with pytest.raises(UsageError, match="not found"):
        find_tasks(tmp_path / "missing")
    (tmp_path / "empty" / "MRI_CT" / "MRI").mkdir(parents=True)
    (tmp_path / "empty" / "MRI_CT" / "CT").mkdir()
    with pytest.raises(UsageError, match="no matching"):
        find_tasks(tmp_path / "empty")


def test_dataset_pairs_of_a_task_folder_and_of_a_root(tmp_path: Path) -> None:
    """One rule for batch and eval: a task folder's pairs keep their names; a root of
    several tasks names them TASK/NAME (7 in MRI_CT and 7 in MRI_PET are two pairs)."""
    data = tmp_path / "data"
    task(data / "MRI_CT", "CT", ("7", "8"))
    task(data / "MRI_PET", "PET", ("7",))
    task(data / "MRI_SPECT", "SPECT", ("7",))
    touch(data / "MRI_SPECT" / "MRI" / "lonely.png")
    pairs, problems, folders = dataset_pairs(data / "MRI_CT")
    assert [p.name for p in pairs] == ["7", "8"] and problems == []
    assert sorted(f.name for f in folders) == ["CT", "MRI"]
    pairs, problems, folders = dataset_pairs(data)
    assert [p.name for p in pairs] == ["MRI_CT/7", "MRI_CT/8", "MRI_PET/7", "MRI_SPECT/7"]
    assert [p.modality for p in pairs] == ["ct", "ct", "pet", "spect"]
    assert [e for e, _ in problems] == ["MRI_SPECT/MRI/lonely.png"]
    assert len(folders) == 6
    assert [t.name for t in find_tasks(data)] == ["MRI_CT", "MRI_PET", "MRI_SPECT"]
    (tmp_path / "lonely" / "MRI").mkdir(parents=True)
    (tmp_path / "lonely" / "CT").mkdir()
    touch(tmp_path / "lonely" / "MRI" / "a.png")
    pairs, problems, _ = dataset_pairs(tmp_path / "lonely")  # reported, not raised
    assert pairs == [] and [e for e, _ in problems] == ["MRI/a.png"]


def test_pairs_csv(tmp_path: Path) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text("MRI , Other,out\nm/1.png,o/1.png,one.png\n m/2.png , o/2.png ,\n")
    pairs, problems = read_pairs_csv(csv, tmp_path)
    assert problems == []
    assert [(p.name, p.mri, p.other, p.out) for p in pairs] == [
        ("1", tmp_path / "m/1.png", tmp_path / "o/1.png", "one.png"),
        ("2", tmp_path / "m/2.png", tmp_path / "o/2.png", None),
    ]


def test_pairs_csv_with_bom(tmp_path: Path) -> None:
    """Excel saves UTF-8 with a byte-order mark: the first column is still ``mri``."""
    csv = tmp_path / "pairs.csv"
    csv.write_bytes("\ufeffmri,other\r\nm/é.png,o/é.png\r\n".encode())
    pairs, problems = read_pairs_csv(csv, tmp_path)
    assert problems == [] and pairs[0].name == "é"


def test_pairs_csv_bad_rows_are_problems(tmp_path: Path) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text(
        "mri,other,out\n"
        "m/1.png,o/1.png,../x.png\n"
        "m/2.png,o/2.png,/abs/x.png\n"
        "m/3.png,,\n"
        "m/4.png,o/4\x00.png,\n"
        "m/5.png,o/5.png,a/b.png\n"
        "m/6.png,o/6.png,a/./b.png\n"
        "m/7.png,o/7.png,~/x.png\n"
        "m/8.png,o/8.png,..\\x.png\n"
    )
    pairs, problems = read_pairs_csv(csv, tmp_path)
    assert [p.out for p in pairs] == ["a/b.png"]
    reasons = {entry: why for entry, why in problems}
    assert set(reasons) == {f"pairs.csv line {n}" for n in (2, 3, 4, 5, 7, 8, 9)}
    assert "inside the output folder" in reasons["pairs.csv line 2"]
    assert "inside the output folder" in reasons["pairs.csv line 3"]
    assert "needs both" in reasons["pairs.csv line 4"]
    assert "NUL" in reasons["pairs.csv line 5"]
    assert "also line 6" in reasons["pairs.csv line 7"]


def test_pairs_csv_refusals(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        read_pairs_csv(tmp_path / "none.csv", tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="needs columns mri, other"):
        read_pairs_csv(bad, tmp_path)
    bad.write_bytes(b"mri,other\n\xff\xfe,x\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_pairs_csv(bad, tmp_path)
    bad.write_text("mri,other\n")
    with pytest.raises(UsageError, match="lists no pairs"):
        read_pairs_csv(bad, tmp_path)


def test_safe_output_name() -> None:
    assert safe_output_name("a/b.png") == "a/b.png"
    assert safe_output_name("a\\b.png") == "a/b.png"
    for bad in ("", "../x", "/x", "~/x", "a/../../x", "x\x00"):
        assert safe_output_name(bad) is None
