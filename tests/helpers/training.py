"""Builders for the training tests: a tiny phantom dataset and a checkpoint that would run
code if unpickled (no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def phantom_dataset(root: Path, n_train: int = 4, n_val: int = 2, size: int = 32) -> Path:
    """``root/MRI_PET/{train,val}/{MRI,PET}/<i>.png``: built-in brain phantoms (colour PET),
    different seeds for train and val."""
    from medfuse.io.images import write_image
    from medfuse.phantom import brain_phantom

    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            mri, pet = brain_phantom(size, seed=i + (100 if split == "val" else 0))
            write_image(root / "MRI_PET" / split / "MRI" / f"{i}.png", mri)
            write_image(root / "MRI_PET" / split / "PET" / f"{i}.png", pet)
    return root


class TouchOnLoad:
    """Pickles to a call of ``open(marker, "w")``: unpickling it creates ``marker``, which
    shows whether a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A file shaped like ``last.pt`` (tensors, numbers) with one code-running entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.zeros(2)}, "step": 3, "best": 0.0, "best_step": 0,
                "sampler": TouchOnLoad(marker), "torch_rng": torch.get_rng_state(),
                "extra": np.float64(1.0).item()}, path)
    return path
