"""``medfuse demo --study``: a generated study fused as a user would fuse it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medfuse.errors import UsageError


def test_study_demo_writes_the_study_and_its_fusion(tmp_path: Path) -> None:
    from helpers.engines import MeanEngine
    from medfuse.demo import run_study_demo
    from medfuse.io.read import read

    engine = MeanEngine()
    files, device, study = run_study_demo(tmp_path, "spect", lambda: engine, resolution=6.0,
                                          anatomy="phantom")
    assert device == "cpu" and study.kind == "spect" and engine.calls
    assert [f.name for f in files] == ["fused-spect.nii.gz", "fused-spect-lesion.png"]
    assert all(f.is_file() for f in files)
    assert (study.directory / "dicom" / "spect.dcm").is_file()
    fused = read(files[0])
    assert fused.shape == tuple(study.mri_shape) and fused.is_rgb
    np.testing.assert_allclose(fused.affine, study.mri_affine, atol=1e-4)
    # the lesion picture is a hot-spot view: colour only where activity is near the
    # lesion's peak (the default window coloured the whole brain, the lesion barely paler)
    from medfuse.io.images import read_pixels

    picture, _ = read_pixels(files[1])
    coloured = np.ptp(picture, axis=-1) > 0.1
    head = picture.max(axis=-1) > 0.1
    assert 0 < coloured.sum() < 0.1 * head.sum()
    import json

    from medfuse.provenance import record_path

    record = json.loads(record_path(files[1]).read_text())
    assert record["decisions"]["colormap"]["name"] == "hot"
    assert record["decisions"]["other_window"]["source"] == "explicit"
    with pytest.raises(UsageError):  # nothing is overwritten without force
        run_study_demo(tmp_path, "spect", lambda: engine, resolution=6.0, anatomy="phantom")
    with pytest.raises(UsageError):
        run_study_demo(tmp_path / "x", "mri", lambda: engine, resolution=6.0, anatomy="phantom")


@pytest.mark.slow  # generates a 2 mm study (MNI152 when nilearn is installed) and fuses it
def test_demo_study_command(tmp_path: Path, mean_engine: None) -> None:
    from helpers.cli import run

    r = run("demo", "--study", "ct", "-o", tmp_path)
    assert r.code == 0, r.text
    assert "generated an MRI + CT study in" in r.out and "fused-ct.nii.gz" in r.out
    assert (tmp_path / "study-ct" / "dicom" / "ct").is_dir()
    r = run("demo", "--study", "xray", "-o", tmp_path / "other")
    assert r.code == 2 and "study kind" in r.err
