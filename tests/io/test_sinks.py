"""medfuse.io.sinks: output formats, PNG naming, NIfTI/DICOM writers and the montage."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from helpers.synth import MR_AFFINE, MR_SHAPE, write_mr_series
from medfuse.errors import UsageError
from medfuse.io.images import read_pixels
from medfuse.io.read import read
from medfuse.io.sinks import DicomSink, NiftiSink, PngSink, output_format
from medfuse.io.volume import Volume
from medfuse.render import Montage


def grey(value: float, shape: tuple[int, int] = (8, 8)) -> np.ndarray:
    return np.full(shape, value, np.float32)


def test_output_format() -> None:
    assert output_format(Path("a.PNG")) == "png" and output_format(Path("a.jpg")) == "png"
    assert output_format(Path("a.nii")) == "nifti" and output_format(Path("a.nii.gz")) == "nifti"
    assert output_format(Path("a.dcm")) == "dicom"
    assert output_format(Path("series"), "DICOM") == "dicom"
    assert output_format(Path("slices"), "png") == "png"
    assert output_format(Path("a.nii"), "nii") == "nifti"
    with pytest.raises(UsageError, match="output suffix"):
        output_format(Path("a.xyz"))
    with pytest.raises(UsageError, match="--format"):
        output_format(Path("a.png"), "jpeg2000")
    with pytest.raises(UsageError, match=".nii or .nii.gz"):
        output_format(Path("a.png"), "nifti")
    with pytest.raises(UsageError, match="--format png"):
        output_format(Path("a.xyz"), "png")


def test_png_sink_names(tmp_path: Path) -> None:
    with PngSink(tmp_path / "f.png", [1, 12], 120, "axial", None, False, (), False) as sink:
        for i in (1, 12):
            sink.add(i, grey(i / 20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f_0001.png", "f_0012.png"]
    folder = tmp_path / "slices"
    with PngSink(folder, [0], 3, "coronal", 8, False, (), False) as sink:
        sink.add(0, grey(0.5))
    assert [p.name for p in folder.iterdir()] == ["coronal_0000.png"]
    with PngSink(tmp_path / "one.png", [7], 8, "axial", None, False, (), True) as sink:
        sink.add(7, grey(0.5))
    assert read_pixels(tmp_path / "one.png")[1] == 16  # grey of a volume: 16-bit
    with pytest.raises(UsageError, match="give a .png name"):
        PngSink(tmp_path / "one", [7], 8, "axial", None, False, (), True)


def test_png_sink_depths(tmp_path: Path) -> None:
    with PngSink(tmp_path / "g.png", [0], 1, "axial", None, False, (), True,
                 grey_bit_depth=8) as sink:
        sink.add(0, grey(0.5))
    assert read_pixels(tmp_path / "g.png")[1] == 8
    with PngSink(tmp_path / "c.png", [0], 1, "axial", None, False, (), True) as sink:
        sink.add(0, np.full((8, 8, 3), 0.5, np.float32))
    assert read_pixels(tmp_path / "c.png")[1] == 8  # colour: 8-bit unless asked
    with PngSink(tmp_path / "c16.png", [0], 1, "axial", 16, False, (), True) as sink:
        sink.add(0, np.full((8, 8, 3), 0.5, np.float32))
    assert read_pixels(tmp_path / "c16.png")[1] == 16


def test_png_sink_abort_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "f.png"
    with pytest.raises(RuntimeError), PngSink(out, [0, 1], 2, "axial", None, False, (), False) as sink:
        sink.add(0, grey(0.2))
        raise RuntimeError("the engine failed")
    assert list(tmp_path.iterdir()) == []


def test_png_sink_checks_every_target(tmp_path: Path) -> None:
    (tmp_path / "f_0001.png").write_bytes(b"keep")
    with pytest.raises(UsageError, match="f_0001.png exists"):
        PngSink(tmp_path / "f.png", [0, 1], 2, "axial", None, False, (), False)
    assert (tmp_path / "f_0001.png").read_bytes() == b"keep"


def test_nifti_sink_grey_and_colour(tmp_path: Path) -> None:
    mri = Volume(data=np.zeros(MR_SHAPE, np.int16), affine=MR_AFFINE)
    with NiftiSink(tmp_path / "g.nii.gz", mri, "axial", False, False, ()) as sink:
        for k in range(MR_SHAPE[2]):
            sink.add(k, grey(k / 7, (32, 32)))
    img = nib.load(tmp_path / "g.nii.gz")
    assert img.shape == MR_SHAPE and img.get_data_dtype() == np.uint16
    np.testing.assert_allclose(img.affine, MR_AFFINE, atol=1e-5)
    back = read(tmp_path / "g.nii.gz").stack("axial").values(0, MR_SHAPE[2])
    np.testing.assert_allclose(back[:, 0, 0], np.arange(8) / 7, atol=1e-4)  # scl_slope 1/65535
    with NiftiSink(tmp_path / "c.nii", mri, "coronal", True, False, ()) as sink:
        for k in range(MR_SHAPE[1]):
            sink.add(k, np.full((8, 32, 3), 0.5, np.float32))
    assert nib.load(tmp_path / "c.nii").header["datatype"] == 128


def test_dicom_sink_single_file_and_series(tmp_path: Path) -> None:
    mr = read(write_mr_series(tmp_path / "mr"))
    stack = mr.stack("axial")
    one = tmp_path / "one.dcm"
    with DicomSink(one, mr, stack.affine, True, False, False, (), True, "test") as sink:
        sink.add(3, np.full((32, 32, 3), 0.5, np.float32))
    ds = pydicom.dcmread(one)
    assert ds.PhotometricInterpretation == "RGB" and ds.SeriesDescription == "test"
    assert float(ds.ImagePositionPatient[2]) == pytest.approx(9.0)  # slice 3, 3 mm apart
    series = tmp_path / "series"
    with DicomSink(series, mr, stack.affine, False, True, False, (), False, "g") as sink:
        for k in (0, 1):
            sink.add(k, grey(0.5, (32, 32)))
    files = sorted(series.iterdir())
    assert [f.name for f in files] == ["IM00001.dcm", "IM00002.dcm"]
    ds = pydicom.dcmread(files[0])
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 16
    assert str(ds.PatientName) == ""  # anonymised


def test_montage(tmp_path: Path) -> None:
    m = Montage(tmp_path / "p.png", list(range(20)), False, ())
    assert len(m.wanted) == 16
    for i in range(20):
        m.add(i, grey(i / 20, (300, 150)))  # shrunk to tiles of at most 256 px
    out = m.write()
    assert out == tmp_path / "p.png"
    img = read_pixels(out)[0]
    assert img.shape == (4 * 256, 4 * 128)
    with pytest.raises(UsageError, match="--preview"):
        Montage(tmp_path / "p.nii", [0], False, ())
    assert Montage(tmp_path / "q.png", [0, 1], False, ()).write() is None  # no tile: nothing


def test_montage_labels_orientation_and_small_tiles(tmp_path: Path) -> None:
    """Slice numbers and orientation letters are drawn on tiles of 64 px and more, and left
    off smaller tiles (where they would hide the image)."""
    big = Montage(tmp_path / "big.png", [0, 5], False, (), labels=True, orientation=("L", "P"))
    plain = Montage(tmp_path / "plain.png", [0, 5], False, ())
    for m in (big, plain):
        for i in (0, 5):
            m.add(i, grey(0.5, (80, 80)))
    a, b = read_pixels(big.write())[0], read_pixels(plain.write())[0]  # type: ignore[arg-type]
    assert a.shape == b.shape == (80, 160)
    assert (a != b).any() and (a[38:42, 70:80] != 0.5).any()  # "L" at the right edge
    small = Montage(tmp_path / "small.png", [0], False, (), labels=True, orientation=("L", "P"))
    small.add(0, grey(0.5, (32, 32)))
    written = read_pixels(small.write())[0]  # type: ignore[arg-type]
    assert (written == np.float32(128 / 255)).all()  # nothing drawn


def test_triptych_montage(tmp_path: Path) -> None:
    m = Montage(tmp_path / "t.png", list(range(10)), False, (), style="triptych",
                other_name="PET")
    assert len(m.wanted) == 6
    for i in range(10):
        m.add(i, grey(0.9, (16, 20)), mri=grey(0.1, (16, 20)),
              other=np.full((16, 20, 3), (1.0, 0.5, 0.0), np.float32))
    img = read_pixels(m.write())[0]  # type: ignore[arg-type]
    assert img.shape == (3 * 16, 6 * 20, 3)
    np.testing.assert_allclose(img[:16, :, 0], round(0.1 * 255) / 255)  # MRI row
    np.testing.assert_allclose(img[16:32, :, 0], 1.0)  # PET row (orange)
    np.testing.assert_allclose(img[32:, :, 0], round(0.9 * 255) / 255)  # fused row
    with pytest.raises(ValueError, match="needs the MRI and other"):
        m.add(sorted(m.wanted)[0], grey(0.9, (16, 20)))
    with pytest.raises(UsageError, match="--preview-style"):
        Montage(tmp_path / "u.png", [0], False, (), style="strip")
