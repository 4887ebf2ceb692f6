"""medfuse.masks: each branch's principal region for one slice of any supported pair
(stand-in engine; the network's own masks are checked in the engine and parity tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.engines import MeanEngine
from helpers.engines import never_loaded as never
from helpers.synth import MR_AFFINE, PET_AFFINE, mr_values, pet_values, write_mr_series, write_nifti
from medfuse.errors import InputError, UsageError
from medfuse.io.images import read_pixels
from medfuse.masks import MASK_FILES, MaskReport, read_mask_json, region_masks


def check_folder(out: Path, report: MaskReport) -> dict:  # type: ignore[type-arg]
    assert sorted(p.name for p in out.iterdir()) == sorted(MASK_FILES)
    assert report.outputs == [out / name for name in MASK_FILES]
    data = read_mask_json(out / "masks.json")
    for branch in ("mri", "other"):
        mask = read_pixels(out / f"mask_{branch}.png")[0]
        assert mask.shape == tuple(data["shape"]) and set(np.unique(mask)) <= {0.0, 1.0}
        fraction = data[f"{branch}_branch"]["principal_fraction"]
        assert fraction == pytest.approx(float(mask.mean())) and 0.0 <= fraction <= 1.0
        overlay = read_pixels(out / f"overlay_{branch}.png")[0]
        assert overlay.shape[:2] == tuple(data["shape"])
        if mask.any():
            assert overlay.ndim == 3  # tinted red where the mask is set
    assert data["mri_branch"]["sparse_channels_per_layer"] == [1, 2, 3, 4]
    assert data["other_branch"]["sparse_channels_per_layer"] == [4, 3, 2, 1]
    assert data["channels_per_layer"] == 32
    assert not [p for p in out.parent.rglob("*") if ".part" in p.name]
    return data


def test_image_pair(pair_files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "masks"
    report = region_masks(*pair_files, out, MeanEngine)
    data = check_folder(out, report)
    assert data["slice"] is None and data["modality"] == "pet" and data["shape"] == [64, 64]
    assert data["mri"] == str(pair_files[0]) and data["weights"] == ""
    # MeanEngine's masks split the plane between the branches
    assert data["mri_branch"]["principal_fraction"] + data["other_branch"]["principal_fraction"] \
        == pytest.approx(1.0)


def test_nifti_pair_with_slice(tmp_path: Path) -> None:
    mri = write_nifti(tmp_path / "mr.nii.gz", mr_values().astype(np.float32), MR_AFFINE)
    pet = write_nifti(tmp_path / "pet.nii.gz", pet_values(), PET_AFFINE)
    report = region_masks(mri, pet, tmp_path / "m", MeanEngine, slice_index=2, axis="coronal")
    data = check_folder(tmp_path / "m", report)
    assert (data["slice"], data["axis"], data["shape"]) == (2, "coronal", [8, 32])
    assert any("modality not stated" in w for w in report.warnings)
    with pytest.raises(UsageError, match="slices 0 to 31"):
        region_masks(mri, pet, tmp_path / "m2", never, slice_index=32, axis="coronal")


def test_dicom_pair_middle_slice(tmp_path: Path) -> None:
    mr = write_mr_series(tmp_path / "mr")
    pt = write_mr_series(tmp_path / "pt", mr_values() // 2, modality="PT")
    report = region_masks(mr, pt, tmp_path / "m", MeanEngine)
    data = check_folder(tmp_path / "m", report)
    assert (data["slice"], data["axis"], data["modality"]) == (4, "axial", "pet")
    assert report.warnings == []  # the PT series says what it is


def test_refusals(pair_files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "masks"
    region_masks(*pair_files, out, MeanEngine)
    with pytest.raises(UsageError, match="--force"):
        region_masks(*pair_files, out, never)
    region_masks(*pair_files, out, MeanEngine, force=True)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        region_masks(*pair_files, a_file, never)
    named_like_a_mask = out / "mask_other.png"
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        region_masks(pair_files[0], named_like_a_mask, out, never, force=True)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"junk")
    with pytest.raises(InputError, match="not an image"):
        region_masks(pair_files[0], junk, tmp_path / "m2", never)
    assert not (tmp_path / "m2").exists()


def test_legacy_key_is_read(tmp_path: Path) -> None:
    old = {"mri_branch": {"principal_fraction": 0.5}, "functional_branch": {"principal_fraction": 0.25}}
    (tmp_path / "masks.json").write_text(json.dumps(old))
    data = read_mask_json(tmp_path / "masks.json")
    assert data["other_branch"] == {"principal_fraction": 0.25} and "functional_branch" not in data


def test_report_schema() -> None:
    report = MaskReport("a", "b", "ct", "w.pt", (4, 5), None, "axial", {"mri": 0.5, "other": 0.25},
                        {"mri": [1], "other": [2]}, 32)
    assert report.to_json() == {
        "mri": "a", "other": "b", "modality": "ct", "weights": "w.pt", "shape": [4, 5],
        "slice": None, "axis": "axial",
        "mri_branch": {"principal_fraction": 0.5, "sparse_channels_per_layer": [1]},
        "other_branch": {"principal_fraction": 0.25, "sparse_channels_per_layer": [2]},
        "channels_per_layer": 32,
    }
