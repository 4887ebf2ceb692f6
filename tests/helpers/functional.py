"""Small functional DICOM series (PET with the facts SUV needs) and misaligned copies of
generated studies, for the tests of windows, SUV, checks, registration and provenance.

No tests here. Geometry as in :mod:`helpers.synth` (32x32x8 MRI grid at 2x2x3 mm).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from helpers.synth import MR_AFFINE, MR_SHAPE, head, write_mr_series

#: The PET facts of :func:`write_pt_series`: 70 kg, 370 MBq F-18 injected at 10:00:00, the
#: series at 11:00:00, so the SUV factor is 70000 / (3.7e8 x 2^(-3600 / 6586.2)) ml/Bq.
SUV_FACTOR = 70000.0 / (3.7e8 * 2.0 ** (-3600.0 / 6586.2))
#: Stored value x RESCALE_SLOPE = Bq/ml.
RESCALE_SLOPE = 10.0


def suv_values(gm_suv: float = 7.5) -> np.ndarray:
    """A PET in SUV on the MRI grid: the synthetic head at 0.5 x ``gm_suv`` with the marker
    at ``gm_suv`` x 1.6 (a hot lesion), 0 outside."""
    return head(MR_SHAPE, MR_AFFINE, marker=1.6) * gm_suv


def write_pt_series(folder: Path, suv: np.ndarray | None = None, *, units: str = "BQML",
                    decay: str = "START", patient: str = "Doe^Jane",
                    edit: Any = None) -> Path:
    """A PT series (the MR template with Modality PT) whose voxels are ``suv`` in Bq/ml
    (stored / RESCALE_SLOPE) and whose headers carry weight, dose, half-life and times;
    ``edit(ds)`` may change each dataset (to remove a fact)."""
    import pydicom
    from pydicom.dataset import Dataset

    values = suv_values() if suv is None else suv
    stored = np.round(values / SUV_FACTOR / RESCALE_SLOPE).astype(np.int16)
    write_mr_series(folder, stored, modality="PT", patient=patient, shuffle=False)
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        ds.RescaleSlope, ds.RescaleIntercept = RESCALE_SLOPE, 0
        ds.Units = units
        ds.DecayCorrection = decay
        ds.CorrectedImage = ["ATTN", "DECY"]
        ds.PatientWeight = 70
        ds.SeriesDate, ds.SeriesTime = "20240501", "110000"
        ds.AcquisitionDate, ds.AcquisitionTime = "20240501", "110030"
        info = Dataset()
        info.RadiopharmaceuticalStartTime = "100000"
        info.RadionuclideTotalDose = 3.7e8
        info.RadionuclideHalfLife = 6586.2
        ds.RadiopharmaceuticalInformationSequence = [info]
        del ds.WindowCenter, ds.WindowWidth
        if edit is not None:
            edit(ds)
        ds.save_as(f, enforce_file_format=True)
    return folder
