"""DICOM: ``read`` (files, multi-frame files, series folders -> Volume), ``facts`` (SUV,
identity and source-series facts of a header) and ``write`` (the Secondary Capture series of
a fused output). The public names of all three are importable from here.
"""

from __future__ import annotations

from medfuse.io.dicom.facts import SourceSeries, dicom_identity, source_series, suv_facts
from medfuse.io.dicom.read import (
    INSTALL_EXTRA,
    SeriesInfo,
    choose_series,
    looks_like_dicom,
    read_dicom,
    scan_folder,
)
from medfuse.io.dicom.write import (
    SC_IMAGE_STORAGE,
    SeriesTemplate,
    build_dataset,
    write_dicom_file,
    write_dicom_series,
)
from medfuse.io.volume import SuvFacts

__all__ = [
    "INSTALL_EXTRA",
    "SC_IMAGE_STORAGE",
    "SeriesInfo",
    "SeriesTemplate",
    "SourceSeries",
    "SuvFacts",
    "build_dataset",
    "choose_series",
    "dicom_identity",
    "looks_like_dicom",
    "read_dicom",
    "scan_folder",
    "source_series",
    "suv_facts",
    "write_dicom_file",
    "write_dicom_series",
]

