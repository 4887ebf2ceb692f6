"""Medical formats without the network: geometry, windowing, DICOM and NIfTI readers/writers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medfuse.errors import InputError, UsageError
from medfuse.io.dicom import read_dicom, write_dicom_series
from medfuse.io.geometry import (
    canonical_view,
    check_affine,
    resample_slab,
    slice_plane,
    stack_view,
    thin_axis,
)
from medfuse.io.nifti import read_nifti, write_nifti
from medfuse.io.volume import read_volume
from medfuse.prepare.windowing import PRESETS, Window, apply_window, default_window, parse_window
from helpers.synth import (
    MR_AFFINE,
    MR_SHAPE,
    mr_values,
    write_mr_series,
)


def sample(name: str) -> Path:
    """A file bundled inside pydicom (never downloaded: these ship with the wheel)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom sample {name} not bundled")
    return Path(path)


def nib_data(name: str) -> Path:
    p = Path(nib.__file__).parent / "tests" / "data" / name
    if not p.is_file():
        pytest.skip(f"nibabel test file {name} not installed")
    return p


# ------------------------------------------------------------------------------ geometry

OBLIQUE_PERMUTED = np.array(
    [[0.0, -2.0, 0.1, 40.0], [0.0, 0.1, 3.0, -20.0], [1.5, 0.0, 0.0, 5.0], [0, 0, 0, 1.0]]
)


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_stack_view_keeps_every_voxel_in_place(axis: str) -> None:
    data = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    view, aff = stack_view(data, OBLIQUE_PERMUTED, axis)
    assert np.shares_memory(view, data)  # a view, never a copy
    for n, r, c in [(0, 0, 0), (1, 2, 3), (view.shape[0] - 1, view.shape[1] - 1, 0)]:
        i, j, k = np.argwhere(data == view[n, r, c])[0]
        np.testing.assert_allclose(aff @ [n, r, c, 1], OBLIQUE_PERMUTED @ [i, j, k, 1])


def test_stack_display_convention() -> None:
    """Axial: anterior at the top, patient right on the image left; slices go up."""
    _, aff = stack_view(np.zeros((3, 4, 5)), np.eye(4), "axial")
    assert aff[1, 1] < 0 and aff[0, 2] < 0 and aff[2, 0] > 0
    _, aff = stack_view(np.zeros((3, 4, 5)), np.eye(4), "sagittal")
    assert aff[2, 1] < 0 and aff[1, 2] < 0 and aff[0, 0] > 0  # superior top, anterior left


