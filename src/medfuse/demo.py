"""The built-in demo: a synthetic MRI/PET brain phantom, fused, written as three PNGs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medfuse.engine import Engine

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
