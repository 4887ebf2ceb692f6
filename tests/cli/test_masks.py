"""``medfuse masks`` in-process: the five files for image, NIfTI and DICOM pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.checks import no_leftovers
from helpers.cli import run
from helpers.synth import MR_AFFINE, PET_AFFINE, mr_values, pet_values, write_mr_series, write_nifti
from medfuse.io.images import read_pixels
from medfuse.masks import MASK_FILES


def check_masks(out: Path) -> dict:  # type: ignore[type-arg]
    """The five files, binary masks matching the JSON's fractions, sane JSON."""
    assert sorted(p.name for p in out.iterdir()) == sorted(MASK_FILES)
    report = json.loads((out / "masks.json").read_text())
    assert set(report) == {"mri", "other", "modality", "weights", "shape", "slice", "axis",
                           "mri_branch", "other_branch", "channels_per_layer"}
    for branch in ("mri", "other"):
        m = read_pixels(out / f"mask_{branch}.png")[0]
        assert m.shape == tuple(report["shape"]) and set(np.unique(m)) <= {0.0, 1.0}
        stats = report[f"{branch}_branch"]
        assert stats["principal_fraction"] == pytest.approx(float(m.mean()))
        assert all(0 <= n <= report["channels_per_layer"] for n in stats["sparse_channels_per_layer"])
        assert read_pixels(out / f"overlay_{branch}.png")[0].shape[:2] == m.shape
    assert no_leftovers(out.parent)
    return report


def test_image_pair_with_the_network(tmp_path: Path, pair_files: tuple[Path, Path],
                                     random_weights: Path) -> None:
    out = tmp_path / "masks"
    r = run("masks", *pair_files, "-o", out, "-w", random_weights)
    assert r.code == 0, r.text
    assert r.out.startswith("principal fraction: MRI ") and str(out) in r.out and r.err == ""
    report = check_masks(out)
    assert report["slice"] is None and report["weights"] == str(random_weights)
    assert len(report["other_branch"]["sparse_channels_per_layer"]) == 4
    assert report["channels_per_layer"] == 32
    assert read_pixels(out / "overlay_other.png")[0].ndim == 3
    r = run("masks", *pair_files, "-o", out, "-w", random_weights)
    assert r.code == 2 and "--force" in r.err and len(r.err_lines()) == 1


def test_nifti_pair_with_slice(tmp_path: Path, mean_engine: None) -> None:
    mri = write_nifti(tmp_path / "mr.nii.gz", mr_values().astype(np.float32), MR_AFFINE)
    pet = write_nifti(tmp_path / "pet.nii.gz", pet_values(), PET_AFFINE)
    out = tmp_path / "m"
    r = run("masks", mri, pet, "-o", out, "--slice", "5", "--modality", "pet")
    assert r.code == 0, r.text
    assert "(axial slice 5)" in r.out and r.err == ""
    report = check_masks(out)
    assert (report["slice"], report["axis"], report["shape"]) == (5, "axial", [32, 32])
    assert report["modality"] == "pet" and report["mri"] == str(mri)
    r = run("masks", mri, pet, "-o", tmp_path / "m2", "--slice", "8")
    assert r.code == 2 and "slices 0 to 7" in r.err and len(r.err_lines()) == 1
    assert not (tmp_path / "m2").exists()


def test_guessed_modality_is_one_warning_line(tmp_path: Path, mean_engine: None) -> None:
    mri = write_nifti(tmp_path / "mr.nii.gz", mr_values().astype(np.float32), MR_AFFINE)
    pet = write_nifti(tmp_path / "pet.nii.gz", pet_values(), PET_AFFINE)
    r = run("masks", mri, pet, "-o", tmp_path / "m", "--slice", "2")
    assert r.code == 0, r.text
    assert r.err_lines() == [f"warning: {pet}: modality not stated; treated as PET "
                             "(use --modality pet|spect|ct)"]
    assert run("masks", mri, pet, "-o", tmp_path / "q", "-q").err == ""


def test_dicom_pair(tmp_path: Path, mean_engine: None) -> None:
    mr = write_mr_series(tmp_path / "mr")
    pt = write_mr_series(tmp_path / "pt", mr_values() // 2, modality="PT")
    out = tmp_path / "m"
    r = run("masks", mr, pt, "-o", out)
    assert r.code == 0, r.text
    report = check_masks(out)
    assert (report["slice"], report["axis"], report["modality"]) == (4, "axial", "pet")  # middle
    r = run("masks", mr, pt, "-o", tmp_path / "c", "--axis", "coronal", "--slice", "0")
    assert r.code == 0, r.text
    assert check_masks(tmp_path / "c")["shape"] == [8, 32]


def test_output_inside_input_series_is_refused(tmp_path: Path, mean_engine: None) -> None:
    mr = write_mr_series(tmp_path / "mr")
    pt = write_mr_series(tmp_path / "pt", mr_values() // 2, modality="PT")
    r = run("masks", mr, pt, "-o", mr / "masks")
    assert r.code == 2 and "inside input folder" in r.err
    assert not (mr / "masks").exists()
