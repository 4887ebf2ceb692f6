"""fuse_batch: pairs, per-pair failures, parts, the ledger, resume after a kill, and every
backend writing the same bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.checks import no_leftovers
from helpers.cohort import digest_tree, mixed_cohort, outputs_in
from helpers.engines import MeanEngine, never_loaded
from helpers.synth import (
    MR_AFFINE,
    MR_SHAPE,
    PET_AFFINE,
    image_task,
    pet_values,
    rng_image,
    write_mr_series,
    write_nifti,
)
from medfuse.batch import (
    BatchRequest,
    batch_items,
    clean_leftovers,
    fuse_batch,
    part_of,
    record_path,
)
from medfuse.batch.ledger import LEDGER_NAME, read_ledger, read_rows
from medfuse.errors import UsageError
from medfuse.fusion import FuseRequest
from medfuse.io.images import write_image

ROOT = Path(__file__).resolve().parents[2]
PET = FuseRequest(Path(), Path(), Path(), modality="pet")


# -- pairs and failures -------------------------------------------------------------------


def test_fuse_batch_isolates_failures(tmp_path: Path) -> None:
    src = image_task(tmp_path / "in")
    write_image(src / "MRI" / "lonely.png", np.zeros((32, 32), np.float32))
    loads: list[int] = []

    def loader() -> MeanEngine:
        loads.append(1)
        return MeanEngine()

    seen: list[tuple[str, int, int]] = []
    report = fuse_batch(BatchRequest(src, tmp_path / "out"), loader,
                        lambda it, done, total: seen.append((it.name, done, total)))
    assert [(it.name, it.status) for it in report.items] == [
        ("p0", "fused"), ("p1", "fused"), ("p2", "fused"), ("MRI/lonely.png", "failed")]
    assert loads == [1]  # loaded once
    assert sorted(seen)[0] == ("MRI/lonely.png", 1, 4) and seen[-1][1:] == (4, 4)
    assert report.count("fused") == 3 and len(report.failed) == 1
    assert "2D pair" in report.items[0].plan
    again = fuse_batch(BatchRequest(src, tmp_path / "out", skip_existing=True), never_loaded)
    assert again.count("skipped") == 3  # nothing to fuse: the engine is never loaded
    rows = read_rows(tmp_path / "out" / LEDGER_NAME)
    assert [r.status for r in rows] == ["failed", "fused", "fused", "fused",
                                        "skipped", "skipped", "skipped", "failed"]
    assert rows[1].record == "p0.png.json" and (tmp_path / "out" / "p0.png.json").is_file()
    assert rows[1].output == "p0.png" and rows[1].mri == str(src / "MRI" / "p0.png")
    assert rows[0].error and rows[1].started <= rows[1].finished


def test_unexpected_exception_is_one_line_failure(tmp_path: Path) -> None:
    src = image_task(tmp_path / "in")

    class Surprise(MeanEngine):
        def fuse_luminance(self, mri, other, with_masks=False):  # type: ignore[no-untyped-def]
            if len(self.calls) == 1:
                self.calls.append(0)
                raise ValueError("a bad\nsurprise")
            return super().fuse_luminance(mri, other, with_masks)

    report = fuse_batch(BatchRequest(src, tmp_path / "out"), Surprise)
    assert [it.status for it in report.items] == ["fused", "failed", "fused"]
    assert report.items[1].error == "ValueError: a bad surprise"
    assert outputs_in(tmp_path / "out") == ["p0.png", "p2.png"]


def test_batch_items_outputs_and_format(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_mr_series(src / "MRI" / "case1")
    (src / "PET").mkdir()
    write_nifti(src / "PET" / "case1.nii", pet_values(), PET_AFFINE)
    items = batch_items(BatchRequest(src, tmp_path / "out"))
    assert [it.output for it in items] == [tmp_path / "out" / "case1.nii.gz"]
    items = batch_items(BatchRequest(src, tmp_path / "out", format="DICOM"))
    assert [it.output for it in items] == [tmp_path / "out" / "case1"]
    with pytest.raises(UsageError, match="--format"):
        batch_items(BatchRequest(src, tmp_path / "out", format="tiff"))
    with pytest.raises(UsageError, match="input folder not found"):
        batch_items(BatchRequest(tmp_path / "none", tmp_path / "out"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        batch_items(BatchRequest(src, tmp_path / "file"))


def test_two_pairs_with_one_output_fail_the_second(tmp_path: Path) -> None:
    src = image_task(tmp_path / "in", 2)
    csv = tmp_path / "pairs.csv"
    csv.write_text("mri,other\nMRI/p0.png,PET/p0.png\nMRI/p1.png,\nMRI/p1.png,PET/p1.png\n"
                   "MRI/p0.png,PET/p1.png\n")
    report = fuse_batch(BatchRequest(src, tmp_path / "out", csv, template=PET), MeanEngine)
    got = [(it.name, it.status, it.error) for it in report.items]
    assert got[:2] == [("p0", "fused", ""), ("p1", "fused", "")]
    assert got[2] == ("pairs.csv line 5", "failed",
                      "its output p0.png is also pairs.csv line 2's output")
    assert got[3][:2] == ("pairs.csv line 3", "failed")



def test_batch_volumes_to_dicom(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_mr_series(src / "MRI" / "case1")
    (src / "PET").mkdir()
    write_nifti(src / "MRI" / "case2.nii.gz", rng_image(MR_SHAPE), MR_AFFINE)
    write_nifti(src / "PET" / "case1.nii.gz", pet_values(), PET_AFFINE)
    write_nifti(src / "PET" / "case2.nii", pet_values(), PET_AFFINE)
    report = fuse_batch(BatchRequest(src, tmp_path / "out", format="dicom", template=PET),
                        MeanEngine)
    assert [it.status for it in report.items] == ["fused", "fused"], report.items
    assert outputs_in(tmp_path / "out")[0].startswith("case1/")
    assert len(list((tmp_path / "out" / "case1").iterdir())) == MR_SHAPE[2]


def test_bad_run_options(tmp_path: Path) -> None:
    src = image_task(tmp_path / "in", 1)
    for kwargs, match in [({"num_parts": 0}, "--num-parts"),
                          ({"num_parts": 2, "part_id": 2}, "numbered 0 to 1"),
                          ({"backend": "spark"}, "--backend"),
                          ({"workers": 0}, "--workers"),
                          ({"address": "ray://x:1"}, "--address"),
                          ({"resume": True, "skip_existing": True}, "not both")]:
        with pytest.raises(UsageError, match=match):
            fuse_batch(BatchRequest(src, tmp_path / "out", **kwargs), never_loaded)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


# -- parts ----------------------------------------------------------------------------------


def test_parts_cover_every_pair_once_and_are_stable() -> None:
    names = [f"case{i:04d}" for i in range(2000)]
    parts = [part_of(n, 4) for n in names]
    assert set(parts) == {0, 1, 2, 3}
    assert all(350 < parts.count(k) < 650 for k in range(4))  # roughly even
    # A pair's part depends on its name alone, so adding pairs moves no one.
    assert [part_of(n, 4) for n in names[:10]] == parts[:10]
    assert part_of("case0000", 4) == 1 and part_of("s01", 2) == 0  # fixed: sha256, not hash()
    assert {part_of(n, 1) for n in names} == {0}


def test_parts_split_a_batch_and_merge(tmp_path: Path) -> None:
    src = image_task(tmp_path / "in", 6)
    out = tmp_path / "out"
    reports = [fuse_batch(BatchRequest(src, out, num_parts=2, part_id=k), MeanEngine)
               for k in (0, 1)]
    names = [[it.name for it in r.items] for r in reports]
    assert sorted(names[0] + names[1]) == [f"p{i}" for i in range(6)] and names[0] and names[1]
    assert outputs_in(out) == [f"p{i}.png" for i in range(6)]
    assert sorted(p.name for p in out.glob("medfuse-ledger*")) == [
        "medfuse-ledger.part-0-of-2.csv", "medfuse-ledger.part-1-of-2.csv"]
    rows = read_ledger(out)
    assert sorted(r.name for r in rows) == [f"p{i}" for i in range(6)]
    assert {r.part for r in rows} == {"0/2", "1/2"}


# -- resume -----------------------------------------------------------------------------


def test_resume_redoes_only_unfinished_pairs(tmp_path: Path) -> None:
    src = image_task(tmp_path / "in", 4)
    out = tmp_path / "out"
    bad = src / "PET" / "p3.png"
    good = bad.read_bytes()
    bad.write_bytes(good[:10])
    first = fuse_batch(BatchRequest(src, out), MeanEngine)
    assert [it.status for it in first.items] == ["fused", "fused", "fused", "failed"]
    reference = digest_tree(out)
    bad.write_bytes(good)
    (out / "p1.png").unlink()  # lost output
    stale = out / ".medfuse-p2.png.abcd1234.part"  # a killed run's staged file
    stale.write_bytes(b"half")
    slices = out / ".medfuse-slices.x1.part"
    slices.mkdir()
    engine = MeanEngine()
    second = fuse_batch(BatchRequest(src, out, resume=True), lambda: engine)
    assert [it.status for it in second.items] == ["skipped", "fused", "skipped", "fused"]
    assert len(engine.calls) == 2  # p1 and p3 only
    assert no_leftovers(out) and not slices.exists()
    assert {k: v for k, v in digest_tree(out).items() if k != "p3.png"} == reference
    third = fuse_batch(BatchRequest(src, out, resume=True), never_loaded)
    assert third.count("skipped") == 4


def test_resume_trusts_the_provenance_record(tmp_path: Path) -> None:
    """An output without its record (killed between the two) is redone; an output with
    its record counts as done even where no ledger row says so."""
    src = image_task(tmp_path / "in", 3)
    out = tmp_path / "out"
    fuse_batch(BatchRequest(src, out), MeanEngine)
    record_path(out / "p2.png").unlink()
    (out / LEDGER_NAME).unlink()
    engine = MeanEngine()
    report = fuse_batch(BatchRequest(src, out, resume=True), lambda: engine)
    assert [it.status for it in report.items] == ["skipped", "skipped", "fused"]
    assert report.items[0].record == out / "p0.png.json" and (out / "p2.png.json").is_file()


def test_clean_leftovers_spares_other_parts(tmp_path: Path) -> None:
    src = image_task(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    mine = out / ".medfuse-p0.png.q1.part"
    theirs = out / ".medfuse-p1.png.q2.part"
    slices = out / ".medfuse-slices.q3.part"
    for p in (mine, theirs, slices):
        p.write_bytes(b"x")
    items = [it for it in batch_items(BatchRequest(src, out)) if it.name == "p0"]
    assert clean_leftovers(items, sharded=True) == [mine]
    assert theirs.exists() and slices.exists()  # another part may be writing these


def _kill_script(src: Path, out: Path, weights: Path, workers: int) -> str:
    """A batch that stops in its progress callback once three pairs are in the ledger, so
    the kill lands mid-way however fast the rest would go (the parent writes the ledger
    and calls back; workers may still finish outputs the ledger never records)."""
    return textwrap.dedent(f"""
        import time
        from pathlib import Path
        from medfuse.batch import BatchRequest, fuse_batch
        from medfuse.fusion import FuseRequest
        from medfuse.batch.task import EngineSpec

        def hold(item, done, total):
            if done >= 3:
                time.sleep(300)

        if __name__ == "__main__":
            fuse_batch(BatchRequest(Path({str(src)!r}), Path({str(out)!r}), workers={workers},
                                    template=FuseRequest(Path(), Path(), Path(), modality="pet")),
                       EngineSpec({str(weights)!r}, "cpu"), progress=hold)
    """)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_killed_batch_resumes_to_the_serial_result(tmp_path: Path, random_weights: Path,
                                                   workers: int) -> None:
    """SIGKILL to the whole process group once a few pairs are in the ledger; a resumed
    run then leaves exactly what an uninterrupted serial run writes."""
    src = mixed_cohort(tmp_path / "in", 9)
    fuse_batch(BatchRequest(src, tmp_path / "serial", template=PET),
               lambda: _engine(random_weights))
    out = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(_kill_script(src, out, random_weights, workers))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(read_ledger(out)) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert len(read_ledger(out)) < 9  # killed mid-way
    report = fuse_batch(BatchRequest(src, out, template=PET, resume=True),
                        lambda: _engine(random_weights))
    assert report.count("failed") == 0 and report.count("skipped") >= 3
    assert digest_tree(out) == digest_tree(tmp_path / "serial")
    assert no_leftovers(out), sorted(str(p.relative_to(out)) for p in out.rglob("*.part*"))


def _engine(weights: Path):  # type: ignore[no-untyped-def]
    from medfuse.engine import load_model

    return load_model(weights, "cpu")


# -- every backend, the same bytes ----------------------------------------------------------


@pytest.mark.slow
def test_every_backend_writes_the_same_bytes(tmp_path: Path, random_weights: Path) -> None:
    """24 pairs (PNG images, NIfTI volumes, DICOM series): serial, two worker processes,
    two parts merged into one folder and the Ray backend write byte-identical outputs."""
    from medfuse.batch.task import EngineSpec

    src = mixed_cohort(tmp_path / "in", 24)
    spec = EngineSpec(str(random_weights), "cpu")
    runs = {
        "serial": [BatchRequest(src, tmp_path / "serial", template=PET)],
        "workers": [BatchRequest(src, tmp_path / "workers", template=PET, workers=2)],
        "parts": [BatchRequest(src, tmp_path / "parts", template=PET, num_parts=2, part_id=k)
                  for k in (0, 1)],
    }
    try:
        import ray
    except ImportError:  # the optional extra is absent: the other three still agree
        ray = None
    if ray is not None:
        runs["ray"] = [BatchRequest(src, tmp_path / "ray", template=PET, backend="ray",
                                    workers=2)]
        ray.init(num_cpus=2, include_dashboard=False)
    digests = {}
    try:
        for name, requests in runs.items():
            for req in requests:
                report = fuse_batch(req, spec)
                assert report.count("failed") == 0, [it.error for it in report.failed]
            digests[name] = digest_tree(requests[0].out_dir)
    finally:
        if ray is not None:
            ray.shutdown()
    assert len(digests["serial"]) == 24
    for name, d in digests.items():
        assert d == digests["serial"], name
