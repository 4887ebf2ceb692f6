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


def run_study_demo(output: Path, kind: str, engine_loader: Callable[[], Engine],
                   force: bool = False, resolution: float = 2,
                   anatomy: str = "auto") -> tuple[list[Path], str, Study]:
    """Generate a 2 mm MRI + ``kind`` (pet, spect, ct) study into ``output/study-<kind>``
    and fuse it as a user would (its DICOM files, default windows): the whole volume as
    ``fused-<kind>.nii.gz`` and the slice through the hot lesion as ``fused-<kind>-lesion.png``.

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
    hot = np.linalg.inv(axial) @ np.append(study.lesions[0].centre_mm, 1.0)
    index = min(max(int(round(float(hot[0]))), 0), stack.shape[0] - 1)
    fuse_files(FuseRequest(mri=mri, other=other, output=volume, modality=kind, force=force),
               engine_loader)
    fuse_files(FuseRequest(mri=mri, other=other, output=picture, modality=kind, axis="axial",
                           slice_index=index, force=force), engine_loader)
    return [volume, picture], str(engine_loader().device), study
