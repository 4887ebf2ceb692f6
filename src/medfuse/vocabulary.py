"""The words medfuse uses for modalities, in one table.

Every module that needs to know what a modality is called, which DICOM code means it, which
folder holds it in a dataset, or which colour map it gets by default reads it here, so the
spelling cannot drift between the reader, the planner and the CLI.

The first input of a pair is always the MRI (``mri``); the second is the *other* image
(``ct``, ``pet`` or ``spect``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medfuse.errors import UsageError

Modality = Literal["mri", "ct", "pet", "spect"]
OtherModality = Literal["ct", "pet", "spect"]


@dataclass(frozen=True)
class ModalityFacts:
    """What medfuse knows about one modality."""

    name: str
    #: DICOM Modality (0008,0060) codes that mean this modality.
    dicom_codes: tuple[str, ...]
    #: Dataset folder name (``MRI/``, ``CT/``, ``PET/``, ``SPECT/``).
    folder: str
    #: Colour map for a grey image of this modality (None: it stays grey).
    colormap: str | None
    #: Human description of the default window (the rule lives in prepare.windowing).
    window: str


TABLE: dict[str, ModalityFacts] = {
    "mri": ModalityFacts("mri", ("MR",), "MRI", None, "p0.5..p99.5 of the voxels"),
    "ct": ModalityFacts("ct", ("CT",), "CT", None, "brain preset (40, 80 HU)"),
    "pet": ModalityFacts("pet", ("PT",), "PET", "rainbow", "SUV 0-12 from DICOM, else 0 to 1.6x the grey-matter level"),
    "spect": ModalityFacts("spect", ("NM", "ST"), "SPECT", "sunset", "0 to 1.25x the grey-matter level"),
}

MODALITIES: tuple[str, ...] = tuple(TABLE)
#: What the second input of a pair may be.
OTHER_MODALITIES: tuple[str, ...] = ("ct", "pet", "spect")
#: Modalities whose grey images are pseudo-coloured before fusion.
FUNCTIONAL: tuple[str, ...] = ("pet", "spect")
#: Dataset folder of the MRI.
MRI_FOLDER = TABLE["mri"].folder
#: Dataset folders of the second input, in the order they are looked for.
OTHER_FOLDERS: tuple[str, ...] = tuple(TABLE[m].folder for m in OTHER_MODALITIES)
#: Task names of the Harvard layout (``MRI_CT`` ...) -> the other modality.
TASKS: dict[str, str] = {f"MRI_{TABLE[m].folder}": m for m in OTHER_MODALITIES}
#: Default colour map per functional modality.
DEFAULT_COLORMAP: dict[str, str] = {m: f.colormap for m, f in TABLE.items() if f.colormap}

_DICOM = {code: name for name, facts in TABLE.items() for code in facts.dicom_codes}
_ALIASES = {"mr": "mri", "pt": "pet", "nm": "spect"}


def modality_from_dicom(code: str | None) -> str | None:
    """DICOM Modality (0008,0060) -> medfuse modality, None when it is none of them."""
    return _DICOM.get((code or "").strip().upper())


def modality_of_folder(name: str) -> str | None:
    """Dataset folder name (any case) -> modality, None when it is not one of ours."""
    key = name.strip().upper()
    return next((m for m, f in TABLE.items() if f.folder == key), None)


def parse_modality(text: str, option: str = "--modality",
                   allowed: tuple[str, ...] = OTHER_MODALITIES) -> str:
    """A modality named by a user (any case; ``mr``/``pt``/``nm`` accepted) -> its name."""
    key = text.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in allowed:
        raise UsageError(f"{option} {text!r}: expected one of {', '.join(allowed)}")
    return key


#: Smallest image side medfuse fuses: below it the network's mask branch (pooling and a 3x3
#: context) has too little image to mean anything. One rule: the planner refuses such an
#: input in words (prepare), the engine guards its own entry with it.
MIN_SIDE = 8


__all__ = [
    "DEFAULT_COLORMAP",
    "FUNCTIONAL",
    "MIN_SIDE",
    "MODALITIES",
    "MRI_FOLDER",
    "OTHER_FOLDERS",
    "OTHER_MODALITIES",
    "TABLE",
    "TASKS",
    "Modality",
    "ModalityFacts",
    "OtherModality",
    "modality_from_dicom",
    "modality_of_folder",
    "parse_modality",
]
