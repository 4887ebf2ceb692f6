"""Open DICOM series folders, NIfTI files and images as napari layers through
:func:`medfuse.read`, placed in world space (RAS mm) by their affine, so an MRI and a PET on
different grids overlay where they belong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from medfuse.io.volume import Volume

LayerData = tuple[Any, dict[str, Any], str]


def units_of(volume: Volume) -> str:
    """The voxels' units as far as the file says (napari shows them in layer metadata)."""
    if volume.format == "image" or volume.is_rgb:
        return "image intensity"
    if volume.modality == "ct":
        return "HU"
    facts = volume.suv
    units = str(getattr(facts, "units", "") or "").upper() if facts is not None else ""
    return {"BQML": "Bq/ml", "CNTS": "counts"}.get(units, units.lower() or "scanner units")


def layer_kwargs(volume: Volume, name: str) -> dict[str, Any]:
    """Name, affine (its scale and translate are the voxel size and origin) and metadata
    (units, the Volume itself for the widgets) of a volume's layer."""
    from medfuse.io.geometry import voxel_sizes

    affine = np.asarray(volume.affine, np.float64)
    return {
        "name": name,
        "affine": affine,
        "rgb": bool(volume.is_rgb),
        "metadata": {
            "medfuse_volume": volume,
            "units": units_of(volume),
            "modality": volume.modality,
            "voxel_mm": [float(v) for v in voxel_sizes(affine)],
            "affine": affine.tolist(),
            "path": None if volume.path is None else str(volume.path),
        },
    }


def volume_layer(volume: Volume, name: str) -> LayerData:
    """A Volume as napari layer data, its voxels in scanner units (slope and intercept
    applied where they are not 1 and 0)."""
    data = volume.data
    if volume.slope != 1.0 or volume.inter != 0.0:
        data = data.astype(np.float32) * np.float32(volume.slope) + np.float32(volume.inter)
    return data, layer_kwargs(volume, name), "image"


def read_layers(path: str | Path) -> list[LayerData]:
    from medfuse.io.read import read

    p = Path(path)
    name = p.name[:-7] if p.name.lower().endswith(".nii.gz") else p.stem if p.is_file() else p.name
    return [volume_layer(read(p), name)]


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader for ``path`` when medfuse can read it (napari tries the next plugin on
    None)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    from medfuse.errors import MedfuseError
    from medfuse.io.read import input_format

    try:
        input_format(Path(path))
    except MedfuseError:
        return None
    return lambda p: read_layers(p[0] if isinstance(p, list) else p)


__all__ = ["layer_kwargs", "napari_get_reader", "read_layers", "units_of", "volume_layer"]
