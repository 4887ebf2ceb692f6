"""Tiny datasets for the evaluation tests: image tasks (PNG pairs) and a volume task
(NIfTI pairs on the synthetic MRI grid of :mod:`helpers.synth`). No tests here."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.synth import MR_AFFINE, write_nifti

SIZE = 40  # large enough for every metric's windows, small enough to be instant
#: Slices of the synthetic MRI volume that hold anatomy; the others are empty (air).
ANATOMY = (2, 3, 4, 5)
VOLUME_SHAPE = (32, 32, 8)  # (columns, rows, slices), as helpers.synth.MR_SHAPE


def blob_image(seed: int, colour: bool = False, size: int = SIZE) -> np.ndarray:
    """Smooth random structure as uint8 (RGB pseudo-colour when ``colour``)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    grey = ndimage.gaussian_filter(rng.random((size, size)), 2.5)
    grey = (grey - grey.min()) / (grey.max() - grey.min())
    if colour:
        rgb = np.stack([grey, grey**2, 1 - grey], axis=-1)
        return (rgb * 255).round().astype(np.uint8)
    return (grey * 255).round().astype(np.uint8)


def save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def image_dataset(root: Path) -> Path:
    """root/MRI_CT/val (3 grey pairs), root/MRI_PET/val (2 colour pairs), plus a train split
    that must be ignored with --split val."""
    for i, name in enumerate(("101", "102", "103")):
        save(root / "MRI_CT" / "val" / "MRI" / f"{name}.png", blob_image(i))
        save(root / "MRI_CT" / "val" / "CT" / f"{name}.png", blob_image(10 + i))
    for i, name in enumerate(("201", "202")):
        save(root / "MRI_PET" / "val" / "MRI" / f"{name}.png", blob_image(20 + i))
        save(root / "MRI_PET" / "val" / "PET" / f"{name}.png", blob_image(30 + i, colour=True))
    save(root / "MRI_CT" / "train" / "MRI" / "999.png", blob_image(40))
    save(root / "MRI_CT" / "train" / "CT" / "999.png", blob_image(41))
    return root


def volume_values(seed: int, scale: float) -> np.ndarray:
    """A (column, row, slice) volume: smooth texture inside a disc on the ANATOMY slices,
    exact zeros (air) elsewhere."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    cols, rows, slices = VOLUME_SHAPE
    yy, xx = np.mgrid[0:cols, 0:rows]
    disc = (yy - cols / 2 + 0.5) ** 2 + (xx - rows / 2 + 0.5) ** 2 <= 13.0**2
    out = np.zeros(VOLUME_SHAPE, np.float32)
    for k in ANATOMY:
        tex = ndimage.gaussian_filter(rng.random((cols, rows)), 1.5)
        tex = (tex - tex.min()) / (tex.max() - tex.min())
        out[:, :, k] = np.where(disc, 0.3 + 0.7 * tex, 0.0) * scale
    return out


def volume_task(root: Path, names: tuple[str, ...] = ("s1",)) -> Path:
    """root/MRI_PET with MRI/<name>.nii.gz and PET/<name>.nii.gz on one grid: grey PET
    activity, pseudo-coloured by the default colour map when planned."""
    for n, name in enumerate(names):
        (root / "MRI").mkdir(parents=True, exist_ok=True)
        (root / "PET").mkdir(parents=True, exist_ok=True)
        write_nifti(root / "MRI" / f"{name}.nii.gz", volume_values(100 + n, 1000.0), MR_AFFINE)
        write_nifti(root / "PET" / f"{name}.nii.gz", volume_values(200 + n, 8.0), MR_AFFINE)
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
