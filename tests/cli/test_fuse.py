"""``medfuse fuse`` in-process: images, DICOM and NIfTI in any mix, the one-line errors, and
the output policy. Tests taking ``mean_engine`` run the stand-in engine; the others load
seeded random weights (``random_weights``) or the reference checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from helpers.checks import dciodvfy_errors, no_leftovers
from helpers.cli import run
from helpers.synth import (
    MR_AFFINE,
    MR_SHAPE,
    PET_AFFINE,
    mr_values,
    pet_values,
    pydicom_sample,
    write_mr_series,
    write_nifti,
)
from medfuse.io.images import read_pixels, write_image
from medfuse.phantom import brain_phantom


@pytest.fixture
def volumes(tmp_path: Path) -> tuple[Path, Path]:
    """A DICOM MR series and a grey PET NIfTI on another (coarser) grid."""
    mr = write_mr_series(tmp_path / "mr")
    pet = write_nifti(tmp_path / "pet.nii.gz", pet_values(), PET_AFFINE)
    return mr, pet


def one_error_line(text: str) -> bool:
    return len([ln for ln in text.strip().splitlines() if ln.strip()]) == 1


# -- ordinary images ----------------------------------------------------------------------


def test_writes_image_with_the_network(tmp_path: Path, pair_files: tuple[Path, Path],
                                       random_weights: Path) -> None:
    mri, pet = pair_files
    out = tmp_path / "out" / "fused.png"
    r = run("fuse", mri, pet, "-o", out, "--weights", random_weights, "--device", "cpu", "-v")
    assert r.code == 0, r.text
    assert "device: cpu" in r.err and "2D pair; modality pet" in r.err
    assert r.out == f"{out}\n"
    img, depth = read_pixels(out)
    assert img.shape == (64, 64, 3) and depth == 8


def test_16bit_and_stretch(tmp_path: Path, pair_files: tuple[Path, Path], mean_engine: None) -> None:
    out = tmp_path / "f16.png"
    r = run("fuse", *pair_files, "-o", out, "--bit-depth", "16", "--stretch")
    assert r.code == 0, r.text
    img, depth = read_pixels(out)
    assert depth == 16
    assert img.min() == 0.0 and img.max() == 1.0


def test_refuses_overwrite_and_input(tmp_path: Path, pair_files: tuple[Path, Path],
                                     mean_engine: None) -> None:
    mri, pet = pair_files
    before = mri.read_bytes()
    r = run("fuse", mri, pet, "-o", mri, "--force")
    assert r.code == 2 and "refusing to overwrite input" in r.err
    assert mri.read_bytes() == before
    out = tmp_path / "o.png"
    out.write_bytes(b"keep")
    r = run("fuse", mri, pet, "-o", out)
    assert r.code == 2 and "--force" in r.err and out.read_bytes() == b"keep"
    r = run("fuse", mri, pet, "-o", out, "--force")
    assert r.code == 0 and read_pixels(out)[0].shape == (64, 64, 3)


@pytest.mark.parametrize(
    "case,code,needle",
    [
        ("missing", 2, "no such file"),
        ("notimage", 1, "not an image"),
        ("truncated", 1, "not an image"),
        ("mismatch", 1, "size mismatch"),
        ("colour_mri", 1, "MRI must be grey"),
        ("bad_suffix", 2, "output suffix"),
        ("bad_device", 2, "--device"),
        ("bad_bit_depth", 2, "--bit-depth"),
        ("bad_modality", 2, "--modality"),
    ],
)
def test_bad_inputs(tmp_path: Path, pair_files: tuple[Path, Path], random_weights: Path,
                    case: str, code: int, needle: str) -> None:
    mri, pet = pair_files
    out = tmp_path / "x.png"
    args: list[str | Path] = ["fuse", mri, pet, "-o", out, "-w", random_weights]
    if case == "missing":
        args[1] = tmp_path / "nope.png"
    elif case == "notimage":
        junk = tmp_path / "junk.png"
        junk.write_text("hello")
        args[1] = junk
    elif case == "truncated":
        cut = tmp_path / "cut.png"
        cut.write_bytes(pet.read_bytes()[:10])
        args[2] = cut
    elif case == "mismatch":
        args[2] = write_image(tmp_path / "small.png", np.zeros((32, 40, 3), np.float32) + 0.3)
    elif case == "colour_mri":
        args[1] = pet
    elif case == "bad_suffix":
        args[4] = tmp_path / "x.xyz"
    elif case == "bad_device":
        args += ["--device", "gpu7"]
    elif case == "bad_bit_depth":
        args += ["--bit-depth", "12"]
    elif case == "bad_modality":
        args += ["--modality", "xray"]
    r = run(*args)
    assert r.code == code, r.text
    assert needle in r.err and r.err.startswith("error: ")
    assert "Traceback" not in r.text and r.out == ""
    assert one_error_line(r.err)
    assert not out.exists()
    assert no_leftovers(tmp_path)


def test_resize_opt_in(tmp_path: Path, pair_files: tuple[Path, Path], mean_engine: None) -> None:
    mri, _ = pair_files
    small = write_image(tmp_path / "small.png",
                        np.zeros((32, 40, 3), np.float32) + np.float32([0.6, 0.3, 0.1]))
    r = run("fuse", mri, small, "-o", tmp_path / "r.png", "--resize")
    assert r.code == 0, r.text
    assert read_pixels(tmp_path / "r.png")[0].shape == (64, 64, 3)


def test_grey_pair_same_file_with_and_without_preview(tmp_path: Path, mean_engine: None) -> None:
    """A grey PNG pair writes the same 8-bit file whether or not a preview is asked for."""
    mri, _ = brain_phantom(32)
    a = write_image(tmp_path / "a.png", mri)
    b = write_image(tmp_path / "b.png", np.ascontiguousarray(mri[::-1]))
    assert run("fuse", a, b, "-o", tmp_path / "plain.png").code == 0
    r = run("fuse", a, b, "-o", tmp_path / "with.png", "--preview", tmp_path / "preview.png")
    assert r.code == 0, r.text
    assert r.out.splitlines() == [str(tmp_path / "with.png"), str(tmp_path / "preview.png")]
    assert (tmp_path / "plain.png").read_bytes() == (tmp_path / "with.png").read_bytes()
    img, depth = read_pixels(tmp_path / "plain.png")
    assert depth == 8 and img.ndim == 2
    assert read_pixels(tmp_path / "preview.png")[0].shape == (32, 32)


def test_preview_equal_to_output_is_refused_first(tmp_path: Path, pair_files: tuple[Path, Path]
                                                  ) -> None:
    out = tmp_path / "same.png"
    r = run("fuse", *pair_files, "-o", out, "--preview", out, "-w", tmp_path / "no-weights.pt")
    assert r.code == 2 and "--preview" in r.err and "output itself" in r.err
    assert one_error_line(r.err)
    assert not out.exists() and no_leftovers(tmp_path)
    r = run("fuse", *pair_files, "-o", out, "--preview", tmp_path / "." / "same.png")
    assert r.code == 2 and "output itself" in r.err


def test_grey_png_pet_is_pseudo_coloured(tmp_path: Path, mean_engine: None) -> None:
    mri, pet = brain_phantom(32)
    a = write_image(tmp_path / "mri.png", mri)
    grey_pet = write_image(tmp_path / "pet_grey.png", pet.mean(axis=-1))
    r = run("fuse", a, grey_pet, "-o", tmp_path / "c.png", "--modality", "pet")
    assert r.code == 0, r.text
    assert read_pixels(tmp_path / "c.png")[0].ndim == 3
    r = run("fuse", a, grey_pet, "-o", tmp_path / "g.png", "--modality", "pet",
            "--colormap", "none")
    assert r.code == 0, r.text
    assert read_pixels(tmp_path / "g.png")[0].ndim == 2


def test_gamut_map_option_reaches_the_output_and_the_record(tmp_path: Path,
                                                            mean_engine: None) -> None:
    """A saturated red square over bright anatomy: the default fit writes it redder (less
    green) than --gamut-map clip, grey pixels around it are the same, and the provenance
    record names the map used."""
    import json

    mri = np.full((96, 96), 0.9, np.float32)
    pet = np.zeros((96, 96, 3), np.float32)
    pet[16:80, 16:80, 0] = 1.0
    a = write_image(tmp_path / "mri.png", mri)
    b = write_image(tmp_path / "pet.png", pet)
    for name in ("fit", "clip"):
        extra = [] if name == "fit" else ["--gamut-map", "clip"]
        r = run("fuse", a, b, "-o", tmp_path / f"{name}.png", *extra)
        assert r.code == 0, r.text
        record = json.loads((tmp_path / f"{name}.png.json").read_text())
        assert record["decisions"]["gamut_map"] == name
    fit, clip = (read_pixels(tmp_path / f"{n}.png")[0] for n in ("fit", "clip"))
    assert fit[40:56, 40:56, 1].mean() < clip[40:56, 40:56, 1].mean() - 0.05
    np.testing.assert_array_equal(fit[:16, :16], clip[:16, :16])  # grey: never changed


# -- weights ------------------------------------------------------------------------------


def test_missing_weights_one_line(tmp_path: Path, pair_files: tuple[Path, Path],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import medfuse.engine.weights as weights

    monkeypatch.delenv("MEDFUSE_WEIGHTS", raising=False)
    monkeypatch.setattr(weights, "bundled_weights_path", lambda: None)
    r = run("fuse", *pair_files, "-o", tmp_path / "x.png")
    assert r.code == 1 and "--weights" in r.err and one_error_line(r.err)
    assert not (tmp_path / "x.png").exists()


def test_weights_env(tmp_path: Path, pair_files: tuple[Path, Path], random_weights: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDFUSE_WEIGHTS", str(random_weights))
    r = run("fuse", *pair_files, "-o", tmp_path / "e.png", "-v")
    assert r.code == 0 and str(random_weights) in r.err


def test_wrong_weights_file(tmp_path: Path, pair_files: tuple[Path, Path]) -> None:
    import torch

    bad = tmp_path / "bad.pt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, bad)
    r = run("fuse", *pair_files, "-o", tmp_path / "x.png", "-w", bad)
    assert r.code == 1 and "missing 77" in r.err and "conv.weight" in r.err
    assert one_error_line(r.err) and not (tmp_path / "x.png").exists()


# -- DICOM and NIfTI ----------------------------------------------------------------------


def test_series_plus_pet_nifti_to_nifti_and_dicom(tmp_path: Path, volumes: tuple[Path, Path],
                                                 random_weights: Path) -> None:
    """A DICOM MR series plus a grey PET NIfTI on another grid fuse (with the real network)
    into a NIfTI on the MRI grid with the MRI affine, and into a DICOM series that passes
    dciodvfy, reads back with pydicom and medfuse, and holds the same voxels."""
    mr, pet = volumes
    out = tmp_path / "fused.nii.gz"
    r = run("fuse", mr, pet, "-o", out, "-w", random_weights, "--device", "cpu",
            "--modality", "pet", "-v")
    assert r.code == 0, r.text
    assert "resampled onto the MRI grid" in r.err
    img = nib.load(out)
    assert img.shape == MR_SHAPE and img.header["datatype"] == 128  # RGB24 on the MRI grid
    np.testing.assert_allclose(img.affine, MR_AFFINE, atol=1e-5)
    np.testing.assert_allclose(img.get_qform(), MR_AFFINE, atol=1e-5)
    np.testing.assert_allclose(img.get_sform(), MR_AFFINE, atol=1e-5)
    rgb = np.asarray(img.dataobj)
    assert int(rgb["R"].max()) > 0 and not np.array_equal(rgb["R"], rgb["B"])  # colour

    series = tmp_path / "fused_series"
    r = run("fuse", mr, pet, "-o", series, "--format", "dicom", "-w", random_weights,
            "--device", "cpu", "--preview", tmp_path / "montage.png")
    assert r.code == 0, r.text
    assert "warning:" in r.err and "modality not stated" in r.err  # the guess is announced
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
    from medfuse.io.read import read

    back = read(series)
    np.testing.assert_allclose(back.affine, MR_AFFINE, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(back.data)[..., 0], rgb["R"])
    np.testing.assert_array_equal(np.asarray(back.data)[..., 2], rgb["B"])
    montage = read_pixels(tmp_path / "montage.png")[0]
    assert montage.shape == (96, 96, 3)  # 8 tiles of 32 px in a 3x3 grid
    assert no_leftovers(tmp_path)


def test_volumes_to_nifti_and_dicom(tmp_path: Path, volumes: tuple[Path, Path],
                                    mean_engine: None) -> None:
    """The same path as the test above with the stand-in engine (runs in every quick run)."""
    mr, pet = volumes
    out = tmp_path / "fused.nii.gz"
    r = run("fuse", mr, pet, "-o", out, "--modality", "pet", "-v")
    assert r.code == 0, r.text
    assert "resampled onto the MRI grid" in r.err and "warning" not in r.err
    img = nib.load(out)
    assert img.shape == MR_SHAPE and img.header["datatype"] == 128
    np.testing.assert_allclose(img.affine, MR_AFFINE, atol=1e-5)
    series = tmp_path / "fused_series"
    r = run("fuse", mr, pet, "-o", series, "--format", "dicom")
    assert r.code == 0, r.text
    assert len(r.err_lines()) == 1 and r.err.startswith("warning:")  # modality guessed
    assert len(list(series.iterdir())) == MR_SHAPE[2]
    assert r.out == f"{series}\n"
    assert no_leftovers(tmp_path)


def test_anonymize(tmp_path: Path, volumes: tuple[Path, Path], mean_engine: None) -> None:
    mr, pet = volumes
    out = tmp_path / "anon"
    r = run("fuse", mr, pet, "-o", out, "--format", "dicom", "--slices", "3:5", "--anonymize")
    assert r.code == 0, r.text
    files = sorted(out.iterdir())
    assert len(files) == 2
    ds = pydicom.dcmread(files[0])
    assert str(ds.PatientName) == "" and ds.PatientID == "" and ds.PatientIdentityRemoved == "YES"
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(files[0]) == []


def test_dicom_output_references_its_sources(tmp_path: Path, mean_engine: None) -> None:
    """Each output slice names the MRI slice it lies on and every instance of the other
    series (Source Image Sequence), both series (Referenced Series Sequence, same study),
    the scanners and medfuse (Contributing Equipment), and says it is derived and for
    research only; under --anonymize no source UID and no Study Description is kept."""
    mr = write_mr_series(tmp_path / "mr")
    for f in mr.iterdir():
        ds = pydicom.dcmread(f)
        ds.StudyDescription = "HEAD^Epilepsy protocol"
        ds.save_as(f)
    pt_values = mr_values()[::-1].copy()
    pt = write_mr_series(tmp_path / "pt", pt_values, modality="PT")
    mr_files = {pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]:
                pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
                for f in mr.iterdir()}
    pt_uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in pt.iterdir()}
    out = tmp_path / "fused"
    r = run("fuse", mr, pt, "-o", out, "--format", "dicom", "--slices", "2:4")
    assert r.code == 0, r.text
    for f in sorted(out.iterdir()):
        ds = pydicom.dcmread(f)
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.StudyDescription == "HEAD^Epilepsy protocol"  # copied without --anonymize
        assert "research use only" in ds.ImageComments.lower()
        refs = [x.ReferencedSOPInstanceUID for x in ds.SourceImageSequence]
        mri_refs = [u for u in refs if u not in pt_uids]
        assert mri_refs == [mr_files[ds.ImagePositionPatient[2]]]  # the slice it lies on
        assert set(refs) - set(mri_refs) == pt_uids
        assert {x.SeriesInstanceUID for x in ds.ReferencedSeriesSequence} == {
            pydicom.dcmread(next(d.iterdir()), stop_before_pixels=True).SeriesInstanceUID
            for d in (mr, pt)}
        purposes = [x.PurposeOfReferenceCodeSequence[0].CodeValue
                    for x in ds.ContributingEquipmentSequence]
        assert purposes == ["109101", "109101", "109102"]
        if shutil.which("dciodvfy"):
            assert dciodvfy_errors(f) == [], f
    anon = tmp_path / "anon"
    r = run("fuse", mr, pt, "-o", anon, "--format", "dicom", "--slices", "2", "--anonymize")
    assert r.code == 0, r.text
    ds = pydicom.dcmread(next(anon.iterdir()))
    for key in ("SourceImageSequence", "ReferencedSeriesSequence", "StudyDescription",
                "StudiesContainingOtherReferencedInstancesSequence"):
        assert key not in ds, key
    purposes = [x.PurposeOfReferenceCodeSequence[0].CodeValue
                for x in ds.ContributingEquipmentSequence]
    assert purposes == ["109101", "109101", "109102", "109104"]
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(next(anon.iterdir())) == []


def test_single_slices_to_png(tmp_path: Path, volumes: tuple[Path, Path], mean_engine: None) -> None:
    """A slice of a DICOM series with a slice of a NIfTI volume, and single-slice files of
    both formats, fuse to one PNG."""
    mr, pet = volumes
    one = tmp_path / "one.png"
    r = run("fuse", mr, pet, "-o", one, "--slice", "3")
    assert r.code == 0, r.text
    assert read_pixels(one)[0].shape == (32, 32, 3)
    mr_file = pydicom_sample("MR_small.dcm")
    ct2d = np.full((64, 64), -1000.0, np.float32)
    ct2d[16:48, 16:48] = 60.0
    ct_nii = write_nifti(tmp_path / "ct2d.nii", ct2d, np.diag([-0.3125, -0.3125, 0.8, 1.0]))
    grey = tmp_path / "grey.png"
    r = run("fuse", mr_file, ct_nii, "-o", grey, "--window", "bone")
    assert r.code == 0, r.text
    img, depth = read_pixels(grey)
    assert img.shape == (64, 64) and depth == 16  # grey of DICOM/NIfTI: 16-bit


def test_volume_to_png_slices(tmp_path: Path, volumes: tuple[Path, Path], mean_engine: None) -> None:
    mr, pet = volumes
    r = run("fuse", mr, pet, "-o", tmp_path / "png" / "f.png", "--slices", "1,8:10",
            "--axis", "coronal")
    assert r.code == 0, r.text
    names = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert names == ["f_0001.png", "f_0008.png", "f_0009.png"]
    # coronal: 8 rows (z) of 32 columns; the guessed PET is pseudo-coloured where it has
    # uptake above the transparency floor (coronal slices 7-12; elsewhere the MRI shows
    # through, and a PNG whose channels agree reads back as grey)
    assert read_pixels(tmp_path / "png" / "f_0008.png")[0].shape == (8, 32, 3)


def test_volume_bad_inputs_one_line_and_nothing_written(tmp_path: Path, volumes: tuple[Path, Path],
                                                         mean_engine: None) -> None:
    mr, pet = volumes
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
        (["--slice", "-2"], None, "out.png", 2, "start at 0"),
        ([], None, "out.xyz", 2, "output suffix"),
        ([], corrupt, "out.nii", 1, "corrupt"),
        ([], four_d, "out.nii", 2, "--volume"),
        ([], apart, "out.nii", 1, "do not overlap"),
        ([], nan_only, "out.nii", 1, "no finite voxels"),
        ([], empty, "out.nii", 1, "no DICOM images"),
        (["--window", "wide"], None, "out.nii", 2, "--window"),
        (["--slices", "2"], None, "out.nii", 2, "--slices"),
        (["--slices", "2:99"], None, "out.png", 2, "out of range"),
        (["--anonymize"], None, "out.nii", 2, "--anonymize"),
        (["--axis", "oblique"], None, "out.nii", 2, "--axis"),
        (["--colormap", "viridis"], None, "out.nii", 2, "--colormap"),
        (["--format", "tiff"], None, "out.nii", 2, "--format"),
    ]
    for extra, other, name, code, needle in cases:
        out = tmp_path / "outs" / name
        r = run("fuse", mr, other or pet, "-o", out, *extra)
        assert r.code == code, (extra, name, r.text)
        assert needle in r.err, r.err
        assert "Traceback" not in r.text
        assert one_error_line(r.err), r.err
        assert not out.exists()
    r = run("fuse", flat, mr, "-o", tmp_path / "x.png")
    assert r.code == 1 and "2D image" in r.err and "--slice" in r.err
    assert not (tmp_path / "outs").exists()
    assert no_leftovers(tmp_path)


def test_never_overwrites_input_series(tmp_path: Path, volumes: tuple[Path, Path],
                                       mean_engine: None) -> None:
    mr, pet = volumes
    before = {p.name: p.read_bytes() for p in mr.iterdir()}
    r = run("fuse", mr, pet, "-o", mr, "--format", "dicom", "--force")
    assert r.code == 2 and "input" in r.err
    assert {p.name: p.read_bytes() for p in mr.iterdir()} == before


def test_refuses_output_inside_input_series(tmp_path: Path, volumes: tuple[Path, Path],
                                            mean_engine: None) -> None:
    """``-o series/fused`` inside the MRI's own series folder would add files to the input
    series (and be read with it next time): refused, nothing written."""
    mr, pet = volumes
    before = sorted(p.name for p in mr.iterdir())
    for out, extra in ((mr / "fused", ["--format", "dicom"]), (mr / "fused.png", ["--slice", "1"]),
                       (mr / "sub" / "f.nii.gz", [])):
        r = run("fuse", mr, pet, "-o", out, *extra)
        assert r.code == 2, r.text
        assert "inside input folder" in r.err and one_error_line(r.err)
        assert sorted(p.name for p in mr.iterdir()) == before
    assert no_leftovers(tmp_path)


def test_one_folder_two_series(tmp_path: Path, mean_engine: None) -> None:
    """An MR and a PT series in one study folder: --series names the MRI's, then the PET's;
    the PET's DICOM Modality picks its colour map without --modality."""
    study = tmp_path / "study"
    write_mr_series(study / "mr", series_uid="1.2.826.0.1.1")
    write_mr_series(study / "pt", np.full(MR_SHAPE, 50, np.int16), series_uid="1.2.826.0.1.2",
                    modality="PT")
    out = tmp_path / "f.nii.gz"
    r = run("fuse", study, study, "-o", out)
    assert r.code == 1 and "2 series" in r.err and "1.2.826.0.1.2" in r.err
    r = run("fuse", study, study, "-o", out, "--series", "1.2.826.0.1.1",
            "--series", "1.2.826.0.1.2", "-v")
    assert r.code == 0, r.text
    assert "modality pet; colour map rainbow" in r.err
    assert nib.load(out).header["datatype"] == 128


