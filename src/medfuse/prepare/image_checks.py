"""Checks a pair gets from its pixels where no header can speak: ordinary images above all.

DICOM inputs state their modality, patient and frame of reference, and the plan checks
those. A PNG, JPEG, TIFF or BMP states nothing, so mistakes a user makes with them are
caught from the pixels instead:

* the same input twice (one path, or two files with identical pixels) is refused: fusing an
  image with itself gives the image back and a record describing a pair that is not one;
* a likely swapped pair is warned about: a CT shows the skull as a bright ring around the
  head, an MRI does not (:func:`bone_ring_share`), so a first input with that ring, or a
  grey second input taken as CT without it, is named;
* options that change nothing for the given inputs (a window for an image shown as it is,
  ``--series`` without a DICOM input, a floor for a pair without one) are a usage error or a
  one-line warning, never silently ignored.

Whether the two show one head is the registration score's business
(:mod:`medfuse.registration`: containment and, for two grey images, head outlines).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medfuse.errors import UsageError

if TYPE_CHECKING:
    from medfuse.io.volume import Volume
    from medfuse.prepare.windowing import Window

#: A pixel at or above this (of the image's [0, 1] range) is bone-bright: CT shows the skull
#: saturated in any brain window; an MRI's skull is dark.
BONE_LEVEL = 0.8
#: The outer band of the head examined for bone: this share of the head's radius.
RING_WIDTH = 0.12
#: An image whose outer band is this bone-bright or more looks like CT. Measured on the
#: atlas pairs and the bundled samples (docs/checks.md): CT 0.55-0.99, MRI 0.00-0.35.
CT_RING_SHARE = 0.45


class ModalityWarning(UserWarning):
    """A modality was guessed, or an input does not look like what it is taken for;
    ``--modality`` states it."""


class OptionWarning(UserWarning):
    """An option that changes nothing for the given inputs."""


def bone_ring_share(plane: np.ndarray) -> float | None:
    """Share of the outer band of the head (:data:`RING_WIDTH` of its radius) that is
    bone-bright (at or above :data:`BONE_LEVEL`) in a grey (H, W) plane in [0, 1]; None when
    the plane shows no head. High for CT (the skull), low for MRI (scalp and skull are
    dark or grey)."""
    from scipy import ndimage

    from medfuse.registration import outline_mask

    head = outline_mask(plane)
    if head.sum() < 64:
        return None
    depth = ndimage.distance_transform_edt(head)
    band = head & (depth <= RING_WIDTH * np.sqrt(head.sum() / np.pi))
    if not band.any():
        return None
    return float((plane[band] >= BONE_LEVEL).mean())


def _same_path(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return a.resolve() == b.resolve() or a.samefile(b)
    except OSError:
        return False


def check_distinct(mri: Volume, other: Volume) -> None:
    """Refuse one ordinary image given twice: one file, or two files with identical pixels.
    (DICOM and NIfTI inputs are told apart by their headers, which the plan checks; one
    DICOM folder may hold both series.)"""
    if not (mri.format == "image" and other.format == "image"):
        return
    if _same_path(mri.path, other.path):
        raise UsageError(f"{mri.label} is given as both inputs; give the MRI and the "
                         "CT/PET/SPECT image")
    if mri.data.shape == other.data.shape and np.array_equal(mri.data, other.data):
        raise UsageError(f"{mri.label} and {other.label} hold identical pixels: the same "
                         "image twice; give the MRI and the CT/PET/SPECT image")


def swap_warning(mri: Volume, other: Volume, modality: str, modality_source: str
                 ) -> str | None:
    """A warning when two ordinary images look swapped or mislabelled: the first (the MRI)
    shows a CT's bright bone ring, or a grey second image taken for CT shows none. None when
    both look right, or when either input is not an ordinary image (DICOM and NIfTI say
    what they are)."""
    if mri.format != "image" or other.format != "image" or mri.is_rgb:
        return None
    first = bone_ring_share(mri.pixels)
    second = None
    if modality == "ct" and not other.is_rgb and modality_source != "--modality":
        second = bone_ring_share(other.pixels)
    mri_like_ct = first is not None and first >= CT_RING_SHARE
    ct_unlike_ct = second is not None and second < CT_RING_SHARE
    if not (mri_like_ct or ct_unlike_ct):
        return None
    said = []
    if mri_like_ct:
        said.append(f"{mri.label}, given as the MRI, looks like a CT ({first:.0%} of the "
                    "head's edge is bone-bright)")
    if ct_unlike_ct:
        said.append(f"{other.label}, taken as the CT, shows no bright bone ring "
                    f"({second:.0%} of the head's edge), as an MRI would")
    return "; ".join(said) + ": were the inputs swapped? (the MRI comes first)"


def check_windows(mri: Volume, other: Volume, mri_window: Window | None,
                  other_window: Window | None) -> None:
    """Refuse ``--window``/``--mri-window`` for an input shown with its own pixel values
    (an ordinary image, a colour input): the window would be ignored."""
    for vol, window, option in ((other, other_window, "--window"),
                                (mri, mri_window, "--mri-window")):
        if window is None or not (vol.format == "image" or vol.is_rgb):
            continue
        what = "an ordinary image" if vol.format == "image" else "a colour input"
        raise UsageError(f"{option} has no effect on {vol.label}: {what} is shown with its "
                         f"own pixel values; drop {option}")


def check_series(series: tuple[str, ...], mri: Volume, other: Volume) -> None:
    """Refuse ``--series`` when neither input is DICOM: there is no series to pick."""
    if series and mri.format != "dicom" and other.format != "dicom":
        raise UsageError("--series has no effect: neither input is a DICOM file or folder; "
                         "drop --series")


def warn_floor_unused(other: Volume, floor_given: bool, has_floor: bool) -> None:
    """One warning when ``--floor`` was given but the pair has no transparency floor (CT,
    ordinary images, colour inputs: only grey PET/SPECT volumes have one)."""
    if floor_given and not has_floor:
        warnings.warn(f"--floor has no effect on {other.label}: only grey PET/SPECT "
                      "DICOM/NIfTI volumes have a transparency floor", OptionWarning,
                      stacklevel=3)


__all__ = [
    "BONE_LEVEL",
    "CT_RING_SHARE",
    "RING_WIDTH",
    "ModalityWarning",
    "OptionWarning",
    "bone_ring_share",
    "check_distinct",
    "check_series",
    "check_windows",
    "swap_warning",
    "warn_floor_unused",
]
