"""``medfuse fuse``/``batch`` with DICOM and NIfTI, in-process, on tiny synthetic volumes and
seeded random weights (the issue's done-when checks, and its bad-input list)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from medfuse.cli import app
from medfuse.io.images import read_image, write_image
from helpers.synth import (
    MR_AFFINE,
    MR_SHAPE,
    PET_AFFINE,
    pet_values,
    write_mr_series,
    write_nifti,
)

runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


class MeanEngine:
    """Stand-in for GeSeNet (mean of the two luminance inputs): these tests are about files,
    grids and colour, and the network's own tests live elsewhere. One test below runs the
    real network end to end."""

    batch_size = 8
    device = "cpu"
    weights_path = None

    def fuse_luminance(self, mri, other, with_masks=False):  # type: ignore[no-untyped-def]
        return (mri + other) / 2, None, None


#: Tests that run GeSeNet itself (seeded random weights); all others use MeanEngine.
REAL_NETWORK = {"test_series_plus_pet_nifti_to_nifti_and_dicom"}


@pytest.fixture(autouse=True)
def stand_in_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.name not in REAL_NETWORK:
        monkeypatch.setattr("medfuse.cli.fusion.load_engine", lambda *a, **k: MeanEngine())


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A DICOM MR series and a grey PET NIfTI on another (coarser) grid."""
    mr = write_mr_series(tmp_path / "mr")
    pet = write_nifti(tmp_path / "pet.nii.gz", pet_values(), PET_AFFINE)
    return mr, pet


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".part") or ".part" in p.name]


def dciodvfy_errors(path: Path) -> list[str]:
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]


def test_series_plus_pet_nifti_to_nifti_and_dicom(tmp_path: Path, pair: tuple[Path, Path],
                                                 random_weights: Path) -> None:
    """Done-when: a DICOM MR series plus a grey PET NIfTI on another grid fuse (with the real
    network) into a NIfTI on the MRI grid with the MRI affine, and into a DICOM series that
    passes dciodvfy, reads back with pydicom and medfuse, and holds the same voxels."""
    mr, pet = pair
    out = tmp_path / "fused.nii.gz"
    code, text = run("fuse", mr, pet, "-o", out, "-w", random_weights, "--device", "cpu",
                     "--modality", "pet", "-v")
    assert code == 0, text
    assert "resampled onto the MRI grid" in text
    img = nib.load(out)
    assert img.shape == MR_SHAPE and img.header["datatype"] == 128  # RGB24 on the MRI grid
    np.testing.assert_allclose(img.affine, MR_AFFINE, atol=1e-5)
    np.testing.assert_allclose(img.get_qform(), MR_AFFINE, atol=1e-5)
    np.testing.assert_allclose(img.get_sform(), MR_AFFINE, atol=1e-5)
    rgb = np.asarray(img.dataobj)
    assert int(rgb["R"].max()) > 0 and not np.array_equal(rgb["R"], rgb["B"])  # colour

    series = tmp_path / "fused_series"
    code, text = run("fuse", mr, pet, "-o", series, "--format", "dicom", "-w", random_weights,
                     "--device", "cpu", "--preview", tmp_path / "montage.png")
    assert code == 0, text
    assert "modality not stated" in text  # the guess is announced (as a warning)
    files = sorted(series.iterdir())
    assert len(files) == MR_SHAPE[2]
    src = pydicom.dcmread(next(mr.iterdir()), stop_before_pixels=True)
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.PhotometricInterpretation == "RGB" and ds.pixel_array.shape == (32, 32, 3)
        assert str(ds.PatientName) == "Doe^Jane" and ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    if shutil.which("dciodvfy"):
        for f in files:
            assert dciodvfy_errors(f) == [], f
    from medfuse.io.volume import read_volume

    back = read_volume(series)
    np.testing.assert_allclose(back.affine, MR_AFFINE, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(back.data)[..., 0], rgb["R"])
    np.testing.assert_array_equal(np.asarray(back.data)[..., 2], rgb["B"])
    montage = read_image(tmp_path / "montage.png")
    assert montage.is_colour and montage.shape == (96, 96)  # 8 tiles of 32 px in a 3x3 grid
    assert no_leftovers(tmp_path)