def test_volume_picks_from_4d_beside_3d(tmp_path: Path, volumes: tuple[Path, Path],
                                        mean_engine: None) -> None:
    mr, _ = volumes
    frames = np.stack([pet_values(), pet_values() * 2], axis=-1)
    pet4d = write_nifti(tmp_path / "dyn.nii.gz", frames, PET_AFFINE)
    r = run("fuse", mr, pet4d, "-o", tmp_path / "f.nii.gz", "-m", "pet")
    assert r.code == 2 and "--volume N (0 to 1)" in r.err
    r = run("fuse", mr, pet4d, "-o", tmp_path / "f.nii.gz", "-m", "pet", "--volume", "1")
    assert r.code == 0, r.text


def test_quiet(tmp_path: Path, volumes: tuple[Path, Path], mean_engine: None) -> None:
    mr, pet = volumes
    r = run("fuse", mr, pet, "-o", tmp_path / "f.nii.gz", "-q")
    assert r.code == 0 and r.out == "" and r.err == ""  # not even the modality warning


# -- the authors' checkpoint (when ../shared is there) ------------------------------------


@pytest.mark.slow
def test_parity(tmp_path: Path, shared: Path, reference_checkpoint: Path) -> None:
    """fuse on samples/MRI_PET pair 1 with the paper's per-channel clip is within 1/255 of
    the parity PNG, and masks equal the parity masks."""
    from PIL import Image

    s = shared / "reference" / "samples" / "MRI_PET"
    out = tmp_path / "f.png"
    r = run("fuse", s / "MRI" / "1.png", s / "PET" / "1.png", "-o", out,
            "-w", reference_checkpoint, "--no-stretch", "--gamut-map", "clip")
    assert r.code == 0, r.text
    par = shared / "reference" / "parity" / "MRI_PET"
    ref = np.asarray(Image.open(par / "1_fused_rgb_clamped.png"), np.int16)
    got = np.asarray(Image.open(out).convert("RGB"), np.int16)
    assert np.abs(ref - got).max() <= 1
    r = run("masks", s / "MRI" / "1.png", s / "PET" / "1.png", "-o", tmp_path / "m",
            "-w", reference_checkpoint)
    assert r.code == 0, r.text
    # the parity files still carry the old name of the second branch ("functional")
    for ours, theirs in (("mri", "mri"), ("other", "functional")):
        a = np.asarray(Image.open(tmp_path / "m" / f"mask_{ours}.png"))
        b = np.asarray(Image.open(par / f"1_mask_{theirs}.png"))
        assert np.array_equal(a, b)