def test_same_anatomy_any_storage_order_gives_same_slices() -> None:
    """--axis/--slice mean the same thing whatever voxel order a file used (RAS canonical)."""
    ras = np.random.default_rng(0).random((6, 7, 8))
    aff_ras = np.diag([2.0, 2.0, 3.0, 1.0])
    # the same anatomy stored slice axis first, x and y reversed:
    # stored[a, b, c] = ras[5 - b, 6 - c, a]
    stored = np.ascontiguousarray(ras[::-1, ::-1, :].transpose(2, 0, 1))
    aff_stored = aff_ras @ np.array(
        [[0, -1, 0, 5], [0, 0, -1, 6], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float
    )
    for axis in ("axial", "coronal", "sagittal"):
        a, aa = stack_view(ras, aff_ras, axis)
        b, ab = stack_view(stored, aff_stored, axis)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(aa, ab)


def test_thin_axis_and_bad_affines() -> None:
    assert thin_axis((5, 6, 1), np.eye(4)) == "axial"
    assert thin_axis((1, 6, 5), np.eye(4)) == "sagittal"
    with pytest.raises(InputError, match="singular"):
        check_affine(np.zeros((4, 4)))
    with pytest.raises(InputError, match="singular"):
        check_affine(np.diag([1.0, 1.0, 0.0, 1.0]))
    with pytest.raises(InputError, match="NaN"):
        check_affine(np.full((4, 4), np.nan))


def test_resample_slab_trilinear_and_outside_is_nan() -> None:
    src = np.arange(4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4)  # linear in i, j, k
    aff = np.eye(4)
    target = np.eye(4)
    target[:3, 3] = [0.5, 0.0, 0.0]  # half a voxel along i
    # target stack axes (n, r, c) = (i, j, k) here
    out = resample_slab(src, aff, target, 0, 4, (4, 4))
    np.testing.assert_allclose(out[:3], src[:3] + 8.0)  # +0.5 voxel * 16 per i step
    assert np.isnan(out[3]).all()  # beyond the last voxel: no data


def test_slice_plane_geometry() -> None:
    _, aff = stack_view(np.zeros(MR_SHAPE), MR_AFFINE, "axial")
    plane = slice_plane(aff, 2)
    np.testing.assert_allclose(plane.position_lps, [-31.0, -31.0, 6.0])
    np.testing.assert_allclose(plane.row_cosine_lps, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(plane.column_cosine_lps, [0, 1, 0], atol=1e-12)
    assert plane.pixel_spacing == (2.0, 2.0) and plane.slice_spacing == 3.0


# ----------------------------------------------------------------------------- windowing


def test_window_parsing() -> None:
    assert parse_window("brain") == Window(*PRESETS["brain"], "preset brain")
    assert parse_window("40,80").width == 80
    assert parse_window(None) is None
    for bad in ("40", "a,b", "40,-3", "40,0", "1,2,3"):
        with pytest.raises(UsageError):
            parse_window(bad)


def test_apply_window_handles_nan_and_inf() -> None:
    w = Window(40.0, 80.0)
    vals = np.array([-100.0, 0.0, 40.0, 80.0, 500.0, np.nan, np.inf, -np.inf], np.float32)
    out = apply_window(vals, w)
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1, 0, 0, 0])
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_default_windows() -> None:
    rng = np.random.default_rng(0)
    mri = rng.random((20, 20, 10)) * 1000
    mri[0, 0, 0] = 1e6  # a single outlier must not set the window
    w = default_window(mri, "mr")
    assert 900 < w.high < 1000 and w.low < 10
    pet = rng.random((20, 20, 10)).astype(np.float32)
    pet[0] = np.nan
    w = default_window(pet, "pet")
    assert w.low == pytest.approx(float(np.nanmin(pet))) and w.high < 1.0
    assert default_window(mri, "ct").source.startswith("CT default")
    with pytest.raises(InputError, match="no finite"):
        default_window(np.full((4, 4, 4), np.nan), "mr")


# ---------------------------------------------------------------------------- DICOM in


def test_dicom_ct_and_mr_samples() -> None:
    ct = read_volume(sample("CT_small.dcm"))
    assert ct.format == "dicom" and ct.modality == "ct" and ct.shape == (128, 128, 1)
    assert ct.is_2d and ct.has_geometry
    ds = pydicom.dcmread(sample("CT_small.dcm"))
    hu = ct.stack("axial").values(0, 1)[0]
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    # the axial stack of a standard LPS-ordered slice is the image exactly as stored
    np.testing.assert_allclose(hu, expected)
    mr = read_volume(sample("MR_small.dcm"))
    assert mr.modality == "mr" and mr.header_window == Window(600.0, 1600.0, "DICOM header")
    np.testing.assert_allclose(mr.affine[:3, :3].diagonal(), [-0.3125, -0.3125, 0.8], atol=1e-9)


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_dicom_encodings_decode_alike(name: str) -> None:
    ref = read_volume(sample("MR_small.dcm"))
    other = read_volume(sample(name))
    np.testing.assert_array_equal(np.asarray(ref.data), np.asarray(other.data))


def test_missing_decoder_names_package() -> None:
    try:
        import pylibjpeg  # noqa: F401

        pytest.skip("a JPEG-LS decoder is installed")
    except ImportError:
        pass
    with pytest.raises(InputError, match="pip install pylibjpeg"):
        read_volume(sample("MR_small_jpeg_ls_lossless.dcm"))


def test_dicom_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot decode pixel data"):
        read_volume(sample("MR_truncated.dcm"))
    with pytest.raises(InputError, match="no pixel data"):
        read_dicom(sample("rtplan.dcm"))
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10")
    with pytest.raises(InputError):
        read_volume(junk)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no DICOM images"):
        read_volume(empty)