def test_anonymize(tmp_path: Path, pair: tuple[Path, Path], random_weights: Path) -> None:
    mr, pet = pair
    out = tmp_path / "anon"
    code, text = run("fuse", mr, pet, "-o", out, "--format", "dicom", "--slices", "3:5",
                     "--anonymize", "-w", random_weights)
    assert code == 0, text
    files = sorted(out.iterdir())
    assert len(files) == 2
    ds = pydicom.dcmread(files[0])
    assert str(ds.PatientName) == "" and ds.PatientID == "" and ds.PatientIdentityRemoved == "YES"
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(files[0]) == []


def test_single_slices_to_png(tmp_path: Path, pair: tuple[Path, Path], random_weights: Path) -> None:
    """A slice of a DICOM series with a slice of a NIfTI volume, and single-slice files of
    both formats, fuse to one PNG."""
    mr, pet = pair
    one = tmp_path / "one.png"
    code, text = run("fuse", mr, pet, "-o", one, "--slice", "3", "-w", random_weights)
    assert code == 0, text
    assert read_image(one).shape == (32, 32) and read_image(one).is_colour
    from pydicom.data import get_testdata_file

    mr_file = Path(get_testdata_file("MR_small.dcm", download=False))
    ct2d = np.full((64, 64), -1000.0, np.float32)
    ct2d[16:48, 16:48] = 60.0
    ct_nii = write_nifti(tmp_path / "ct2d.nii", ct2d, np.diag([-0.3125, -0.3125, 0.8, 1.0]))
    grey = tmp_path / "grey.png"
    code, text = run("fuse", mr_file, ct_nii, "-o", grey, "-w", random_weights, "--window", "bone")
    assert code == 0, text
    img = read_image(grey)
    assert img.shape == (64, 64) and not img.is_colour and img.bit_depth == 16  # grey: 16-bit


def test_volume_to_png_slices(tmp_path: Path, pair: tuple[Path, Path], random_weights: Path) -> None:
    mr, pet = pair
    code, text = run("fuse", mr, pet, "-o", tmp_path / "png" / "f.png", "--slices", "1,4:6",
                     "--axis", "coronal", "-w", random_weights)
    assert code == 0, text
    names = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert names == ["f_0001.png", "f_0004.png", "f_0005.png"]
    assert read_image(tmp_path / "png" / "f_0004.png").shape == (8, 32)  # coronal: 8 rows (z)


def test_grey_png_pet_is_pseudo_coloured(tmp_path: Path, random_weights: Path) -> None:
    from medfuse.phantom import brain_phantom

    mri, pet = brain_phantom(32)
    a = write_image(tmp_path / "mri.png", mri)
    grey_pet = write_image(tmp_path / "pet_grey.png", pet.mean(axis=-1))
    code, text = run("fuse", a, grey_pet, "-o", tmp_path / "c.png", "--modality", "pet", "-w", random_weights)
    assert code == 0, text
    assert read_image(tmp_path / "c.png").is_colour
    code, text = run("fuse", a, grey_pet, "-o", tmp_path / "g.png", "--modality", "pet",
                     "--colormap", "none", "-w", random_weights)
    assert code == 0, text
    assert not read_image(tmp_path / "g.png").is_colour


