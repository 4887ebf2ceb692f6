"""medfuse.evaluation.run: the loop over image and volume pairs, per-item problems, and
the rule that a saved fused file scores exactly as it did in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.engines import MeanEngine
from helpers.eval_data import ANATOMY, blob_image, image_dataset, save, volume_task
from helpers.synth import MR_AFFINE, write_nifti
from medfuse.errors import UsageError
from medfuse.evaluation import (
    ANATOMY_LEVEL,
    MethodSpec,
    evaluate,
    is_image_pair,
    parse_fused,
    parse_method,
    parse_metrics,
    parse_profiles,
)
from medfuse.io.layout import find_tasks
from medfuse.metrics import METRIC_NAMES, compute_metrics_colour

BOTH = ["standard", "toolbox2022"]


def test_parse_profiles_and_metrics() -> None:
    assert parse_profiles(None) == ["standard"]
    assert parse_profiles(["all"]) == ["standard", "toolbox2022"]
    assert parse_profiles(["toolbox2022", "standard", "standard"]) == ["toolbox2022", "standard"]
    with pytest.raises(UsageError, match="--profile"):
        parse_profiles(["matlab"])
    assert parse_metrics(None) == list(METRIC_NAMES)
    assert parse_metrics(["ssim,en", "Qabf"]) == ["EN", "SSIM", "Qabf"]
    with pytest.raises(UsageError, match="--metric"):
        parse_metrics(["PSNR"])


# -- image pairs -------------------------------------------------------------------------------


def test_images_every_method_every_profile(tmp_path: Path) -> None:
    root = image_dataset(tmp_path / "data")
    save(root / "MRI_CT" / "val" / "MRI" / "105.png", blob_image(9))  # no partner
    tasks = find_tasks(root, "val", images_only=False)
    assert all(is_image_pair(p) for t in tasks for p in t.pairs)
    steps: list[int] = []
    methods = [MethodSpec("average", "average"), MethodSpec("net", "gesenet")]
    result = evaluate(tasks, methods, BOTH, ["EN", "Qabf"], engines={"net": MeanEngine()},
                      examples=2, progress=steps.append)
    assert len(result.rows) == 5 * 2 * 2 and all(r.status == "ok" for r in result.rows)
    assert [(r.image, r.method, r.profile) for r in result.rows[:4]] == [
        ("101", "average", "standard"), ("101", "average", "toolbox2022"),
        ("101", "net", "standard"), ("101", "net", "toolbox2022")]
    assert all(r.slices is None and r.note == "" for r in result.rows)
    # an averaging network is the average rule: same numbers in both columns
    by = {(r.image, r.method, r.profile): r.values for r in result.rows}
    for image in ("101", "202"):
        assert by[(image, "net", "standard")] == pytest.approx(by[(image, "average", "standard")])
    assert sum(steps) == 5 * 2
    assert [(e.task, e.image) for e in result.examples] == [
        ("MRI_CT", "101"), ("MRI_CT", "103"), ("MRI_PET", "201"), ("MRI_PET", "202")]
    assert set(result.examples[0].fused) == {"average", "net"}
    (unmatched,) = result.problems
    assert unmatched.kind == "unmatched" and "MRI/105.png" in unmatched.message
    assert result.method_info["average"] == "pixel average (A + B) / 2"


def test_saved_images_score_like_the_run(tmp_path: Path) -> None:
    root = image_dataset(tmp_path / "data")
    tasks = find_tasks(root, "val", images_only=False)
    saved = tmp_path / "saved"
    first = evaluate(tasks, [parse_method("gff")], BOTH, save_fused=saved, split="val")
    again = evaluate(tasks, [parse_fused(f"gff={saved / 'gff'}")], BOTH, split="val")
    assert [(r.image, r.values) for r in first.rows] == [(r.image, r.values) for r in again.rows]
    with pytest.raises(UsageError, match="--force"):
        evaluate(tasks, [parse_method("gff")], save_fused=saved)
    with pytest.raises(UsageError, match="inside input folder"):
        evaluate(tasks, [parse_method("gff")], save_fused=root / "MRI_CT" / "val" / "MRI" / "out")
    with pytest.raises(UsageError, match="holds input"):
        evaluate(tasks, [parse_method("gff")], save_fused=root)


# -- volume pairs ------------------------------------------------------------------------------


def _per_slice(pair_mri: Path, pair_other: Path, rule: str, indices: list[int]
               ) -> list[dict[str, float]]:
    """Independent check: each slice fused by the rule and scored on 8-bit values."""
    from medfuse import baselines
    from medfuse.fusion import prepared_slices, read_pair_plan
    from medfuse.io.images import to_uint

    plan, _ = read_pair_plan(pair_mri, pair_other, modality="pet")
    out = []
    for batch in prepared_slices(plan, indices):
        for _, p in batch:
            fused = baselines.fuse_prepared([p], rule)[0].image
            a, b, f = (to_uint(x, 8).astype(np.float64) for x in (p.mri_y, p.other_image, fused))
            out.append(compute_metrics_colour(a, b, f, "standard"))
    return out


def test_volume_pair_mean_over_slices_with_anatomy(tmp_path: Path) -> None:
    root = volume_task(tmp_path / "MRI_PET")
    tasks = find_tasks(root, images_only=False)
    (pair,) = tasks[0].pairs
    assert not is_image_pair(pair)
    result = evaluate(tasks, [parse_method("average"), parse_method("max")], BOTH, examples=1)
    assert not result.problems
    row = result.rows[0]
    assert (row.image, row.method, row.profile, row.status) == ("s1", "average", "standard", "ok")
    assert row.slices == list(ANATOMY)  # the empty slices of air are left out
    assert row.note == "mean over 4 of 8 axial slices (2-5)"
    want = _per_slice(pair.mri, pair.other, "average", list(ANATOMY))
    for metric in METRIC_NAMES:
        assert row.values[metric] == pytest.approx(np.mean([w[metric] for w in want]), rel=1e-12)
    (example,) = result.examples
    assert example.caption == "s1 #4" and example.other.shape == (32, 32, 3)  # pseudo-colour
    assert set(example.fused) == {"average", "max"} and example.mri.dtype == np.uint8
    assert 0 < ANATOMY_LEVEL < 0.1


def test_volume_one_slice_save_and_rescore(tmp_path: Path) -> None:
    root = volume_task(tmp_path / "MRI_PET")
    tasks = find_tasks(root, images_only=False)
    (pair,) = tasks[0].pairs
    one = evaluate(tasks, [parse_method("max")], ["standard"], slice_index=3)
    assert one.rows[0].slices == [3] and one.rows[0].note.startswith("mean over 1 of 8")
    assert one.rows[0].values == _per_slice(pair.mri, pair.other, "max", [3])[0]
    air = evaluate(tasks, [parse_method("max")], ["standard"], slice_index=1)
    assert air.rows[0].slices == [1] and air.rows[0].status == "ok"  # asked for: scored
    saved = tmp_path / "saved"
    first = evaluate(tasks, [parse_method("max")], BOTH, save_fused=saved)
    files = sorted(p.name for p in (saved / "max" / "MRI_PET" / "s1").iterdir())
    assert files == [f"axial_{k:04d}.png" for k in ANATOMY]
    again = evaluate(tasks, [parse_fused(f"max={saved / 'max'}")], BOTH)
    assert [r.values for r in first.rows] == [r.values for r in again.rows]
    (saved / "max" / "MRI_PET" / "s1" / "axial_0003.png").unlink()
    missing = evaluate(tasks, [parse_fused(f"max={saved / 'max'}")], ["standard"])
    (problem,) = missing.problems
    assert problem.kind == "missing" and "s1/axial_0003.png" in problem.message
    assert missing.rows[0].status == "missing"
    bad = evaluate(tasks, [parse_method("max")], ["standard"], slice_index=8)
    assert bad.errors and "slices 0 to 7" in bad.errors[0].message


def test_volume_problems_do_not_stop_the_run(tmp_path: Path) -> None:
    root = volume_task(tmp_path / "MRI_PET", ("s1", "s2", "s3"))
    empty = np.zeros((32, 32, 8), np.float32)
    empty[0, 0, 0] = 1.0  # one bright voxel: no slice has anatomy
    write_nifti(root / "MRI" / "s2.nii.gz", empty, MR_AFFINE)
    save(root / "MRI" / "s3.png", blob_image(1, size=32))  # a 2D MRI beside a volume
    (root / "MRI" / "s3.nii.gz").unlink()
    tasks = find_tasks(root, images_only=False)
    result = evaluate(tasks, [parse_method("average")], ["standard"])
    status = {r.image: r.status for r in result.rows}
    assert status == {"s1": "ok", "s2": "error", "s3": "error"}
    messages = {p.image: p.message for p in result.errors}
    assert "no axial slice has anatomy" in messages["s2"]
    assert "--slice" in messages["s3"]


def test_dicom_series_folders_pair_by_name(tmp_path: Path) -> None:
    """A DICOM series is a folder; MRI/s1/ pairs with PET/s1/ like files do."""
    from helpers.synth import mr_values, write_mr_series

    root = tmp_path / "MRI_PET"
    write_mr_series(root / "MRI" / "s1")
    write_mr_series(root / "PET" / "s1", (mr_values() // 4).astype(np.int16), modality="PT")
    tasks = find_tasks(root, images_only=False)
    (pair,) = tasks[0].pairs
    assert pair.mri.is_dir() and not is_image_pair(pair)
    result = evaluate(tasks, [parse_method("average")], ["standard"])
    (row,) = result.rows
    assert row.status == "ok", result.problems
    assert row.slices and row.note.startswith(f"mean over {len(row.slices)} of 8 axial slices")
