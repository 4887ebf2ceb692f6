"""``--report``: the QC page and the cohort index as files (the browser tests look at them).

The page must show what was written (its fused pixels equal the output's), say the
record's decisions, carry everything inside itself, and obey the output policy: a report
folder that is an input, holds one, is the output, exists without --force or meets a full
disk is one line and leaves nothing behind.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import hostile_run
from helpers.cli import run


def page_data(page: Path) -> dict:  # type: ignore[type-arg]
    text = page.read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert block is not None
    return json.loads(block.group(1).replace("<\\/", "</"))


def decode(uri: str) -> np.ndarray:
    raw = base64.b64decode(uri.split(",", 1)[1])
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    return img[..., ::-1] if img.ndim == 3 else img


def tiles(mosaic: np.ndarray, dims: list[int], cols: int) -> np.ndarray:
    n, h, w = dims
    return np.stack([mosaic[(k // cols) * h:(k // cols + 1) * h, (k % cols) * w:(k % cols + 1) * w]
                     for k in range(n)])


def no_external_references(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<link|@import|url\(", text)


def test_fuse_report_shows_what_was_written(tmp_path: Path, small_study, mean_engine: None) -> None:  # type: ignore[no-untyped-def]
    from medfuse import read
    from medfuse.io.geometry import stack_view

    out, rep = tmp_path / "fused.nii.gz", tmp_path / "qc"
    res = run("fuse", small_study.path("mri"), small_study.path("other"), "-o", out,
              "--modality", "pet", "--report", rep)
    assert res.code == 0, res.text
    assert sorted(p.name for p in rep.iterdir()) == ["index.html"]
    assert str(rep / "index.html") in res.out
    text = (rep / "index.html").read_text(encoding="utf-8")
    no_external_references(text)
    data = page_data(rep / "index.html")
    written = read(out)
    stack = stack_view(written.data, written.affine, "axial")[0]
    assert data["dims"] == list(stack.shape[:3]) and data["step"] == 1
    fused = tiles(decode(data["images"]["fused"]), data["dims"], data["tiles"])
    np.testing.assert_array_equal(fused, stack)
    assert [p["name"] for p in data["planes"]] == ["axial", "coronal", "sagittal"]
    topics = dict(data["decisions"])
    assert "Registration score" in topics and "PET window" in topics
    assert data["score"] is not None and data["mip"] is not None
    assert data["colorbar"]["high"] > data["colorbar"]["low"]
    assert data["colorbar"]["floor"] is not None
    assert any("sha256" in v for _, v in data["inputs"])


def test_plane_maps_follow_the_stack_views() -> None:
    """The index arithmetic the page's script does (axes, signs, origin) finds the same
    voxel as NumPy's stack views, on a flipped, permuted grid."""
    from medfuse.io.geometry import stack_view
    from medfuse.report.page import plane_maps

    shape = (5, 7, 6)
    affine = np.array([[0, 0, -2.0, 10], [3.0, 0, 0, -4], [0, -1.5, 0, 2], [0, 0, 0, 1]])
    volume = np.arange(np.prod(shape)).reshape(shape)
    for p in plane_maps(shape, affine):
        view = stack_view(volume, affine, p["name"])[0]
        assert list(view.shape) == p["shape"]
        for k, r, c in [(0, 0, 0), (view.shape[0] - 1, 1, 2), (1, view.shape[1] - 1, 0)]:
            a = [0, 0, 0]
            for d, q in enumerate((k, r, c)):
                a[p["axes"][d]] = p["origin"][p["axes"][d]] + p["signs"][d] * q
            assert volume[tuple(a)] == view[k, r, c]


def test_big_grids_are_thinned() -> None:
    from medfuse.fusion import FusionResult
    from medfuse.prepare.pair import split_pair
    from medfuse.report.collect import SliceCollector

    col = SliceCollector(max_side=16)
    for i in range(40):
        mri = np.full((40, 30), i / 40, np.float32)
        pair = split_pair(mri, np.zeros((40, 30, 3), np.float32), "pet")
        col(i, FusionResult(np.repeat(mri[..., None], 3, -1), mri, "pet"), pair)
    mri, other, fused, kept = col.stacks(40)
    assert col.step == 3 and kept == list(range(0, 40, 3))
    assert mri.shape == (14, 14, 10) and fused.shape == (14, 14, 10, 3)
    assert mri[1, 0, 0] == round(3 / 40 * 255)


def test_batch_report_lists_every_pair(tmp_path: Path, cohort: Path, mean_engine: None) -> None:
    rep = tmp_path / "qc"
    res = run("batch", cohort, tmp_path / "out", "--report", rep)
    assert res.code == 1, res.text  # the broken pair failed
    text = (rep / "index.html").read_text(encoding="utf-8")
    no_external_references(text)
    rows = {r["n"]: r for r in page_data(rep / "index.html")["rows"]}
    assert sorted(rows) == ["broken", "p0", "p1", "p2"]
    assert rows["broken"]["s"] == "failed" and rows["broken"]["e"] and not rows["broken"]["p"]
    for name in ("p0", "p1", "p2"):
        r = rows[name]
        assert r["s"] == "fused" and r["r"] is not None and r["t"] is not None
        assert (rep / r["p"]).is_file() and (rep / r["i"]).is_file()
        assert page_data(rep / r["p"])["title"] == name
    assert not [p for p in rep.parent.iterdir() if p.name.startswith(".medfuse-")]


@pytest.mark.parametrize("case", ["is-input", "holds-input", "exists", "holds-output"])
def test_bad_report_folder_is_one_line(tmp_path: Path, small_study, mean_engine: None,  # type: ignore[no-untyped-def]
                                       case: str) -> None:
    import shutil

    mri = tmp_path / "in" / "mri.nii.gz"
    mri.parent.mkdir()
    shutil.copy(small_study.path("mri"), mri)
    out = tmp_path / "res" / "fused.nii.gz"
    report = {"is-input": mri, "holds-input": tmp_path / "in", "exists": tmp_path / "old",
              "holds-output": tmp_path / "res"}[case]
    if case == "exists":
        report.mkdir()
        (report / "keep.txt").write_text("mine")
    res = run("fuse", mri, small_study.path("other"), "-o", out, "--report", report)
    assert res.code == 2, res.text
    assert len(res.err_lines()) == 1 and "--report" in res.err, res.err
    assert not out.exists() and not out.parent.exists()
    if case == "exists":
        assert [p.name for p in report.iterdir()] == ["keep.txt"]


def test_report_on_a_full_disk_leaves_nothing(tmp_path: Path, small_study) -> None:  # type: ignore[no-untyped-def]
    """A write limit that the output and record fit under but the page does not."""
    rep = tmp_path / "qc"
    res = hostile_run.run("fuse", small_study.path("mri"), small_study.path("other"), "-o",
                          tmp_path / "fused.nii.gz", "--modality", "pet", "--report", rep,
                          env={"HOSTILE_FSIZE": "100000"}, timeout=120)
    assert res.returncode == 1, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot write the report" in lines[0], res.stderr
    assert not rep.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".medfuse-")]