def test_bad_inputs_one_line_and_nothing_written(tmp_path: Path, pair: tuple[Path, Path], random_weights: Path) -> None:
    mr, pet = pair
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(next(mr.iterdir()).read_bytes()[:400])
    four_d = write_nifti(tmp_path / "four.nii", np.zeros((32, 32, 8, 2), np.float32), MR_AFFINE)
    far = PET_AFFINE.copy()
    far[2, 3] += 400
    apart = write_nifti(tmp_path / "apart.nii", pet_values(), far)
    flat = write_image(tmp_path / "flat.png", np.zeros((32, 32), np.float32))
    nan_only = write_nifti(tmp_path / "nan.nii", np.full((16, 16, 4), np.nan, np.float32), PET_AFFINE)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--slice", "99"], None, "out.png", 2, "slices 0 to 7"),
        ([], None, "out.xyz", 2, "output suffix"),
        ([], corrupt, "out.nii", 1, "corrupt"),
        ([], four_d, "out.nii", 2, "--volume"),
        ([], apart, "out.nii", 1, "do not overlap"),
        ([], nan_only, "out.nii", 1, "no finite voxels"),
        ([], empty, "out.nii", 1, "no DICOM images"),
        (["--window", "wide"], None, "out.nii", 2, "--window"),
        (["--slices", "2"], None, "out.nii", 2, "--slices"),
        (["--anonymize"], None, "out.nii", 2, "--anonymize"),
        (["--axis", "oblique"], None, "out.nii", 2, "--axis"),
    ]
    for extra, other, name, code, needle in cases:
        out = tmp_path / "outs" / name
        got, text = run("fuse", mr, other or pet, "-o", out, "-w", random_weights, *extra)
        assert got == code, (extra, name, text)
        assert needle in text, text
        assert "Traceback" not in text
        assert len([ln for ln in text.strip().splitlines() if ln.strip()]) == 1, text
        assert not out.exists()
    got, text = run("fuse", flat, mr, "-o", tmp_path / "x.png", "-w", random_weights)
    assert got == 1 and "2D image" in text and "--slice" in text
    assert no_leftovers(tmp_path)


def test_never_overwrites_input_series(tmp_path: Path, pair: tuple[Path, Path], random_weights: Path) -> None:
    mr, pet = pair
    before = {p.name: p.read_bytes() for p in mr.iterdir()}
    code, text = run("fuse", mr, pet, "-o", mr, "--format", "dicom", "--force", "-w", random_weights)
    assert code == 2 and "input" in text
    assert {p.name: p.read_bytes() for p in mr.iterdir()} == before


def test_batch_volumes(tmp_path: Path, random_weights: Path) -> None:
    src = tmp_path / "in"
    write_mr_series(src / "MRI" / "case1")
    write_nifti(src / "MRI" / "case2.nii.gz", np.random.default_rng(0).random(MR_SHAPE).astype(np.float32), MR_AFFINE)
    (src / "PET").mkdir()
    write_nifti(src / "PET" / "case1.nii.gz", pet_values(), PET_AFFINE)
    write_nifti(src / "PET" / "case2.nii", pet_values(), PET_AFFINE)
    out = tmp_path / "out"
    code, text = run("batch", src, out, "-w", random_weights, "--modality", "pet")
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["case1.nii.gz", "case2.nii.gz"]
    assert nib.load(out / "case1.nii.gz").shape == MR_SHAPE


def test_one_folder_two_series(tmp_path: Path) -> None:
    """An MR and a PT series in one study folder: --series names the MRI's, then the PET's;
    the PET's DICOM Modality picks its colour map without --modality."""
    study = tmp_path / "study"
    write_mr_series(study / "mr", series_uid="1.2.826.0.1.1")
    write_mr_series(study / "pt", np.full(MR_SHAPE, 50, np.int16), series_uid="1.2.826.0.1.2",
                    modality="PT")
    out = tmp_path / "f.nii.gz"
    code, text = run("fuse", study, study, "-o", out, "-w", "x.pt")
    assert code == 1 and "2 series" in text and "1.2.826.0.1.2" in text
    code, text = run("fuse", study, study, "-o", out, "--series", "1.2.826.0.1.1",
                     "--series", "1.2.826.0.1.2", "-v")
    assert code == 0, text
    assert "modality pet; colour map rainbow" in text
    assert nib.load(out).header["datatype"] == 128


def test_volume_picks_from_4d_beside_3d(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    mr, _ = pair
    frames = np.stack([pet_values(), pet_values() * 2], axis=-1)
    pet4d = write_nifti(tmp_path / "dyn.nii.gz", frames, PET_AFFINE)
    code, text = run("fuse", mr, pet4d, "-o", tmp_path / "f.nii.gz", "-m", "pet")
    assert code == 2 and "--volume N (0 to 1)" in text
    code, text = run("fuse", mr, pet4d, "-o", tmp_path / "f.nii.gz", "-m", "pet", "--volume", "1")
    assert code == 0, text
