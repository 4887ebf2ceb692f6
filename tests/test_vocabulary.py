"""medfuse.vocabulary: the one table of modality names, DICOM codes, folders and tasks."""

from __future__ import annotations

import pytest

from medfuse.errors import UsageError
from medfuse.vocabulary import (
    DEFAULT_COLORMAP,
    FUNCTIONAL,
    MODALITIES,
    MRI_FOLDER,
    OTHER_FOLDERS,
    OTHER_MODALITIES,
    TABLE,
    TASKS,
    modality_from_dicom,
    modality_of_folder,
    parse_modality,
)


def test_names() -> None:
    assert MODALITIES == ("mri", "ct", "pet", "spect")
    assert OTHER_MODALITIES == ("ct", "pet", "spect") and FUNCTIONAL == ("pet", "spect")
    assert all(TABLE[m].name == m for m in MODALITIES)


@pytest.mark.parametrize(
    "text,expected",
    [("ct", "ct"), ("CT", "ct"), (" pet ", "pet"), ("PT", "pet"), ("pt", "pet"),
     ("spect", "spect"), ("NM", "spect"), ("Spect", "spect")],
)
def test_parse_modality(text: str, expected: str) -> None:
    assert parse_modality(text) == expected


def test_parse_modality_refusals() -> None:
    for bad in ("xray", "", "mri", "MR", "ct,pet"):
        with pytest.raises(UsageError, match="expected one of ct, pet, spect"):
            parse_modality(bad)
    with pytest.raises(UsageError, match=r"^--other-modality 'us'"):
        parse_modality("us", "--other-modality")
    assert parse_modality("MR", allowed=MODALITIES) == "mri"  # the MRI where callers allow it


@pytest.mark.parametrize(
    "code,expected",
    [("MR", "mri"), ("CT", "ct"), ("PT", "pet"), ("NM", "spect"), ("ST", "spect"),
     ("mr", "mri"), (" PT ", "pet"), ("US", None), ("", None), (None, None), ("OT", None)],
)
def test_modality_from_dicom(code: str | None, expected: str | None) -> None:
    assert modality_from_dicom(code) == expected


def test_folders() -> None:
    assert MRI_FOLDER == "MRI" and OTHER_FOLDERS == ("CT", "PET", "SPECT")
    assert modality_of_folder("pet") == "pet" and modality_of_folder(" Spect ") == "spect"
    assert modality_of_folder("MRI") == "mri" and modality_of_folder("PT") is None


def test_tasks() -> None:
    assert TASKS == {"MRI_CT": "ct", "MRI_PET": "pet", "MRI_SPECT": "spect"}
    for task, modality in TASKS.items():
        assert task == f"{MRI_FOLDER}_{TABLE[modality].folder}"
        assert modality in OTHER_MODALITIES


def test_default_colormaps() -> None:
    assert DEFAULT_COLORMAP == {"pet": "rainbow", "spect": "sunset"}
    assert set(DEFAULT_COLORMAP) == set(FUNCTIONAL)
