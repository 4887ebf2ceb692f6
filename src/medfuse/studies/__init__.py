"""Realistic test studies: MRI beside FDG-PET, perfusion SPECT or CT, generated from anatomy.

Why: the Harvard atlas slices GeSeNet was trained and scored on are 8-bit pictures; they say
nothing about what medfuse does with real files (PET in Bq/ml with per-slice scaling, NM
multi-frame SPECT, CT in HU on coarser, flipped or oblique grids). A generated study has
all of that *and* known ground truth (tissue masks, lesion positions, the exact misalignment),
so readers, windows and fusion methods can be checked against numbers instead of by eye.

Modules: ``anatomy`` (the head: MNI152 2009a templates from nilearn, or an analytic phantom
when nilearn is absent), ``generate`` (:func:`generate_study` -> :class:`Study`),
``dicom_out`` (PET, CT, MR series and the NM multi-frame file), ``benchmark`` (scores per
fusion method on the MRI grid).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medfuse.studies.anatomy import Anatomy, load_anatomy
    from medfuse.studies.generate import (
        KINDS,
        Grid,
        Lesion,
        LesionSpec,
        Rigid,
        Study,
        generate_study,
    )

_LAZY = {
    "Anatomy": "anatomy",
    "load_anatomy": "anatomy",
    "KINDS": "generate",
    "Grid": "generate",
    "Lesion": "generate",
    "LesionSpec": "generate",
    "Rigid": "generate",
    "Study": "generate",
    "generate_study": "generate",
}

__all__ = [
    "KINDS",
    "Anatomy",
    "Grid",
    "Lesion",
    "LesionSpec",
    "Rigid",
    "Study",
    "generate_study",
    "load_anatomy",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medfuse.studies' has no attribute {name!r}")
    return getattr(importlib.import_module(f"medfuse.studies.{module}"), name)


def __dir__() -> list[str]:
    return __all__
