"""What a DICOM series states beyond pixels and geometry, read as it is: the facts SUV
needs (:class:`~medfuse.io.volume.SuvFacts`), the identity a pair's check compares (patient,
study, series, Frame of Reference) and the source series an output derived from it refers
to (:class:`SourceSeries`). No judgement here: the planner decides what the facts allow.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfuse.io.geometry import SlicePlane
from medfuse.io.volume import SuvFacts


def _text(ds: Any, key: str) -> str | None:
    value = ds.get(key) if ds is not None else None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def _parse_dt(date: str | None, time: str | None) -> _dt.datetime | None:
    """DICOM DA + TM (``YYYYMMDD``, ``HHMMSS.ffffff`` or shorter) -> datetime, None when
    either is missing or unreadable."""
    if not date or not time:
        return None
    try:
        day = _dt.datetime.strptime(date.strip()[:8], "%Y%m%d")
        t = time.strip().replace(":", "")
        whole, _, frac = t.partition(".")
        whole = whole.ljust(6, "0")
        seconds = int(whole[4:6]) + (float(f"0.{frac}") if frac.isdigit() else 0.0)
        return day + _dt.timedelta(hours=int(whole[0:2]), minutes=int(whole[2:4]),
                                   seconds=seconds)
    except (ValueError, IndexError):
        return None


def _parse_datetime(value: str | None) -> _dt.datetime | None:
    """DICOM DT (``YYYYMMDDHHMMSS.ffffff&ZZXX``, the offset ignored) -> datetime."""
    if not value or len(value.strip()) < 8:
        return None
    text = value.strip().split("+")[0].split("-")[0]
    return _parse_dt(text[:8], text[8:] or "000000")


def suv_facts(datasets: Iterable[Any]) -> SuvFacts | None:
    """The SUV-relevant attributes of a PET series (None for any other modality); the
    acquisition time is the earliest over all ``datasets`` (the slices' headers), as the
    QIBA FDG-PET profile asks when the series time is unusable."""
    items = list(datasets)
    if not items:
        return None
    ds = items[0]
    if str(ds.get("Modality", "")).strip().upper() != "PT":
        return None
    info = None
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if seq is not None and len(seq):
        info = seq[0]
    series_date = _text(ds, "SeriesDate")
    injection = _parse_datetime(_text(info, "RadiopharmaceuticalStartDateTime"))
    time_only = False
    if injection is None:
        injection = _parse_dt(series_date or _text(ds, "AcquisitionDate"),
                              _text(info, "RadiopharmaceuticalStartTime"))
        time_only = injection is not None
    acquired = [t for t in (
        _parse_dt(_text(d, "AcquisitionDate") or series_date, _text(d, "AcquisitionTime"))
        for d in items) if t is not None]
    corrected = ds.get("CorrectedImage")
    if corrected is not None and isinstance(corrected, (str, bytes)):
        corrected = [corrected]
    return SuvFacts(
        units=(_text(ds, "Units") or "").upper() or None,
        weight_kg=_positive(ds.get("PatientWeight")),
        dose_bq=_positive(info.get("RadionuclideTotalDose")) if info is not None else None,
        half_life_s=_positive(info.get("RadionuclideHalfLife")) if info is not None else None,
        injection=injection,
        injection_time_only=time_only,
        series_time=_parse_dt(series_date, _text(ds, "SeriesTime")),
        acquisition_time=min(acquired) if acquired else None,
        decay_correction=(_text(ds, "DecayCorrection") or "").upper() or None,
        corrected_image=tuple(str(c).strip().upper() for c in (corrected or ())),
    )


def dicom_identity(ds: Any) -> dict[str, str | None]:
    """Who and where a DICOM input is: Modality code, Patient ID, Frame of Reference, Study
    and Series UIDs (None when absent), for the pair checks and the provenance record."""
    keys = {"modality": "Modality", "patient_id": "PatientID",
            "frame_of_reference": "FrameOfReferenceUID", "study_uid": "StudyInstanceUID",
            "series_uid": "SeriesInstanceUID"}
    return {name: _text(ds, key) for name, key in keys.items()}




@dataclass(frozen=True)
class SourceSeries:
    """What an output derived from a DICOM input says about it: its study and series, its
    instances (with where each lies, for matching an output slice to the one it sits on)
    and the equipment that acquired it."""

    study_uid: str
    series_uid: str
    #: (SOP Class UID, SOP Instance UID) of every instance, in slice order.
    instances: tuple[tuple[str, str], ...]
    #: Each instance's ImagePositionPatient (LPS mm), None where unknown.
    positions: tuple[tuple[float, float, float] | None, ...] = ()
    #: The slices' normal (LPS), None where unknown.
    normal: tuple[float, float, float] | None = None
    #: Manufacturer, ManufacturerModelName, StationName, InstitutionName, SoftwareVersions
    #: as stated (only those present).
    equipment: dict[str, str] = field(default_factory=dict)

    def on_plane(self, plane: SlicePlane | None) -> list[tuple[str, str]]:
        """The instances an output slice on ``plane`` was taken from: the one it lies on
        when the output slices run parallel to these (same grid), else all of them."""
        if plane is None or self.normal is None or len(self.instances) < 2 or any(
                p is None for p in self.positions):
            return list(self.instances)
        normal = np.asarray(self.normal)
        if abs(float(normal @ plane.normal_lps)) < 1 - 1e-4:
            return list(self.instances)
        depth = np.array([np.asarray(p) @ normal for p in self.positions])
        spacing = float(np.median(np.abs(np.diff(depth)))) if len(depth) > 1 else 0.0
        gap = np.abs(depth - float(np.asarray(plane.position_lps) @ normal))
        best = int(np.argmin(gap))
        if spacing > 0 and gap[best] > spacing / 2:
            return list(self.instances)
        return [self.instances[best]]


_EQUIPMENT = ("Manufacturer", "ManufacturerModelName", "StationName", "InstitutionName",
              "SoftwareVersions")


def source_series(ds: Any, instances: list[tuple[Any, np.ndarray | None]],
                  iop: np.ndarray | None) -> SourceSeries | None:
    """The :class:`SourceSeries` of a read series (``instances``: each file's headers and
    position, in slice order); None when the headers lack the UIDs to reference."""
    refs = []
    for item, _ in instances:
        cls, uid = item.get("SOPClassUID"), item.get("SOPInstanceUID")
        if not (cls and uid):
            return None
        refs.append((str(cls), str(uid)))
    study, series = ds.get("StudyInstanceUID"), ds.get("SeriesInstanceUID")
    if not (study and series):
        return None
    positions = tuple(None if p is None else tuple(float(v) for v in p) for _, p in instances)
    normal = None if iop is None else tuple(float(v) for v in np.cross(iop[:3], iop[3:]))
    equipment = {}
    for key in _EQUIPMENT:
        value = ds.get(key)
        if value:
            text = "\\".join(map(str, value)) if not isinstance(value, str) and hasattr(
                value, "__iter__") else str(value)
            equipment[key] = text[:64]
    return SourceSeries(str(study), str(series), tuple(refs), positions, normal, equipment)
