"""medfuse.registration: the registration score's parts, ITK geometry conversions, and
``--register`` bringing a misaligned study back (phantom quickly; the MNI head at 2 mm in a
slow test, with the 1 mm timing in docs/formats.md)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.cli import run
from helpers.synth import MR_AFFINE, OBLIQUE_PERMUTED
from medfuse.errors import UsageError
from medfuse.io.read import read
from medfuse.io.volume import Volume
from medfuse.prepare.plan import plan_fusion
from medfuse.registration import (
    INSTALL_HINT,
    RegistrationScore,
    containment,
    head_mask,
    matrix_of,
    register,
    to_sitk_image,
)

sitk = pytest.importorskip("SimpleITK")


# -- the score's parts ----------------------------------------------------------------------


def test_head_mask_fills_dark_skull_and_widens() -> None:
    """A bright ring (scalp) around a dark band (skull) around a mid disc (brain): the head
    is the whole disc; a margin of one voxel widens it by one voxel in-plane."""
    yy, xx = np.mgrid[:21, :21]
    r = np.hypot(yy - 10, xx - 10)
    plane = np.where(r <= 8, 0.8, 0.0)
    plane[(r > 5) & (r <= 7)] = 0.02  # dark skull inside the bright scalp
    mri = plane[None].astype(np.float32)
    head = head_mask(mri, (1.0, 1.0, 1.0), margin_mm=0)
    np.testing.assert_array_equal(head[0], r <= 8)
    wide = head_mask(mri, (1.0, 1.0, 1.0), margin_mm=1.0)
    assert wide.sum() > head.sum() and wide[0][r <= 8].all() and not wide[0][r > 9.5].any()


def test_containment_counts_what_lies_outside_the_field_of_view() -> None:
    mri = np.zeros((1, 10, 10), np.float32)
    mri[0, 2:8, 2:8] = 1.0  # a 6x6 head
    other = np.zeros((1, 10, 10), bool)
    other[0, 3:7, 3:7] = True  # 16 coloured voxels, all on the head
    mm = (10.0, 10.0, 10.0)  # voxels far larger than the margin: no widening
    score, detail = containment(mri, other, mm)
    assert score == 1.0 and "16 of 16" in detail
    other[0, 0, :] = True  # 10 more, in air
    assert containment(mri, other, mm)[0] == pytest.approx(16 / 26)
    # 26 inside the grid, but the other image colours 52 voxels in all: half lie elsewhere
    assert containment(mri, other, mm, 52.0)[0] == pytest.approx(16 / 52)
    assert containment(mri, np.zeros_like(other), mm)[0] is None


def test_score_record_and_warning_flag() -> None:
    ok = RegistrationScore(0.97)
    assert not ok.warned and ok.as_dict()["warned"] is False
    assert RegistrationScore(0.5).warned
    registered = RegistrationScore(0.5, registered_by="--register")  # low, but registered
    assert not registered.warned and "registered by --register" in registered.describe()
    assert RegistrationScore(1.0, outline_distance=0.3).warned
    assert RegistrationScore(1.0, plane_distance_mm=82.3).warned
    assert "slices 82.3 mm apart" in RegistrationScore(1.0, plane_distance_mm=82.3).describe()


# -- ITK geometry ------------------------------------------------------------------------------


@pytest.mark.parametrize("affine", [MR_AFFINE, OBLIQUE_PERMUTED])
def test_sitk_image_puts_every_voxel_where_the_affine_does(affine: np.ndarray) -> None:
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    data[0, 0, 0] = np.nan
    image = to_sitk_image(Volume(data=data, affine=affine))
    assert image.GetSize() == (5, 6, 7)
    for index in ((0, 0, 0), (4, 0, 6), (2, 5, 3)):
        ras = affine @ np.array([*index, 1.0])
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-9)
    arr = sitk.GetArrayFromImage(image)  # (k, j, i)
    assert arr[1, 2, 3] == data[3, 2, 1] and np.isfinite(arr).all()


def test_matrix_of_matches_itk_on_points() -> None:
    tx = sitk.Euler3DTransform()
    tx.SetCenter((10.0, -5.0, 3.0))
    tx.SetRotation(0.1, -0.2, 0.3)
    tx.SetTranslation((4.0, 5.0, -6.0))
    m = matrix_of(tx)
    for lps in ((0.0, 0.0, 0.0), (30.0, -20.0, 11.0)):
        ras = np.array([-lps[0], -lps[1], lps[2], 1.0])
        mapped = m @ ras
        expected = tx.TransformPoint(lps)
        np.testing.assert_allclose([-mapped[0], -mapped[1], mapped[2]], expected, atol=1e-9)


def test_missing_simpleitk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    vol = Volume(data=np.zeros((8, 8, 8), np.float32), affine=np.eye(4))
    with pytest.raises(UsageError, match=r'needs SimpleITK.*pip install "medfuse\[register\]"'):
        register(vol, vol, "rigid")
    assert INSTALL_HINT == 'pip install "medfuse[register]"'


def test_register_refuses_slices_and_unknown_methods() -> None:
    flat = Volume(data=np.zeros((16, 16, 1), np.float32), affine=np.eye(4))
    with pytest.raises(UsageError, match="single slice"):
        register(flat, flat, "rigid")
    with pytest.raises(UsageError, match="--register 'elastic'"):
        register(flat, flat, "elastic")
    with pytest.raises(UsageError, match="these inputs are single slices"):
        plan_fusion(flat, flat, modality="ct", register="rigid")


# -- registering generated studies ------------------------------------------------------------


def _misaligned(tmp_path: Path, resolution: float, anatomy: str):  # type: ignore[no-untyped-def]
    from medfuse.studies import Rigid, generate_study

    return generate_study("pet", tmp_path / f"mis{resolution:g}{anatomy}", resolution=resolution,
                          anatomy=anatomy, seed=1, misalign=Rigid((10.0, 0.0, 0.0), (15.0, 0.0, 0.0)))


def _lesion_errors(study, matrix: np.ndarray) -> list[float]:  # type: ignore[no-untyped-def]
    """Distance (mm) between each lesion in the MRI and where the registered PET puts it."""
    out = []
    for lesion in study.lesions:
        seen = np.linalg.inv(matrix) @ np.array([*lesion.centre_in_other_mm, 1.0])
        out.append(float(np.linalg.norm(seen[:3] - np.asarray(lesion.centre_mm))))
    return out


def test_rigid_registration_of_a_phantom_study(tmp_path: Path) -> None:
    """A PET rotated 10 deg and shifted 15 mm comes back to within one MRI voxel (3 mm) at
    both lesions (measured 0.8 and 0.1 mm)."""
    study = _misaligned(tmp_path, 3, "phantom")
    plan = plan_fusion(read(study.mri_path), read(study.other_path), modality="pet",
                       register="rigid")
    assert plan.registration is not None and plan.resampled
    assert max(_lesion_errors(study, plan.registration.matrix_ras)) < 3.0
    score = plan.registration_score
    assert score is not None and score.score is not None and score.score > 0.9 and not score.warned
    assert plan.registration.describe().startswith("registered rigid (Mattes MI")
    assert "Euler3DTransform" in plan.registration.itk_transform
    record = plan.decisions()["registration"]
    assert record["method"] == "rigid" and len(record["matrix_ras"]) == 4


@pytest.mark.slow
def test_rigid_registration_of_the_mni_head_at_2mm(tmp_path: Path) -> None:
    """The issue's acceptance case at 2 mm: 10 deg and 15 mm misalignment, back within one
    MRI voxel (2 mm) at the lesion; measured 0.3-0.5 mm in about 2 s (1 mm: 0.1 mm in 11 s,
    see docs/formats.md). The time bound here is loose: the test machines are shared.
    Affine: within 2 mm (measured 0.3-1.0 mm; it shrinks the blurred PET brain 1-2%)."""
    pytest.importorskip("nilearn")
    study = _misaligned(tmp_path, 2, "mni")
    started = time.perf_counter()
    plan = plan_fusion(read(study.mri_path), read(study.other_path), modality="pet",
                       register="rigid")
    seconds = time.perf_counter() - started
    assert plan.registration is not None
    assert max(_lesion_errors(study, plan.registration.matrix_ras)) < 1.0
    assert seconds < 30
    affine = plan_fusion(read(study.mri_path), read(study.other_path), modality="pet",
                         register="affine")
    assert affine.registration is not None
    assert max(_lesion_errors(study, affine.registration.matrix_ras)) < 2.0


def test_cli_register_and_save_transform(tmp_path: Path, mean_engine: None) -> None:
    study = _misaligned(tmp_path, 3, "phantom")
    out, tfm = tmp_path / "out" / "fused.nii.gz", tmp_path / "out" / "pet_to_mri.tfm"
    r = run("fuse", study.mri_path, study.other_path, "-o", out, "-m", "pet",
            "--register", "rigid", "--save-transform", tfm, "-v")
    assert r.code == 0, r.text
    assert "registered rigid" in r.err and str(tfm) in r.out
    saved = sitk.ReadTransform(str(tfm))
    from medfuse.provenance import read_record

    record = read_record(tmp_path / "out" / "fused.nii.gz.json")
    reg = record["decisions"]["registration"]
    assert reg["itk_transform"] == tfm.read_text() and record["outputs"]["transform"] == str(tfm)
    np.testing.assert_allclose(matrix_of(sitk.Euler3DTransform(saved)), reg["matrix_ras"],
                               atol=1e-5)
    assert "SimpleITK" in record["versions"] and "register" in record["timings_s"]
    # refused up front: an existing transform without --force, a transform without --register
    r = run("fuse", study.mri_path, study.other_path, "-o", tmp_path / "b.nii.gz", "-m", "pet",
            "--register", "rigid", "--save-transform", tfm)
    assert r.code == 2 and "--save-transform" in r.err and "exists" in r.err
    assert not (tmp_path / "b.nii.gz").exists() and not (tmp_path / "b.nii.gz.json").exists()
    r = run("fuse", study.mri_path, study.other_path, "-o", tmp_path / "c.nii.gz",
            "--save-transform", tmp_path / "t.tfm")
    assert r.code == 2 and "needs --register" in r.err
    r = run("fuse", study.mri_path, study.other_path, "-o", tmp_path / "c.nii.gz",
            "--register", "elastic")
    assert r.code == 2 and "--register 'elastic'" in r.err


def test_records_are_read_under_the_new_and_the_old_key() -> None:
    from medfuse.registration import read_score

    assert read_score({"registration_score": {"score": 0.9}}) == {"score": 0.9}
    assert read_score({"misregistration": {"score": 0.7}}) == {"score": 0.7}  # older records
    assert read_score({"registration_score": None}) is None
