"""medfuse.io.dicom: reading files and series (pydicom's bundled samples and synthetic
series) and writing Secondary Capture series."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from helpers.checks import dciodvfy_errors
from helpers.synth import MR_AFFINE, MR_SHAPE, mr_values, write_mr_series
from helpers.synth import pydicom_sample as sample
from medfuse.errors import InputError, UsageError
from medfuse.io.dicom import looks_like_dicom, read_dicom, write_dicom_series
from medfuse.io.geometry import canonical_view, slice_plane, stack_view
from medfuse.io.read import read
from medfuse.prepare.windowing import Window

# ---------------------------------------------------------------------------- reading


def test_ct_and_mr_samples() -> None:
    ct = read(sample("CT_small.dcm"))
    assert ct.format == "dicom" and ct.modality == "ct" and ct.shape == (128, 128, 1)
    assert ct.is_2d and ct.has_geometry and ct.bit_depth is None
    ds = pydicom.dcmread(sample("CT_small.dcm"))
    hu = ct.stack("axial").values(0, 1)[0]
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    # the axial stack of a standard LPS-ordered slice is the image exactly as stored
    np.testing.assert_allclose(hu, expected)
    np.testing.assert_allclose(ct.pixels, expected)  # one slice: .pixels is that plane
    mr = read(sample("MR_small.dcm"))
    assert mr.modality == "mri" and mr.header_window == Window(600.0, 1600.0, "DICOM header")
    np.testing.assert_allclose(mr.affine[:3, :3].diagonal(), [-0.3125, -0.3125, 0.8], atol=1e-9)


def test_looks_like_dicom(tmp_path: Path) -> None:
    assert looks_like_dicom(sample("MR_small.dcm"))
    text = tmp_path / "notes"
    text.write_text("hello")
    assert not looks_like_dicom(text)
    # a DICOM file without a suffix is still found by its preamble
    bare = tmp_path / "IM0001"
    shutil.copy(sample("MR_small.dcm"), bare)
    assert read(bare).modality == "mri"


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_encodings_decode_alike(name: str) -> None:
    ref = read(sample("MR_small.dcm"))
    other = read(sample(name))
    np.testing.assert_array_equal(np.asarray(ref.data), np.asarray(other.data))


def test_missing_decoder_names_package() -> None:
    try:
        import pylibjpeg  # noqa: F401

        pytest.skip("a JPEG-LS decoder is installed")
    except ImportError:
        pass
    with pytest.raises(InputError, match="pip install pylibjpeg"):
        read(sample("MR_small_jpeg_ls_lossless.dcm"))


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot decode pixel data"):
        read(sample("MR_truncated.dcm"))
    with pytest.raises(InputError, match="no pixel data"):
        read_dicom(sample("rtplan.dcm"))
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10")
    with pytest.raises(InputError):
        read(junk)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no DICOM images"):
        read(empty)


def test_series_sorted_by_position(tmp_path: Path) -> None:
    vol = read(write_mr_series(tmp_path / "mr"))
    assert vol.shape == MR_SHAPE and vol.modality == "mri" and not vol.is_2d
    np.testing.assert_allclose(vol.affine, MR_AFFINE, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(vol.data), mr_values())
    with pytest.raises(InputError, match="not a single slice"):
        _ = vol.pixels


def test_mixed_series_and_choice(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    write_mr_series(folder / "a", series_uid="1.2.3.1")
    write_mr_series(folder / "b", mr_values() // 2, series_uid="1.2.3.2")
    with pytest.raises(InputError, match=r"2 series.*--series.*1\.2\.3\.1.*1\.2\.3\.2"):
        read(folder)
    picked = read(folder, series=["1.2.3.2"])
    np.testing.assert_array_equal(np.asarray(picked.data), mr_values() // 2)
    with pytest.raises(UsageError, match="1.2.9"):
        read(folder, series=["1.2.9"])


def test_duplicate_positions_refused(tmp_path: Path) -> None:
    folder = write_mr_series(tmp_path / "mr")
    first = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(first)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "echo2.dcm")
    with pytest.raises(InputError, match="share one slice position"):
        read(folder)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    ds = pydicom.dcmread(sample("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "m1.dcm"
    ds.save_as(path)
    normal = read(sample("MR_small.dcm")).stack("axial").values(0, 1)
    inverted = read(path)
    np.testing.assert_allclose(inverted.stack("axial").values(0, 1), -normal)
    assert inverted.header_window is not None and inverted.header_window.centre == -600.0


def test_multiframe_and_rgb() -> None:
    dose = read(sample("rtdose.dcm"))
    assert dose.shape == (10, 10, 15) and dose.has_geometry
    assert abs(dose.affine[2, 2]) == pytest.approx(5.0)  # GridFrameOffsetVector step
    rgb = read(sample("SC_rgb_rle_2frame.dcm"))
    assert rgb.is_rgb and rgb.shape[2] == 2 and rgb.header_window is not None


def test_template_untouched(tmp_path: Path) -> None:
    """Readers never write: the input files are byte-identical afterwards."""
    folder = write_mr_series(tmp_path / "mr")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    read(folder)
    assert before == {p.name: p.read_bytes() for p in folder.iterdir()}


def test_pet_per_slice_rescale(tmp_path: Path) -> None:
    """PET series often scale each slice differently: every slice gets its own slope."""
    stored = np.full(MR_SHAPE, 100, np.int16)
    folder = write_mr_series(tmp_path / "pt", stored, modality="PT", shuffle=False)
    for k, f in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(f)
        ds.RescaleSlope, ds.RescaleIntercept = 0.5 * (k + 1), 1.0
        del ds.WindowCenter, ds.WindowWidth
        ds.save_as(f)
    vol = read(folder)
    assert vol.modality == "pet" and vol.header_window is None
    vals = vol.stack("axial").values(0, MR_SHAPE[2])
    np.testing.assert_allclose(vals[:, 0, 0], [100 * 0.5 * (k + 1) + 1 for k in range(8)])


# ---------------------------------------------------------------------------- writing


def test_series_round_trip(tmp_path: Path) -> None:
    """A synthetic volume written as a DICOM series reads back with the same voxels and
    geometry (oblique-free but permuted storage, signed 16-bit)."""
    values = (mr_values().astype(np.int16) - 300)
    stack, aff = stack_view(values, MR_AFFINE, "coronal")
    out = write_dicom_series(
        tmp_path / "series",
        ((np.ascontiguousarray(stack[n]), slice_plane(aff, n)) for n in range(stack.shape[0])),
    )
    back = read(out)
    c0, a0 = canonical_view(values, MR_AFFINE)
    c1, a1 = canonical_view(np.asarray(back.data), back.affine)
    np.testing.assert_array_equal(c0, c1)
    np.testing.assert_allclose(a0, a1, atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_written_series_attributes(tmp_path: Path) -> None:
    """Secondary Capture, a new series in the source's study (unless anonymised), the
    pixels as given; dciodvfy finds no error where it is installed."""
    src = pydicom.dcmread(write_mr_series(tmp_path / "mr") / "file000.dcm", stop_before_pixels=True)
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200
    _, aff = stack_view(np.zeros(MR_SHAPE), MR_AFFINE, "axial")
    for anonymize in (False, True):
        out = write_dicom_series(tmp_path / f"sc{anonymize}", [(rgb, slice_plane(aff, 0)),
                                 (rgb, slice_plane(aff, 1))], source=src, anonymize=anonymize)
        for f in sorted(out.iterdir()):
            if shutil.which("dciodvfy"):
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


# ---------------------------------------------------------------------------- facts


def test_suv_facts_of_a_pet_series(tmp_path: Path) -> None:
    import datetime as dt

    from helpers.functional import write_pt_series
    from medfuse.io.dicom import SuvFacts, dicom_identity

    vol = read(write_pt_series(tmp_path / "pt"))
    facts = vol.suv
    assert isinstance(facts, SuvFacts)
    assert (facts.units, facts.weight_kg, facts.dose_bq, facts.half_life_s) == (
        "BQML", 70.0, 3.7e8, 6586.2)
    assert facts.injection == dt.datetime(2024, 5, 1, 10, 0) and facts.injection_time_only
    assert facts.series_time == dt.datetime(2024, 5, 1, 11, 0)
    assert facts.acquisition_time == dt.datetime(2024, 5, 1, 11, 0, 30)
    assert facts.decay_correction == "START" and facts.corrected_image == ("ATTN", "DECY")
    assert facts.as_dict()["injection"] == "2024-05-01T10:00:00"
    ident = dicom_identity(vol.dicom)
    assert ident["modality"] == "PT" and ident["patient_id"] == "ID-42"
    assert ident["frame_of_reference"] and ident["series_uid"]
    assert read(write_mr_series(tmp_path / "mr")).suv is None  # MR: no facts


def test_suv_facts_earliest_acquisition_and_datetime_forms(tmp_path: Path) -> None:
    import datetime as dt

    from helpers.functional import write_pt_series

    def per_slice(ds):  # type: ignore[no-untyped-def]
        k = int(ds.InstanceNumber)
        ds.AcquisitionTime = f"1101{k:02d}.5"
        info = ds.RadiopharmaceuticalInformationSequence[0]
        info.RadiopharmaceuticalStartDateTime = "20240501095930.25+0100"

    facts = read(write_pt_series(tmp_path / "pt", edit=per_slice)).suv
    assert facts.acquisition_time == dt.datetime(2024, 5, 1, 11, 1, 1, 500000)  # the earliest
    assert facts.injection == dt.datetime(2024, 5, 1, 9, 59, 30, 250000)
    assert not facts.injection_time_only


# ------------------------------------------------------------- header VOI through pydicom


def _mr_with(tmp_path: Path, name: str, **edits: object) -> Path:
    ds = pydicom.dcmread(sample("MR_small.dcm"))
    for key, value in edits.items():
        setattr(ds, key, value)
    path = tmp_path / name
    ds.save_as(path)
    return path


def test_sigmoid_header_window_is_applied_as_a_sigmoid(tmp_path: Path) -> None:
    from medfuse.prepare.windowing import apply_window

    path = _mr_with(tmp_path, "sig.dcm", WindowCenter=600, WindowWidth=400,
                    VOILUTFunction="SIGMOID")
    window = read(path).header_window
    assert window is not None and window.curve is not None
    assert window.source == "DICOM header, SIGMOID"
    x = np.array([0.0, 400.0, 600.0, 800.0, 5000.0, np.nan], np.float32)
    got = apply_window(x, window)
    sigmoid = 1.0 / (1.0 + np.exp(-4.0 * (x[:5] - 600.0) / 400.0))
    np.testing.assert_allclose(got[:5], sigmoid, atol=1e-4)
    assert got[5] == 0.0  # no data stays background
    linear = apply_window(x, Window(600.0, 400.0))  # what the linear window would give
    assert abs(float(got[1] - linear[1])) > 0.05


def test_voi_lut_sequence_is_applied(tmp_path: Path) -> None:
    """A VOI LUT that inverts: brighter stored values come out darker, which no centre and
    width can say."""
    from pydicom.dataset import Dataset

    from medfuse.prepare.windowing import apply_window

    item = Dataset()
    item.add_new(0x00283002, "US", [256, 0, 8])  # LUT Descriptor: entries, first, bits
    item.add_new(0x00283006, "US", list(range(255, -1, -1)))  # LUT Data
    path = _mr_with(tmp_path, "lut.dcm", VOILUTSequence=pydicom.Sequence([item]))
    window = read(path).header_window
    assert window is not None and window.curve is not None
    assert window.source == "DICOM header VOI LUT"
    got = apply_window(np.array([-10.0, 0.0, 100.0, 255.0, 900.0], np.float32), window)
    np.testing.assert_allclose(got, [1.0, 1.0, 155 / 255, 0.0, 0.0], atol=1e-6)


def test_monochrome1_sigmoid_is_inverted(tmp_path: Path) -> None:
    """MONOCHROME1: stored high is dark; the volume holds the values negated and the VOI
    is applied to the stored values, then inverted, as a MONOCHROME1 display does."""
    from medfuse.prepare.windowing import apply_window

    m2 = _mr_with(tmp_path, "m2.dcm", WindowCenter=600, WindowWidth=400,
                  VOILUTFunction="SIGMOID")
    m1 = _mr_with(tmp_path, "m1.dcm", WindowCenter=600, WindowWidth=400,
                  VOILUTFunction="SIGMOID", PhotometricInterpretation="MONOCHROME1")
    a, b = read(m2), read(m1)
    assert a.header_window is not None and b.header_window is not None
    pa = apply_window(a.stack("axial").values(0, 1), a.header_window)
    pb = apply_window(b.stack("axial").values(0, 1), b.header_window)
    np.testing.assert_allclose(pb, 1.0 - pa, atol=1e-5)
