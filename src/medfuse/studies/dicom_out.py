"""DICOM files of a generated study: MR, CT and PET series, and one NM multi-frame SPECT file.

Why our own writer (``medfuse.io.dicom`` writes only Secondary Capture): a study must look
like what scanners export, with the attributes medfuse's readers have to get right:

* PET (PET Image Storage): Bq/ml stored as int16 with a **per-slice** Rescale Slope,
  ``Units`` BQML, ``DecayCorrection`` START, ``PatientWeight`` and the Radiopharmaceutical
  Information Sequence (dose, injection time, F-18 half-life), ``SeriesTime`` as the
  decay-correction reference: everything SUVbw needs, and nothing else needed.
* SPECT (NM Image Storage, ``RECON TOMO``): one multi-frame file whose geometry is *not* at
  the top level but in the Detector Information Sequence; frames step along the slice
  normal by ``SpacingBetweenSlices``; ``FrameIncrementPointer`` names ``SliceVector``.
* CT: HU through Rescale Intercept -1024, brain and bone windows in the header.

Output is deterministic: UIDs are derived from the study's key (kind and seed) and every
date and time is fixed, so one seed gives byte-identical files.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.io.geometry import RAS_TO_LPS, flip_axis

SOP_CLASSES = {
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "NM": "1.2.840.10008.5.1.4.1.1.20",
}
#: (0054,0080) Slice Vector: what an NM RECON TOMO file's frames are indexed by.
SLICE_VECTOR_TAG = 0x00540080
INT16_MAX = 32767


def ds_value(value: float) -> Any:
    """A float as a DICOM decimal string (at most 16 characters)."""
    from pydicom.valuerep import DSfloat

    return DSfloat(float(value), auto_format=True)


def ds_round(value: float) -> float:
    """The float a reader gets back after ``value`` is written as a decimal string, so
    pixels can be quantised with exactly the slope the file will state."""
    return float(str(ds_value(value)))


def make_uid(*parts: object) -> str:
    """A UID derived from ``parts`` (same parts, same UID): deterministic studies."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["medfuse-studies", *[str(p) for p in parts]]))


@dataclass(frozen=True)
class DicomContext:
    """Patient, study and frame of reference shared by the series of one study."""

    key: str  # what UIDs are derived from (kind and seed)
    patient_name: str
    patient_id: str
    study_uid: str
    study_date: str
    study_time: str
    description: str
    patient_weight_kg: float | None = None

    @classmethod
    def create(cls, key: str, description: str, study_date: str, study_time: str,
               weight_kg: float | None = None) -> DicomContext:
        return cls(key=key, patient_name="MEDFUSE^SYNTHETIC", patient_id=f"MF-{key}",
                   study_uid=make_uid(key, "study"), study_date=study_date,
                   study_time=study_time, description=description,
                   patient_weight_kg=weight_kg)


