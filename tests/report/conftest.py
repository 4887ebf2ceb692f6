"""Small generated studies for the report tests (a 6 mm phantom: quick to fuse)."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_study(folder: Path, seed: int = 0):  # type: ignore[no-untyped-def]
    from medfuse.studies import Grid, generate_study

    return generate_study("pet", folder, resolution=6.0, anatomy="phantom", seed=seed,
                          grid=Grid((8.0, 8.0, 8.0), "LPS"), formats=("nifti",),
                          noise=False, blur=False)


@pytest.fixture(scope="session")
def small_study(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_study(tmp_path_factory.mktemp("report-study") / "s")


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch folder: MRI/ and PET/ with three good pairs and one unreadable MRI."""
    import shutil

    root = tmp_path_factory.mktemp("report-cohort")
    (root / "in" / "MRI").mkdir(parents=True)
    (root / "in" / "PET").mkdir(parents=True)
    for i in range(3):
        s = make_study(root / f"s{i}", seed=i)
        shutil.copy(s.path("mri"), root / "in" / "MRI" / f"p{i}.nii.gz")
        shutil.copy(s.path("other"), root / "in" / "PET" / f"p{i}.nii.gz")
    (root / "in" / "MRI" / "broken.nii.gz").write_bytes(b"not a nifti file at all")
    shutil.copy(root / "in" / "PET" / "p0.nii.gz", root / "in" / "PET" / "broken.nii.gz")
    return root / "in"
