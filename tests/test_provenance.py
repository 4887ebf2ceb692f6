"""medfuse.provenance: where the record goes, what it holds, and that it obeys the output
policy (atomic, refused when it exists without --force, never an input)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from helpers.cli import run
from helpers.engines import MeanEngine
from helpers.engines import never_loaded as never
from helpers.synth import PET_AFFINE, pet_values, write_mr_series, write_nifti
from medfuse.errors import UsageError
from medfuse.fusion import FuseRequest, fuse_files
from medfuse.io.images import write_image
from medfuse.phantom import brain_phantom
from medfuse.provenance import SCHEMA, hash_input, read_record, record_path

#: The record's top-level keys and those of its parts (docs/formats.md lists them).
TOP = {"schema", "created", "request", "inputs", "decisions", "summary", "outputs", "engine",
       "versions", "warnings", "timings_s"}
DECISIONS = {"modality", "axis", "slices_in_plan", "two_d", "mri_window", "other_window",
             "suv", "transparency_floor", "colormap", "gamut_map", "grid", "registration",
             "registration_score", "checks", "notes", "info"}
INPUT = {"path", "sha256", "kind", "files", "bytes", "modality", "modality_source", "dicom",
         "format", "shape", "rgb", "voxel_mm", "affine_ras", "has_geometry", "description"}


@pytest.mark.parametrize("output,record", [
    ("fused.nii.gz", "fused.nii.gz.json"),
    ("fused.nii", "fused.nii.json"),
    ("out.png", "out.png.json"),
    ("dir/out.PNG", "dir/out.PNG.json"),
    ("one.dcm", "one.dcm.json"),
    ("fused_dcm", "fused_dcm.json"),
    ("fused_dcm/", "fused_dcm.json"),
    ("study.v2", "study.v2.json"),
])
def test_record_path(output: str, record: str) -> None:
    assert record_path(output) == Path(record)


def test_hash_of_a_file_and_of_a_folder(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    assert hash_input(f) == {"sha256": hashlib.sha256(b"abc").hexdigest(), "kind": "file",
                             "files": 1, "bytes": 3}
    folder = tmp_path / "series"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.dcm").write_bytes(b"BB")
    (folder / "sub" / "a.dcm").write_bytes(b"A")
    (folder / ".hidden").write_bytes(b"ignored")
    got = hash_input(folder)
    # sorted relative paths: "b.dcm" < "sub/a.dcm"
    assert got["sha256"] == hashlib.sha256(b"BBA").hexdigest()
    assert got["files"] == 2 and got["bytes"] == 3 and got["kind"] == "folder"


@pytest.fixture
def volumes(tmp_path: Path) -> tuple[Path, Path]:
    return (write_mr_series(tmp_path / "mr"),
            write_nifti(tmp_path / "pet.nii.gz", pet_values(), PET_AFFINE))


def test_record_beside_a_nifti_output(volumes: tuple[Path, Path], tmp_path: Path) -> None:
    mr, pet = volumes
    report = fuse_files(FuseRequest(mr, pet, tmp_path / "out" / "fused.nii.gz", modality="pet"),
                        MeanEngine)
    assert report.record == tmp_path / "out" / "fused.nii.gz.json"
    on_disk = read_record(report.record)
    assert on_disk == report.provenance
    assert set(on_disk) == TOP and on_disk["schema"] == SCHEMA
    assert set(on_disk["decisions"]) == DECISIONS
    assert set(on_disk["inputs"]) == {"mri", "other", "selection"}
    for role in ("mri", "other"):
        assert INPUT <= set(on_disk["inputs"][role])
    mri, other = on_disk["inputs"]["mri"], on_disk["inputs"]["other"]
    assert mri["kind"] == "folder" and mri["files"] == 8 and mri["dicom"]["patient_id"] == "ID-42"
    assert other["sha256"] == hashlib.sha256(pet.read_bytes()).hexdigest()
    assert other["modality"] == "pet" and other["modality_source"] == "--modality"
    d = on_disk["decisions"]
    assert d["suv"]["available"] is False and "NIFTI" in d["suv"]["reason"]
    assert d["transparency_floor"]["value"] == pytest.approx(report.plan.floor)
    assert d["other_window"]["source"].startswith("PET default")
    assert d["registration_score"]["score"] == pytest.approx(1.0)
    assert d["grid"]["resampled"] is True and d["registration"] == {"method": "none"}
    assert on_disk["outputs"]["paths"] == [str(tmp_path / "out" / "fused.nii.gz")]
    assert on_disk["outputs"]["sha256"] == {
        "fused.nii.gz": hashlib.sha256((tmp_path / "out" / "fused.nii.gz").read_bytes()
                                       ).hexdigest()}
    assert on_disk["engine"]["type"] == "MeanEngine" and on_disk["engine"]["device"] == "cpu"
    assert set(on_disk["versions"]) >= {"medfuse", "torch", "numpy", "pydicom", "nibabel"}
    assert {"read", "plan", "engine_load", "fuse_and_write", "commit", "total"} <= set(
        on_disk["timings_s"])
    assert on_disk["summary"] == report.plan.describe()


def test_records_of_png_slices_dicom_folders_and_png_pairs(volumes: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    mr, pet = volumes
    report = fuse_files(FuseRequest(mr, pet, tmp_path / "png" / "f.png", slices="1:3"),
                        MeanEngine)
    assert report.record == tmp_path / "png" / "f.png.json"
    assert any("modality not stated" in w for w in report.provenance["warnings"])
    report = fuse_files(FuseRequest(mr, pet, tmp_path / "fused_dcm", format="dicom",
                                    modality="pet"), MeanEngine)
    assert report.record == tmp_path / "fused_dcm.json" and report.record.is_file()
    assert not (tmp_path / "fused_dcm" / "fused_dcm.json").exists()  # beside, not inside
    mri, other = brain_phantom(32)
    a = write_image(tmp_path / "a.png", mri)
    b = write_image(tmp_path / "b.png", other)
    report = fuse_files(FuseRequest(a, b, tmp_path / "pair.png"), MeanEngine)
    record = read_record(tmp_path / "pair.png.json")
    assert record["decisions"]["transparency_floor"] is None
    assert record["inputs"]["other"]["modality_source"] == "ordinary image: grey = CT, colour = PET"


def test_existing_record_is_refused_without_force(volumes: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    mr, pet = volumes
    (tmp_path / "f.nii.gz.json").write_text("keep")
    request = FuseRequest(mr, pet, tmp_path / "f.nii.gz", modality="pet")
    with pytest.raises(UsageError, match="provenance record .*f.nii.gz.json exists.*--force"):
        fuse_files(request, never)
    assert ((tmp_path / "f.nii.gz.json").read_text() == "keep"
            and not (tmp_path / "f.nii.gz").exists())
    request.force = True
    report = fuse_files(request, MeanEngine)
    assert json.loads((tmp_path / "f.nii.gz.json").read_text())["schema"] == SCHEMA
    assert report.record == tmp_path / "f.nii.gz.json"


def test_record_never_overwrites_an_input(tmp_path: Path) -> None:
    """A DICOM MRI stored as ``scan.png.json`` (read by its signature) beside the output
    ``scan.png``: the record would overwrite the input, refused even with --force."""
    import shutil

    from helpers.synth import pydicom_sample

    mri = tmp_path / "scan.png.json"
    shutil.copy(pydicom_sample("MR_small.dcm"), mri)
    before = mri.read_bytes()
    ct = write_image(tmp_path / "ct.png", np.full((64, 64), 0.5, np.float32))
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        fuse_files(FuseRequest(mri, ct, tmp_path / "scan.png", force=True), never)
    assert mri.read_bytes() == before and not (tmp_path / "scan.png").exists()


def test_preview_or_transform_named_like_the_record_is_refused(volumes: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    mr, pet = volumes
    with pytest.raises(UsageError, match="is the provenance record"):
        fuse_files(FuseRequest(mr, pet, tmp_path / "f.nii.gz", preview=tmp_path / "f.nii.gz.json"),
                   never)


def test_cli_writes_the_record_quietly(volumes: tuple[Path, Path], tmp_path: Path,
                                       mean_engine: None) -> None:
    """The record path is said with -v only: stdout keeps listing the outputs as before."""
    mr, pet = volumes
    out = tmp_path / "f.nii.gz"
    r = run("fuse", mr, pet, "-o", out, "-m", "pet")
    assert r.code == 0 and r.out == f"{out}\n" and (tmp_path / "f.nii.gz.json").is_file()
    r = run("fuse", mr, pet, "-o", out, "-m", "pet", "-v", "--force")
    assert f"provenance record: {tmp_path / 'f.nii.gz.json'}" in r.err
    r = run("fuse", mr, pet, "-o", out, "-m", "pet")
    assert r.code == 2 and "exists" in r.err and r.err.count("\n") == 1
    record = read_record(tmp_path / "f.nii.gz.json")
    assert np.isfinite(record["decisions"]["registration_score"]["score"])
