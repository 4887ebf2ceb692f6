"""The built-in demos: a synthetic MRI/PET brain phantom fused as three PNGs, and a generated
MRI + PET/SPECT/CT study (files as scanners write them) fused as a user would fuse it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medfuse.engine import Engine
    from medfuse.studies.generate import Study

DEMO_FILES = ("mri.png", "pet.png", "fused.png")


def run_demo(output: Path, engine_loader: Callable[[], Engine], force: bool = False) -> tuple[Path, str]:
    """Write the phantom pair and its fusion into ``output``; returns the fused file and the
    device it ran on."""
    from medfuse.fusion import fuse
    from medfuse.io.images import write_image
    from medfuse.io.outputs import check_output
    from medfuse.phantom import brain_phantom

    files = {n: output / n for n in DEMO_FILES}
    for p in files.values():
        check_output(p, force)
    engine = engine_loader()
    mri_px, pet_px = brain_phantom()
    res = fuse(mri_px, pet_px, engine, modality="pet")
    write_image(files["mri.png"], mri_px, force=force)
    write_image(files["pet.png"], pet_px, force=force)
    write_image(files["fused.png"], res.image, force=force)
    return files["fused.png"], str(engine.device)


#: The SPECT lesion picture is a hot-spot view: its window spans the top LESION_SPAN of the
#: hot lesion's peak, so only what is as active as the lesion is coloured (the floor sits
#: at the window's low end plus its usual share). In the modality's own window a x1.6
#: hyperperfusion blurred by a 4 mm SPECT is barely above the cortex around it, and shows
#: as a slightly paler patch.
LESION_SPAN = 0.13
#: Colour map of the SPECT hot-spot view: red to yellow reads as "hot" on a grey MRI.
LESION_COLORMAP = "hot"


def lesion_window(mri: Path, other: Path, kind: str, index: int, row: float, col: float,
                  radius_mm: float) -> tuple[str | None, str | None]:
    """``--window`` and ``--colormap`` for the lesion picture: the modality's own (None,
    None) except for SPECT, whose hot-spot window spans the top :data:`LESION_SPAN` of the
    other image's peak within the lesion's radius on slice ``index``."""
    if kind != "spect":
        return None, None
    from medfuse.fusion import read_pair_plan
    from medfuse.io.geometry import voxel_sizes

    plan, _ = read_pair_plan(mri, other, modality=kind, axis="axial")
    values = plan.other_values(index, index + 1)[0]
    spacing = voxel_sizes(plan.mri_stack.affine)
    rows, cols = np.indices(values.shape, dtype=np.float64)
    disc = np.hypot((rows - row) * spacing[1], (cols - col) * spacing[2]) <= radius_mm
    peak = float(np.nanmax(np.where(disc, values, np.nan)))
    low = (1.0 - LESION_SPAN) * peak
    return f"{(low + peak) / 2:.6g},{peak - low:.6g}", LESION_COLORMAP


def run_study_demo(output: Path, kind: str, engine_loader: Callable[[], Engine],
                   force: bool = False, resolution: float = 2,
                   anatomy: str = "auto") -> tuple[list[Path], str, Study]:
    """Generate a 2 mm MRI + ``kind`` (pet, spect, ct) study into ``output/study-<kind>``
    and fuse it as a user would (its DICOM files, default windows): the whole volume as
    ``fused-<kind>.nii.gz`` and the slice through the hot lesion as ``fused-<kind>-lesion.png``
    (for SPECT in a hot-spot window, :func:`lesion_window`, so the lesion is plainly seen).

    Why DICOM: that is where the modality facts live (PET SUV, NM geometry, CT windows), so
    the demo shows what medfuse does with scanner files, not with pre-made pictures.
    Returns the fused files, the device and the study (lesion positions, file paths).
    """
    from medfuse.fusion import FuseRequest, fuse_files
    from medfuse.io.geometry import stack_view
    from medfuse.io.outputs import check_output
    from medfuse.studies.generate import generate_study

    volume, picture = output / f"fused-{kind}.nii.gz", output / f"fused-{kind}-lesion.png"
    for p in (volume, picture):
        check_output(p, force)
    study = generate_study(kind, output / f"study-{kind}", resolution=resolution,
                           anatomy=anatomy, formats=("nifti", "dicom"), force=force)
    mri, other = study.path("mri_dicom"), study.path("other_dicom")
    shape = tuple(study.mri_shape)
    stack, axial = stack_view(np.empty(shape, np.uint8), np.asarray(study.mri_affine), "axial")
    lesion = study.lesions[0]
    hot = np.linalg.inv(axial) @ np.append(lesion.centre_mm, 1.0)
    index = min(max(int(round(float(hot[0]))), 0), stack.shape[0] - 1)
    window, colormap = lesion_window(mri, other, kind, index, float(hot[1]), float(hot[2]),
                                     lesion.radius_mm)
    fuse_files(FuseRequest(mri=mri, other=other, output=volume, modality=kind, force=force),
               engine_loader)
    fuse_files(FuseRequest(mri=mri, other=other, output=picture, modality=kind, axis="axial",
                           slice_index=index, window=window, colormap=colormap, force=force),
               engine_loader)
    return [volume, picture], str(engine_loader().device), study