def test_dicom_series_sorted_by_position(tmp_path: Path) -> None:
    vol = read_volume(write_mr_series(tmp_path / "mr"))
    assert vol.shape == MR_SHAPE and vol.modality == "mr"
    np.testing.assert_allclose(vol.affine, MR_AFFINE, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(vol.data), mr_values())


def test_dicom_mixed_series_and_choice(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    write_mr_series(folder / "a", series_uid="1.2.3.1")
    write_mr_series(folder / "b", mr_values() // 2, series_uid="1.2.3.2")
    with pytest.raises(InputError, match=r"2 series.*--series.*1\.2\.3\.1.*1\.2\.3\.2"):
        read_volume(folder)
    picked = read_volume(folder, series=["1.2.3.2"])
    np.testing.assert_array_equal(np.asarray(picked.data), mr_values() // 2)
    with pytest.raises(UsageError, match="1.2.9"):
        read_volume(folder, series=["1.2.9"])


def test_dicom_duplicate_positions_refused(tmp_path: Path) -> None:
    folder = write_mr_series(tmp_path / "mr")
    first = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(first)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "echo2.dcm")
    with pytest.raises(InputError, match="share one slice position"):
        read_volume(folder)


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    ds = pydicom.dcmread(sample("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "m1.dcm"
    ds.save_as(path)
    normal = read_volume(sample("MR_small.dcm")).stack("axial").values(0, 1)
    inverted = read_volume(path)
    np.testing.assert_allclose(inverted.stack("axial").values(0, 1), -normal)
    assert inverted.header_window is not None and inverted.header_window.centre == -600.0


def test_dicom_multiframe_and_rgb() -> None:
    dose = read_volume(sample("rtdose.dcm"))
    assert dose.shape == (10, 10, 15) and dose.has_geometry
    assert abs(dose.affine[2, 2]) == pytest.approx(5.0)  # GridFrameOffsetVector step
    rgb = read_volume(sample("SC_rgb_rle_2frame.dcm"))
    assert rgb.is_rgb and rgb.shape[2] == 2 and rgb.header_window is not None


# --------------------------------------------------------------------------- DICOM out


def test_dicom_series_round_trip(tmp_path: Path) -> None:
    """A synthetic volume written as a DICOM series reads back with the same voxels and
    geometry (oblique-free but permuted storage, signed 16-bit)."""
    values = (mr_values().astype(np.int16) - 300)
    stack, aff = stack_view(values, MR_AFFINE, "coronal")
    out = write_dicom_series(
        tmp_path / "series",
        ((np.ascontiguousarray(stack[n]), slice_plane(aff, n)) for n in range(stack.shape[0])),
    )
    back = read_volume(out)
    c0, a0 = canonical_view(values, MR_AFFINE)
    c1, a1 = canonical_view(np.asarray(back.data), back.affine)
    np.testing.assert_array_equal(c0, c1)
    np.testing.assert_allclose(a0, a1, atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def dciodvfy_errors(path: Path) -> list[str]:
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_written_dicom_validates(tmp_path: Path) -> None:
    src = pydicom.dcmread(write_mr_series(tmp_path / "mr") / "file000.dcm", stop_before_pixels=True)
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200
    _, aff = stack_view(np.zeros(MR_SHAPE), MR_AFFINE, "axial")
    for anonymize in (False, True):
        out = write_dicom_series(tmp_path / f"sc{anonymize}", [(rgb, slice_plane(aff, 0)),
                                 (rgb, slice_plane(aff, 1))], source=src, anonymize=anonymize)
        for f in sorted(out.iterdir()):
            assert dciodvfy_errors(f) == [], f
            ds = pydicom.dcmread(f)
            assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
            assert ds.SeriesInstanceUID != src.SeriesInstanceUID
            assert (str(ds.PatientName) == "") == anonymize
            assert (ds.StudyInstanceUID == src.StudyInstanceUID) != anonymize
            np.testing.assert_array_equal(ds.pixel_array, rgb)


def test_series_output_refuses_existing_and_inputs(tmp_path: Path) -> None:
    folder = write_mr_series(tmp_path / "mr")
    grey = np.zeros((8, 8), np.uint16)
    with pytest.raises(UsageError, match="exists"):
        write_dicom_series(folder, [(grey, None)])
    with pytest.raises(UsageError, match="holds input"):
        write_dicom_series(folder, [(grey, None)], force=True, inputs=(folder / "file000.dcm",))

    def broken():  # a failure half-way leaves nothing behind
        yield grey, None
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_dicom_series(tmp_path / "half", broken())
    assert not (tmp_path / "half").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------ NIfTI


def test_nifti_round_trip_with_nans_and_geometry(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(6, 7, 5)).astype(np.float32)
    data[0, 0, 0] = np.nan
    aff = OBLIQUE_PERMUTED
    path = write_nifti(tmp_path / "v.nii.gz", data, aff)
    vol = read_nifti(path)
    np.testing.assert_array_equal(np.asarray(vol.data), data)  # NaN kept as stored
    np.testing.assert_allclose(vol.affine, aff, atol=1e-6)
    img = nib.load(path)
    np.testing.assert_allclose(img.get_sform(), aff, atol=1e-6)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    with pytest.raises(UsageError, match="exists"):
        write_nifti(path, data, aff)


def test_nifti_rgb24_round_trip(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (5, 6, 4, 3), dtype=np.uint8)
    path = write_nifti(tmp_path / "rgb.nii", rgb, MR_AFFINE)
    img = nib.load(path)
    assert img.header["datatype"] == 128 and img.shape == (5, 6, 4)
    vol = read_nifti(path)
    assert vol.is_rgb
    np.testing.assert_array_equal(np.asarray(vol.data), rgb)


def test_nifti_4d_and_2d(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 3 * 2, dtype=np.int16).reshape(4, 5, 3, 2)
    path = write_nifti(tmp_path / "four.nii", data, np.eye(4))
    with pytest.raises(UsageError, match="--volume N"):
        read_nifti(path)
    with pytest.raises(UsageError, match="volumes 0 to 1"):
        read_nifti(path, volume_index=2)
    np.testing.assert_array_equal(np.asarray(read_nifti(path, 1).data), data[..., 1])
    flat = read_nifti(write_nifti(tmp_path / "flat.nii", data[..., 0, 0], np.eye(4)))
    assert flat.is_2d and flat.shape == (4, 5, 1)


def test_nifti_bad_files(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    img.set_sform(np.zeros((4, 4)), code=1)
    img.set_qform(None, code=0)
    nib.save(img, tmp_path / "zero.nii")
    with pytest.raises(InputError, match="singular"):
        read_nifti(tmp_path / "zero.nii")
    (tmp_path / "junk.nii.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="not a readable NIfTI"):
        read_nifti(tmp_path / "junk.nii.gz")
    with pytest.raises(UsageError, match=".nii"):
        write_nifti(tmp_path / "x.img", np.zeros((2, 2, 2)), np.eye(4))


def test_nibabel_sample_4d() -> None:
    path = nib_data("example4d.nii.gz")
    img = nib.load(path)
    vol = read_nifti(path, volume_index=1)
    assert vol.shape == img.shape[:3]
    np.testing.assert_allclose(vol.affine, img.affine)
    scaled = vol.stack("axial").values(0, vol.stack("axial").data.shape[0])
    assert np.isfinite(scaled).all()


def test_dicom_template_untouched(tmp_path: Path) -> None:
    """Readers never write: the input files are byte-identical afterwards."""
    folder = write_mr_series(tmp_path / "mr")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    read_volume(folder)
    assert before == {p.name: p.read_bytes() for p in folder.iterdir()}


def test_dicom_pet_per_slice_rescale(tmp_path: Path) -> None:
    """PET series often scale each slice differently: every slice gets its own slope."""
    stored = np.full(MR_SHAPE, 100, np.int16)
    folder = write_mr_series(tmp_path / "pt", stored, modality="PT", shuffle=False)
    for k, f in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(f)
        ds.RescaleSlope, ds.RescaleIntercept = 0.5 * (k + 1), 1.0
        del ds.WindowCenter, ds.WindowWidth
        ds.save_as(f)
    vol = read_volume(folder)
    assert vol.modality == "pet" and vol.header_window is None
    vals = vol.stack("axial").values(0, MR_SHAPE[2])
    np.testing.assert_allclose(vals[:, 0, 0], [100 * 0.5 * (k + 1) + 1 for k in range(8)])