def dicom_order(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid with its third axis running along the DICOM slice normal (row cosine x
    column cosine), flipping it when needed: an NM file's frames must, and series read
    back in the same voxel order are easier to compare."""
    lps = RAS_TO_LPS @ np.asarray(affine, np.float64)
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    if float(normal @ lps[:3, 2]) < 0:
        data, affine = flip_axis(data, np.asarray(affine, np.float64), 2)
    return np.ascontiguousarray(data), affine


@dataclass(frozen=True)
class PlaneGeometry:
    """Image Plane attributes of a (column, row, slice) grid in DICOM's LPS terms."""

    orientation: list[float]  # row cosine then column cosine
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    slice_spacing: float
    first_position: np.ndarray
    step: np.ndarray

    @classmethod
    def of(cls, affine: np.ndarray) -> PlaneGeometry:
        lps = RAS_TO_LPS @ np.asarray(affine, np.float64)
        dc, dr = float(np.linalg.norm(lps[:3, 0])), float(np.linalg.norm(lps[:3, 1]))
        return cls(
            orientation=[*(lps[:3, 0] / dc), *(lps[:3, 1] / dr)],
            pixel_spacing=(dr, dc),
            slice_spacing=float(np.linalg.norm(lps[:3, 2])),
            first_position=lps[:3, 3].copy(),
            step=lps[:3, 2].copy(),
        )

    def position(self, k: int) -> list[float]:
        return [float(v) for v in self.first_position + k * self.step]


def _base(ctx: DicomContext, modality: str, series_uid: str, instance_uid: str,
          series_number: int, description: str, frame_uid: str) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = make_uid("implementation")
    meta.ImplementationVersionName = "MEDFUSE_STUDY"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.SOPInstanceUID = instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = ctx.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = ctx.study_time
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "medfuse synthetic study"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = ctx.description
    ds.SeriesDescription = description
    ds.PatientName = ctx.patient_name
    ds.PatientID = ctx.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    if ctx.patient_weight_kg is not None:
        ds.PatientWeight = ds_value(ctx.patient_weight_kg)
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = ctx.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def _pixels(ds: Any, plane: np.ndarray) -> None:
    """Attach one (rows, columns) plane or (frames, rows, columns) stack of 16-bit pixels."""
    ds.Rows, ds.Columns = int(plane.shape[-2]), int(plane.shape[-1])
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if plane.dtype == np.int16 else 0
    ds.PixelData = np.ascontiguousarray(plane).astype(plane.dtype.newbyteorder("<")).tobytes()


def write_series(
    folder: Path,
    stored: np.ndarray,
    affine: np.ndarray,
    modality: str,
    ctx: DicomContext,
    *,
    series_number: int,
    description: str,
    frame_uid: str,
    slopes: np.ndarray | None = None,
    intercept: float = 0.0,
    extra: Callable[[Any, int], None] | None = None,
) -> Path:
    """One file per slice of an (i, j, k) int16/uint16 grid: ``IM00001.dcm`` ...

    ``stored`` holds the pixel values as stored; scanner units are ``stored * slopes[k] +
    intercept``; ``extra(ds, k)`` adds modality attributes. The folder must not exist (the
    study writer stages the whole study).
    """
    stored, affine = dicom_order(stored, affine)
    geo = PlaneGeometry.of(affine)
    folder.mkdir(parents=True)
    series_uid = make_uid(ctx.key, modality, series_number, "series")
    n = stored.shape[2]
    template = _base(ctx, modality, series_uid, "", series_number, description, frame_uid)
    for k in range(n):
        # A shallow copy per slice: shared elements are replaced, never changed in place.
        ds = copy.copy(template)
        ds.file_meta = copy.copy(template.file_meta)
        uid = make_uid(ctx.key, modality, series_number, k)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [ds_value(v) for v in geo.position(k)]
        ds.ImageOrientationPatient = [ds_value(v) for v in geo.orientation]
        ds.PixelSpacing = [ds_value(v) for v in geo.pixel_spacing]
        ds.SliceThickness = ds_value(geo.slice_spacing)
        ds.SliceLocation = ds_value(float(np.dot(geo.position(k), np.cross(
            geo.orientation[:3], geo.orientation[3:]))))
        ds.RescaleIntercept = ds_value(intercept)
        ds.RescaleSlope = ds_value(1.0 if slopes is None else float(slopes[k]))
        if extra is not None:
            extra(ds, k)
        _pixels(ds, stored[:, :, k].T)
        ds.save_as(folder / f"IM{k + 1:05d}.dcm", enforce_file_format=True)
    return folder


def quantise_per_slice(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative values as int16 with one slope per slice (axis 2), the way PET scanners
    store Bq/ml: each slice uses the full int16 range, so the quantisation error is at most
    half a step of that slice's maximum / 32767. Slopes are rounded to what a DICOM decimal
    string holds before quantising, so ``stored * slope`` is exactly what a reader gets."""
    peaks = values.reshape(-1, values.shape[2]).max(axis=0) if values.ndim == 3 else values.max()
    slopes = np.array([ds_round(p / INT16_MAX) if p > 0 else 1.0 for p in np.atleast_1d(peaks)])
    stored = np.clip(np.rint(values / slopes.reshape(1, 1, -1)), 0, INT16_MAX).astype(np.int16)
    return stored, slopes


def pet_attributes(facts: Any, n_slices: int) -> Callable[[Any, int], None]:
    """The PET Series and Isotope modules: what SUVbw is computed from (see STUDIES.md)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def add(ds: Any, k: int) -> None:
        ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = facts.series_time
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.Units = "BQML"
        ds.CountsSource = "EMISSION"
        ds.SeriesType = ["STATIC", "IMAGE"]
        ds.DecayCorrection = "START"
        ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
        ds.RandomsCorrectionMethod = "DLYD"
        ds.AttenuationCorrectionMethod = "CT-based"
        ds.ReconstructionMethod = "OSEM 3i21s"
        ds.NumberOfSlices = n_slices
        ds.ImageIndex = k + 1
        ds.FrameReferenceTime = 0
        ds.ActualFrameDuration = 600000
        ds.DecayFactor = ds_value(1.0)
        item = Dataset()
        item.Radiopharmaceutical = "Fluorodeoxyglucose"
        item.RadiopharmaceuticalStartTime = facts.injection_time
        item.RadionuclideTotalDose = ds_value(facts.injected_dose_bq)
        item.RadionuclideHalfLife = ds_value(facts.half_life_s)
        item.RadionuclidePositronFraction = ds_value(0.9673)
        code = Dataset()
        code.CodeValue = "C-111A1"
        code.CodingSchemeDesignator = "SRT"
        code.CodeMeaning = "^18^Fluorine"
        item.RadionuclideCodeSequence = Sequence([code])
        ds.RadiopharmaceuticalInformationSequence = Sequence([item])

    return add


def write_nm(
    path: Path,
    counts: np.ndarray,
    affine: np.ndarray,
    ctx: DicomContext,
    *,
    series_number: int,
    description: str,
    frame_uid: str,
) -> Path:
    """An NM Image Storage RECON TOMO file: all slices as frames of one uint16 object, the
    geometry in the Detector Information Sequence (not at the top level, as gamma-camera
    systems write it)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.tag import Tag

    counts, affine = dicom_order(counts, affine)
    geo = PlaneGeometry.of(affine)
    n = counts.shape[2]
    ds = _base(ctx, "NM", make_uid(ctx.key, "NM", series_number, "series"),
               make_uid(ctx.key, "NM", series_number, "instance"), series_number, description,
               frame_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = n
    ds.FrameIncrementPointer = Tag(SLICE_VECTOR_TAG)
    ds.SliceVector = list(range(1, n + 1))
    ds.NumberOfSlices = n
    ds.PixelSpacing = [ds_value(v) for v in geo.pixel_spacing]
    ds.SliceThickness = ds_value(geo.slice_spacing)
    ds.SpacingBetweenSlices = ds_value(geo.slice_spacing)
    detector = Dataset()
    detector.ImagePositionPatient = [ds_value(v) for v in geo.position(0)]
    detector.ImageOrientationPatient = [ds_value(v) for v in geo.orientation]
    ds.NumberOfDetectors = 1
    ds.DetectorInformationSequence = Sequence([detector])
    window = Dataset()
    window_range = Dataset()
    window_range.EnergyWindowLowerLimit = ds_value(126.0)
    window_range.EnergyWindowUpperLimit = ds_value(154.0)
    window.EnergyWindowRangeSequence = Sequence([window_range])
    window.EnergyWindowName = "Tc99m"
    ds.NumberOfEnergyWindows = 1
    ds.EnergyWindowInformationSequence = Sequence([window])
    drug = Dataset()
    drug.Radiopharmaceutical = "Tc-99m exametazime (HMPAO)"
    drug.RadionuclideTotalDose = ds_value(740e6)
    drug.RadionuclideHalfLife = ds_value(21624.12)
    ds.RadiopharmaceuticalInformationSequence = Sequence([drug])
    ds.NumberOfRotations = 1
    frames = np.stack([counts[:, :, k].T for k in range(n)])
    _pixels(ds, frames.astype(np.uint16))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


__all__ = [
    "SLICE_VECTOR_TAG",
    "SOP_CLASSES",
    "DicomContext",
    "PlaneGeometry",
    "dicom_order",
    "ds_round",
    "ds_value",
    "make_uid",
    "pet_attributes",
    "quantise_per_slice",
    "write_nm",
    "write_series",
]
