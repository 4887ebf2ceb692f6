"""Family 5 and 6: NaN, infinite and huge-but-finite values, and affines that cannot place
voxels (zero, singular, non-finite) or place them absurdly (huge, tiny).

Decisions (docs/reliability.md): NaN and infinite voxels in a NIfTI/DICOM volume are
background (PET files use NaN outside the head), but a volume with no finite voxel is
refused; an ordinary float image with any NaN/inf is refused (no such convention there);
huge finite values (+-3e38) are fused; a scaling (slope/intercept) that overflows float32
is refused; an affine with NaN/inf or a zero/singular matrix is refused; a DICOM position,
orientation or spacing that is invalid or absurd (beyond 1 km) counts as missing geometry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from helpers import hostile_files as hf
from helpers.hostile_cli import Box, invoke

NAN, INF = float("nan"), float("inf")
F32 = np.float32


def _ids(cases: list[Any]) -> list[Any]:
    out = []
    for c in cases:
        if hasattr(c, "marks"):  # a pytest.param with marks: its first value is the id
            out.append(pytest.param(*c.values[1:], id=c.values[0], marks=c.marks))
        else:
            out.append(pytest.param(*c[1:], id=c[0]))
    return out


def _ramp() -> np.ndarray:
    return np.linspace(0, 1, 64 * 64, dtype=F32).reshape(64, 64)


def _tiff(values: Callable[[np.ndarray], np.ndarray]) -> Callable[[], bytes]:
    return lambda: hf.float_tiff_bytes(values(_ramp()))


def _set(a: np.ndarray, idx: Any, v: float) -> np.ndarray:
    a = a.copy()
    a[idx] = v
    return a


FLOAT_TIFFS: list[tuple[str, Callable[[], bytes], int]] = [
    ("one-nan", _tiff(lambda a: _set(a, (3, 3), NAN)), 1),
    ("one-inf", _tiff(lambda a: _set(a, (3, 3), INF)), 1),
    ("one-minus-inf", _tiff(lambda a: _set(a, (3, 3), -INF)), 1),
    ("all-nan", _tiff(lambda a: np.full_like(a, NAN)), 1),
    ("half-nan", _tiff(lambda a: np.where(a > 0.5, F32(NAN), a).astype(F32)), 1),
    ("plus-minus-3e38", _tiff(lambda a: ((a * 2 - 1) * F32(3e38)).astype(F32)), 0),
    ("all-max-float", _tiff(lambda a: np.full_like(a, np.finfo(F32).max)), 0),
    ("all-min-float", _tiff(lambda a: np.full_like(a, -np.finfo(F32).max)), 0),
    ("denormal", _tiff(lambda a: (a * F32(1e-44)).astype(F32)), 0),
    ("negative", _tiff(lambda a: -a), 0),
    ("constant", _tiff(lambda a: np.full_like(a, 7.0)), 0),
]


@pytest.mark.parametrize(("data", "code"), [pytest.param(d, c, id=i) for i, d, c in FLOAT_TIFFS])
@pytest.mark.parametrize("position", ["mri", "other"])
def test_float_tiff_values(box: Box, data: Callable[[], bytes], code: int, position: str) -> None:
    bad = box.put("values.tif", data())
    good = box.png("good.png")
    mri, other = (bad, good) if position == "mri" else (good, bad)
    out = box.out / "f.png"
    box.snap()
    res = invoke("fuse", mri, other, "-o", out)
    if code:
        box.refused(res, code, "NaN or infinite", absent=(box.out,))
    else:
        box.accepted(res, (out,))


def _vol(fill: Callable[[np.ndarray], np.ndarray]) -> Callable[[], bytes]:
    return lambda: hf.nifti_bytes(fill(hf.nifti_volume((16, 16, 4), dtype=F32)))


VOLUMES: list[Any] = [
    ("all-nan", _vol(lambda a: np.full_like(a, NAN)), 1, "no finite voxels"),
    ("all-inf", _vol(lambda a: np.full_like(a, INF)), 1, "no finite voxels"),
    ("nan-and-inf", _vol(lambda a: np.where(a > 100, F32(INF), F32(NAN)).astype(F32)), 1,
     "no finite voxels"),
    ("some-nan", _vol(lambda a: _set(a, slice(0, 4), NAN)), 0, None),
    ("one-inf", _vol(lambda a: _set(a, (2, 2, 2), INF)), 0, None),
    ("one-minus-inf", _vol(lambda a: _set(a, (2, 2, 2), -INF)), 0, None),
    ("plus-minus-3e38", _vol(lambda a: ((a / a.max() * 2 - 1) * F32(3e38)).astype(F32)), 0,
     None),
    ("up-to-3e38", _vol(lambda a: (a / a.max() * F32(3e38)).astype(F32)), 0, None),
    ("all-zero", _vol(np.zeros_like), 0, None),
    ("constant", _vol(lambda a: np.full_like(a, 7.0)), 0, None),
    ("denormal", _vol(lambda a: (a * F32(1e-44)).astype(F32)), 0, None),
    ("float64-1e300", lambda: hf.nifti_bytes(hf.nifti_volume((16, 16, 4), dtype=np.float64)
                                             * 1e297), 1, "float32"),
    ("float64-small", lambda: hf.nifti_bytes(hf.nifti_volume((16, 16, 4), dtype=np.float64)
                                             * 1e-3), 0, None),
    ("int32-extremes", lambda: hf.nifti_bytes(
        np.where(hf.nifti_volume((16, 16, 4)) > 300, np.iinfo(np.int32).max,
                 np.iinfo(np.int32).min).astype(np.int32)), 0, None),
]


def _volume_params() -> list[Any]:
    out = []
    for position in ("mri", "other"):
        for ident, data, code, match in VOLUMES:
            out.append(pytest.param(data, code, match, position, id=f"{position}-{ident}"))
    return out


@pytest.mark.parametrize(("data", "code", "match", "position"), _volume_params())
def test_volume_values(box: Box, data: Callable[[], bytes], code: int, match: str | None,
                       position: str) -> None:
    bad = box.put("values.nii", data())
    good = box.put("good.nii", hf.nifti_bytes(hf.nifti_volume((16, 16, 4), dtype=F32)))
    mri, other = (bad, good) if position == "mri" else (good, bad)
    out = box.out / "f.nii.gz"
    box.snap()
    res = invoke("fuse", mri, other, "-o", out, "--modality", "pet")
    if code:
        box.refused(res, code, match, absent=(box.out,))
    else:
        box.accepted(res, (out,))


def _nii_edit(**fields: Any) -> Callable[[], bytes]:
    return lambda: hf.nifti_edit(hf.nifti_bytes(), **fields)


def _dcm(**attrs: Any) -> Callable[[], bytes]:
    def edit(ds: Any) -> None:
        for k, v in attrs.items():
            setattr(ds, k, v)

    return lambda: hf.dicom_bytes(edit)


SCALING: list[Any] = [
    ("nii-slope-3e38", _nii_edit(scl_slope=3e38), ".nii", 1, "float32 range"),
    ("nii-slope-minus-3e38", _nii_edit(scl_slope=-3e38), ".nii", 1, "float32 range"),
    ("nii-slope-1e30", _nii_edit(scl_slope=1e30), ".nii", 0, None),
    ("nii-slope-nan", _nii_edit(scl_slope=NAN), ".nii", 0, None),
    ("nii-slope-inf", _nii_edit(scl_slope=INF), ".nii", 0, None),
    ("nii-slope-negative", _nii_edit(scl_slope=-1.0), ".nii", 0, None),
    ("nii-slope-denormal", _nii_edit(scl_slope=1e-40), ".nii", 0, None),
    ("nii-inter-nan", _nii_edit(scl_slope=1.0, scl_inter=NAN), ".nii", 1, None),
    ("nii-inter-3e38", _nii_edit(scl_slope=1.0, scl_inter=3e38), ".nii", 0, None),
    ("dcm-slope-1e38", _dcm(RescaleSlope="1e38"), ".dcm", 1, "float32 range"),
    ("dcm-slope-1e308", _dcm(RescaleSlope="1e308"), ".dcm", 1, "float32 range"),
    ("dcm-slope-minus-1e38", _dcm(RescaleSlope="-1e38"), ".dcm", 1, "float32 range"),
    ("dcm-intercept-1e39", _dcm(RescaleSlope="1", RescaleIntercept="1e39"), ".dcm", 1,
     "float32 range"),
    ("dcm-intercept-3e38", _dcm(RescaleSlope="1", RescaleIntercept="3e38"), ".dcm", 0, None),
    ("dcm-slope-nan", _dcm(RescaleSlope="NaN"), ".dcm", 0, None),
    ("dcm-slope-inf", _dcm(RescaleSlope="inf"), ".dcm", 0, None),
    ("dcm-slope-zero", _dcm(RescaleSlope="0"), ".dcm", 0, None),
    ("dcm-slope-text", lambda: hf.dicom_bytes(hf.raw_element(0x00281053, "DS", b"abc ")),
     ".dcm", 0, None),
    ("dcm-rows-text", lambda: hf.dicom_bytes(hf.raw_element(0x00280010, "US", b"ab")), ".dcm", 1,
     None),
    ("dcm-frames-text", lambda: hf.dicom_bytes(hf.raw_element(0x00280008, "IS", b"abc ")),
     ".dcm", 1, None),
    ("dcm-window-nan", _dcm(WindowCenter="nan", WindowWidth="nan"), ".dcm", 0, None),
    ("dcm-window-negative", _dcm(WindowWidth="-5"), ".dcm", 0, None),
    ("dcm-window-huge", _dcm(WindowCenter="1e300", WindowWidth="1e300"), ".dcm", 0, None),
]


@pytest.mark.parametrize(("data", "suffix", "code", "match"), _ids(SCALING))
def test_scaling_that_overflows(box: Box, data: Callable[[], bytes], suffix: str, code: int,
                                match: str | None) -> None:
    bad = box.put(f"scaled{suffix}", data())
    out = box.out / ("f.nii.gz" if suffix == ".nii" else "f.png")
    box.snap()
    res = invoke("fuse", bad, bad, "-o", out, "--modality", "pet")
    if code:
        box.refused(res, code, match, absent=(box.out,))
    else:
        box.accepted(res, (out,))


# -- affines -------------------------------------------------------------------------------

Z4 = (0.0, 0.0, 0.0, 0.0)
AFFINES: list[tuple[str, Callable[[], bytes], int, str | None]] = [
    ("sform-zero", _nii_edit(srow_x=Z4, srow_y=Z4, srow_z=Z4), 1, "zero or singular"),
    ("sform-singular", _nii_edit(srow_x=(1, 1, 0, 0), srow_y=(1, 1, 0, 0), srow_z=(0, 0, 1, 0)),
     1, "singular"),
    ("sform-rank-1", _nii_edit(srow_x=(1, 2, 3, 0), srow_y=(2, 4, 6, 0), srow_z=(3, 6, 9, 0)), 1,
     "singular"),
    ("sform-nan", _nii_edit(srow_x=(NAN, 0, 0, 0)), 1, "NaN or infinite"),
    ("sform-inf", _nii_edit(srow_x=(INF, 0, 0, 0)), 1, "NaN or infinite"),
    ("sform-offset-nan", _nii_edit(srow_z=(0, 0, 3, NAN)), 1, "NaN or infinite"),
    ("sform-huge", _nii_edit(srow_x=(3e38, 0, 0, 0), srow_y=(0, 3e38, 0, 0),
                             srow_z=(0, 0, 3e38, 0)), 0, None),
    ("sform-huge-offset", _nii_edit(srow_x=(-2, 0, 0, 3e38)), 0, None),
    ("sform-tiny", _nii_edit(srow_x=(1e-30, 0, 0, 0), srow_y=(0, 1e-30, 0, 0),
                             srow_z=(0, 0, 1e-30, 0)), 0, None),
    ("sform-sheared", _nii_edit(srow_x=(2, 1, 0, 0), srow_y=(0, 2, 1, 0), srow_z=(1, 0, 3, 0)),
     0, None),
    ("sform-mirrored", _nii_edit(srow_x=(2, 0, 0, 0), srow_y=(0, 2, 0, 0), srow_z=(0, 0, 3, 0)),
     0, None),
    ("qform-pixdim-zero", _nii_edit(sform_code=0, pixdim=(1, 0, 0, 0, 1, 1, 1, 1)), 0, None),
    ("qform-pixdim-negative", _nii_edit(sform_code=0, pixdim=(1, -2, -2, -3, 1, 1, 1, 1)), 0,
     None),
    ("qform-pixdim-nan", _nii_edit(sform_code=0, pixdim=(1, NAN, 2, 3, 1, 1, 1, 1)), 1,
     "NaN or infinite"),
    ("qform-pixdim-inf", _nii_edit(sform_code=0, pixdim=(1, INF, 2, 3, 1, 1, 1, 1)), 1,
     "NaN or infinite"),
    ("qform-pixdim-huge", _nii_edit(sform_code=0, pixdim=(1, 3e38, 3e38, 3e38, 1, 1, 1, 1)), 0,
     None),
    ("qform-qfac-invalid", _nii_edit(sform_code=0, pixdim=(7, 2, 2, 3, 1, 1, 1, 1)), 0, None),
    ("qform-quaternion-nan", _nii_edit(sform_code=0, quatern=(NAN, 0, 0)), 1, "NaN or infinite"),
    ("qform-quaternion-too-long", _nii_edit(sform_code=0, quatern=(5, 5, 5)), 1, None),
    ("qform-offset-inf", _nii_edit(sform_code=0, qoffset=(INF, 0, 0)), 1, "NaN or infinite"),
    ("no-codes-pixdim-nan", _nii_edit(sform_code=0, qform_code=0,
                                      pixdim=(1, NAN, 2, 3, 1, 1, 1, 1)), 1, "NaN or infinite"),
    ("no-codes-pixdim-zero", _nii_edit(sform_code=0, qform_code=0,
                                       pixdim=(1, 0, 0, 0, 1, 1, 1, 1)), 0, None),
    ("sform-code-invalid", _nii_edit(sform_code=99), 0, None),
    ("qform-code-invalid", _nii_edit(sform_code=0, qform_code=-5), 0, None),
]


@pytest.mark.parametrize(("data", "code", "match"),
                         [pytest.param(d, c, m, id=i) for i, d, c, m in AFFINES])
def test_nifti_affine(box: Box, data: Callable[[], bytes], code: int, match: str | None) -> None:
    """The affine of the MRI (both inputs share it, so an accepted one meets its twin)."""
    bad = box.put("affine.nii", data())
    out = box.out / "f.nii.gz"
    box.snap()
    res = invoke("fuse", bad, bad, "-o", out, "--modality", "ct")
    if code:
        box.refused(res, code, match, absent=(box.out,))
    else:
        box.accepted(res, (out,))


@pytest.mark.parametrize(("case", "code", "match"), [
    ("sform-huge", 0, None),            # overlaps nothing: warned, still fused on the MRI grid
    ("sform-huge-offset", 1, "do not overlap"),
    ("sform-tiny", 0, None),
    ("sform-zero", 1, "zero or singular"),
    ("sform-nan", 1, "NaN or infinite"),
])
def test_second_input_affine_against_a_good_mri(box: Box, case: str, code: int,
                                                match: str | None) -> None:
    data = next(d for i, d, _, _ in AFFINES if i == case)
    mri = box.put("mri.nii", hf.nifti_bytes())
    other = box.put("other.nii", data())
    out = box.out / "f.nii.gz"
    box.snap()
    res = invoke("fuse", mri, other, "-o", out, "--modality", "ct")
    if code:
        box.refused(res, code, match, absent=(box.out,))
    else:
        box.accepted(res, (out,))


DICOM_GEOMETRY: list[tuple[str, dict[str, Any], int]] = [
    ("orientation-zero", {"ImageOrientationPatient": [0, 0, 0, 0, 0, 0]}, 0),
    ("orientation-collinear", {"ImageOrientationPatient": [1, 0, 0, 1, 0, 0]}, 0),
    ("orientation-nan", {"ImageOrientationPatient": ["nan", 0, 0, 0, 1, 0]}, 0),
    ("orientation-short", {"ImageOrientationPatient": [1, 0, 0]}, 0),
    ("orientation-unnormalised", {"ImageOrientationPatient": [3, 0, 0, 0, 3, 0]}, 0),
    ("position-nan", {"ImagePositionPatient": ["nan", 0, 0]}, 0),
    ("position-inf", {"ImagePositionPatient": ["inf", 0, 0]}, 0),
    ("position-1e300", {"ImagePositionPatient": ["1e300", 0, 0]}, 0),
    ("spacing-zero", {"PixelSpacing": [0, 0]}, 0),
    ("spacing-negative", {"PixelSpacing": [-1, -1]}, 0),
    ("spacing-nan", {"PixelSpacing": ["nan", "nan"]}, 0),
    ("spacing-1e300", {"PixelSpacing": ["1e300", "1e300"]}, 0),
    ("spacing-1e-300", {"PixelSpacing": ["1e-300", "1e-300"]}, 1),
    ("thickness-1e300", {"SliceThickness": "1e300"}, 0),
    ("thickness-negative", {"SliceThickness": "-3"}, 0),
]


@pytest.mark.parametrize(("attrs", "code"),
                         [pytest.param(a, c, id=i) for i, a, c in DICOM_GEOMETRY])
def test_dicom_geometry(box: Box, attrs: dict[str, Any], code: int) -> None:
    """Invalid or absurd geometry is missing geometry (fused as a plain slice); a spacing so
    small the affine collapses is refused."""
    bad = box.put("geom.dcm", _dcm(**attrs)())
    out = box.out / "f.png"
    box.snap()
    res = invoke("fuse", bad, bad, "-o", out, "--modality", "ct")
    if code:
        box.refused(res, code, absent=(box.out,))
    else:
        box.accepted(res, (out,))


@pytest.mark.parametrize(("attrs", "code"), [
    pytest.param({"ImagePositionPatient": ["1e300", 0, 0]}, 0, id="one-position-absurd"),
    pytest.param({"ImagePositionPatient": ["nan", 0, 0]}, 0, id="one-position-nan"),
    pytest.param({"ImageOrientationPatient": [0, 1, 0, 0, 0, -1]}, 1, id="one-orientation-off"),
    pytest.param({"PixelSpacing": [0.5, 0.5]}, 0, id="one-spacing-differs"),
])
def test_dicom_series_geometry(box: Box, attrs: dict[str, Any], code: int) -> None:
    def edit(ds: Any, k: int) -> None:
        if k == 2:
            for key, v in attrs.items():
                setattr(ds, key, v)

    mri = hf.dicom_series(box.inp / "mri", 5, edit)
    out = box.out / "f.nii.gz"
    box.snap()
    res = invoke("fuse", mri, mri, "-o", out, "--modality", "ct")
    if code:
        box.refused(res, code, absent=(box.out,))
    else:
        box.accepted(res, (out,))
