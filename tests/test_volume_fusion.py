"""fuse_volume: two in-memory Volumes fuse to what fuse_files writes for the same pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.engines import MeanEngine
from medfuse import fuse_volume, read
from medfuse.fusion import FuseRequest, fuse_files


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from medfuse.studies import Grid, generate_study

    return generate_study("pet", tmp_path_factory.mktemp("fv") / "s", resolution=6.0,
                          anatomy="phantom", grid=Grid((8.0, 8.0, 8.0), "LPS"),
                          formats=("nifti",))


@pytest.mark.parametrize("options", [{}, {"colormap": "none"}, {"window": "10000,20000", "floor": "none"}])
def test_in_memory_equals_files(tmp_path: Path, study, options: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    mri_path, other_path = study.path("mri"), study.path("other")
    out = tmp_path / "fused.nii.gz"
    fuse_files(FuseRequest(mri=mri_path, other=other_path, output=out, modality="pet",
                           **options), MeanEngine)
    written = read(out)
    mri = read(mri_path)
    fused = fuse_volume(mri, read(other_path), MeanEngine(), modality="pet", **options)
    assert fused.data.shape == written.data.shape
    assert fused.data.dtype == written.data.dtype
    np.testing.assert_array_equal(fused.data, written.data)
    np.testing.assert_allclose(fused.affine, mri.affine)
    np.testing.assert_allclose(fused.slope, written.slope, rtol=1e-6)
    assert fused.data.any()
    assert fused.extra["plan"]["modality"]["value"] == "pet"


def test_progress_and_warnings(study) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[int, int]] = []
    with pytest.warns(UserWarning):
        fused = fuse_volume(read(study.path("mri")), read(study.path("other")), MeanEngine(),
                            progress=lambda d, t: seen.append((d, t)))
    n = fused.extra["plan"]["slices_in_plan"]
    assert seen == [(i, n) for i in range(1, n + 1)]
    assert fused.extra["warnings"]  # modality guessed from a NIfTI that states none
