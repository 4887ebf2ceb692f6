"""DICOM out: an RGB (or 16-bit grey) **Secondary Capture Image** series, one file per slice.

Why this IOD: it is the one every PACS and viewer accepts for derived colour images (MR/CT
image IODs are grey-only, and the enhanced colour IODs demand acquisition details a fused
image does not have), and dciodvfy validates it without errors. Each file also carries the
Image Plane attributes (position, orientation, spacing) and Frame of Reference of the MRI
grid; they are not part of the SC IOD, so dciodvfy *warns* ("standard extended SOP class"),
but they let viewers and medfuse stack the series back in 3D.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.errors import OutputError
from medfuse.io.dicom.facts import SourceSeries
from medfuse.io.geometry import SlicePlane, patient_orientation
from medfuse.io.outputs import StagedFolder

SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
#: Attributes blanked (type 2) or removed (type 3) by ``--anonymize``.
_PATIENT_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
_STUDY_TYPE2 = ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
_COPY_OPTIONAL = ("PatientAge", "PatientSize", "PatientWeight", "StudyDescription",
                  "IssuerOfPatientID", "SpecificCharacterSet")
_IDENTIFYING_OPTIONAL = ("PatientAge", "PatientSize", "PatientWeight", "IssuerOfPatientID",
                         "StudyDescription")
#: What every output says about itself (Image Comments): what it is and what it is not.
RESEARCH_USE = ("DERIVED image: fused by medfuse (GeSeNet) from a registered MRI and a "
                "CT/PET/SPECT. For research use only; not for diagnosis or treatment.")


def _ds_number(value: float) -> Any:
    from pydicom.valuerep import DSfloat

    return DSfloat(float(value), auto_format=True)


@dataclass
class SeriesTemplate:
    """Attributes shared by every file of one output series."""

    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    series_number: int
    description: str
    anonymize: bool
    source: Any = None  # the MRI's DICOM headers, when it was DICOM
    derivation: str = "Fused by medfuse (GeSeNet) from registered MRI and a second modality"
    #: The DICOM series the output is derived from (the MRI's first): referenced in every
    #: file unless anonymising (their UIDs would lead back to the patient).
    sources: tuple[SourceSeries, ...] = ()

    @classmethod
    def create(
        cls, source: Any = None, anonymize: bool = False, description: str = "medfuse fused",
        sources: Iterable[SourceSeries | None] = (),
    ) -> SeriesTemplate:
        from pydicom.uid import generate_uid

        study = None if anonymize or source is None else source.get("StudyInstanceUID")
        frame = None if source is None else source.get("FrameOfReferenceUID")
        number = 1
        if source is not None and not anonymize:
            with contextlib.suppress(TypeError, ValueError):
                number = int(source.get("SeriesNumber", 0) or 0) + 1000
        return cls(
            series_uid=generate_uid(),
            study_uid=str(study) if study else generate_uid(),
            frame_of_reference_uid=str(frame) if frame and not anonymize else generate_uid(),
            series_number=number,
            description=description,
            anonymize=anonymize,
            source=source,
            sources=tuple(x for x in sources if x is not None),
        )


def build_dataset(
    pixels: np.ndarray,
    template: SeriesTemplate,
    instance: int,
    plane: SlicePlane | None,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
) -> Any:
    """One Secondary Capture Image dataset for a 2D slice.

    ``pixels`` is uint8 (H, W, 3) RGB, or uint16/int16 (H, W) grey; ``rescale`` (slope,
    intercept) and ``window`` (centre, width) are written for grey images when given.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    from medfuse import __version__

    rgb = pixels.ndim == 3
    if rgb and (pixels.shape[2] != 3 or pixels.dtype != np.uint8):
        raise ValueError("RGB slices must be uint8 (H, W, 3)")
    if not rgb and pixels.dtype not in (np.uint16, np.int16, np.uint8):
        raise ValueError("grey slices must be uint8, uint16 or int16")
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SC_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    src = template.source
    # SOP common
    if src is not None and not template.anonymize and "SpecificCharacterSet" in src:
        ds.SpecificCharacterSet = src.SpecificCharacterSet
    ds.SOPClassUID = SC_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # Patient and study: copied from the MRI unless anonymising (type 2: present, maybe empty)
    for key in (*_PATIENT_TYPE2, *_STUDY_TYPE2):
        value = "" if (template.anonymize or src is None) else src.get(key, "")
        setattr(ds, key, value if value is not None else "")
    if src is not None:
        for key in _COPY_OPTIONAL:
            if key == "SpecificCharacterSet" or key not in src:
                continue
            if template.anonymize and key in _IDENTIFYING_OPTIONAL:
                continue
            setattr(ds, key, src.get(key))
    if template.anonymize:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "medfuse --anonymize: names, IDs, dates and UIDs replaced"
    ds.StudyInstanceUID = template.study_uid
    # Series and equipment
    ds.Modality = "OT"
    ds.SeriesInstanceUID = template.series_uid
    ds.SeriesNumber = template.series_number
    ds.SeriesDescription = template.description
    ds.SeriesDate, ds.SeriesTime = date, time
    part = src.get("BodyPartExamined") if src is not None else None
    ds.BodyPartExamined = str(part) if part else "HEAD"
    if src is not None and src.get("Laterality"):
        ds.Laterality = src.Laterality
    ds.Manufacturer = "medfuse"
    ds.SoftwareVersions = __version__
    ds.ConversionType = "WSD"  # workstation
    ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = date, time
    # General image
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.InstanceNumber = instance
    ds.ContentDate, ds.ContentTime = date, time
    ds.DerivationDescription = template.derivation
    ds.ImageComments = RESEARCH_USE
    _references(ds, template, plane)
    ds.ContributingEquipmentSequence = _contributing_equipment(template, date + time)
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if plane is not None:
        ds.PatientOrientation = list(patient_orientation(plane))
        ds.FrameOfReferenceUID = template.frame_of_reference_uid
        ds.ImagePositionPatient = [_ds_number(v) for v in plane.position_lps]
        ds.ImageOrientationPatient = [
            _ds_number(v) for v in (*plane.row_cosine_lps, *plane.column_cosine_lps)
        ]
        ds.PixelSpacing = [_ds_number(v) for v in plane.pixel_spacing]
        ds.SliceThickness = _ds_number(plane.slice_spacing)
    else:
        ds.PatientOrientation = ""
    # Image pixel
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    if rgb:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        bits = 8
        ds.PixelRepresentation = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        bits = 8 * pixels.dtype.itemsize
        ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
        if rescale is not None:
            ds.RescaleSlope = _ds_number(rescale[0])
            ds.RescaleIntercept = _ds_number(rescale[1])
            ds.RescaleType = "US"  # unspecified units
        if window is not None:
            ds.WindowCenter = _ds_number(window[0])
            ds.WindowWidth = _ds_number(max(1.0, window[1]))
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def _code(value: str, meaning: str) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _references(ds: Any, template: SeriesTemplate, plane: SlicePlane | None) -> None:
    """Source Image Sequence (the instances this slice was made from: the MRI's slice it
    lies on, every instance of the other image, which was resampled) and the Common
    Instance Reference module (which series and studies those instances belong to).
    Nothing under ``--anonymize``: the source UIDs would lead back to the patient."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    if template.anonymize or not template.sources:
        return
    images = []
    for n, series in enumerate(template.sources):
        for cls, uid in (series.on_plane(plane) if n == 0 else series.instances):
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = cls, uid
            item.PurposeOfReferenceCodeSequence = Sequence(
                [_code("121322", "Source image for image processing operation")])
            images.append(item)
    ds.SourceImageSequence = Sequence(images)

    def series_item(series: SourceSeries) -> Any:
        item = Dataset()
        item.SeriesInstanceUID = series.series_uid
        refs = []
        for cls, uid in series.instances:
            ref = Dataset()
            ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = cls, uid
            refs.append(ref)
        item.ReferencedInstanceSequence = Sequence(refs)
        return item

    here = [series_item(x) for x in template.sources if x.study_uid == template.study_uid]
    if here:
        ds.ReferencedSeriesSequence = Sequence(here)
    elsewhere: dict[str, list[Any]] = {}
    for x in template.sources:
        if x.study_uid != template.study_uid:
            elsewhere.setdefault(x.study_uid, []).append(series_item(x))
    if elsewhere:
        studies = []
        for study_uid, items in elsewhere.items():
            study = Dataset()
            study.StudyInstanceUID = study_uid
            study.ReferencedSeriesSequence = Sequence(items)
            studies.append(study)
        ds.StudiesContainingOtherReferencedInstancesSequence = Sequence(studies)


def _contributing_equipment(template: SeriesTemplate, when: str) -> Any:
    """Contributing Equipment Sequence: the scanners that acquired the sources (as their
    headers state them; without station and institution under ``--anonymize``), medfuse as
    the processing equipment, and medfuse as the de-identifying equipment when it was."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from medfuse import __version__

    items = []
    for series in template.sources:
        item = Dataset()
        item.PurposeOfReferenceCodeSequence = Sequence([_code("109101",
                                                              "Acquisition Equipment")])
        item.Manufacturer = series.equipment.get("Manufacturer", "")
        for key in ("ManufacturerModelName", "SoftwareVersions", "StationName",
                    "InstitutionName"):
            if key in series.equipment and not (
                    template.anonymize and key in ("StationName", "InstitutionName")):
                setattr(item, key, series.equipment[key])
        items.append(item)
    purposes = [("109102", "Processing Equipment",
                 "GeSeNet fusion of a registered MRI with a CT, PET or SPECT")]
    if template.anonymize:
        purposes.append(("109104", "De-identifying Equipment",
                         "names, IDs, dates and UIDs replaced (--anonymize)"))
    for code, meaning, what in purposes:
        item = Dataset()
        item.PurposeOfReferenceCodeSequence = Sequence([_code(code, meaning)])
        item.Manufacturer = "medfuse"
        item.SoftwareVersions = __version__
        item.ContributionDateTime = when
        item.ContributionDescription = what
        items.append(item)
    return Sequence(items)


def write_dicom_file(path: str | Path, ds: Any, force: bool = False,
                     inputs: tuple[Path, ...] = ()) -> Path:
    """Write one dataset atomically (temporary file, then rename)."""
    from medfuse.io.outputs import atomic_output

    p = Path(path)
    with atomic_output(p, force=force, inputs=inputs) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return p


def write_dicom_series(
    folder: str | Path,
    slices: Iterable[tuple[np.ndarray, SlicePlane | None]],
    source: Any = None,
    anonymize: bool = False,
    description: str = "medfuse fused",
    force: bool = False,
    inputs: tuple[Path, ...] = (),
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
) -> Path:
    """Write 2D slices (with their planes) as one Secondary Capture series folder."""
    template = SeriesTemplate.create(source, anonymize, description)
    try:
        with StagedFolder(folder, force, inputs, label="DICOM series") as writer:
            for n, (pixels, plane) in enumerate(slices, start=1):
                ds = build_dataset(pixels, template, n, plane, rescale, window)
                ds.save_as(writer.path_for(f"IM{n:05d}.dcm"), enforce_file_format=True)
    except OSError as exc:
        raise OutputError(f"cannot write {folder}: {exc.strerror or exc}") from exc
    return Path(folder)
