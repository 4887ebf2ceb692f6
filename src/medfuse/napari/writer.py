"""Save a fused layer as NIfTI (``.nii``/``.nii.gz``) or a DICOM series folder (``.dcm``
names the folder), with a provenance record beside it (its decisions and warnings as the
Fuse widget recorded them), under medfuse's output policy (atomic, never half-written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _volume(data: Any, meta: dict[str, Any]) -> Any:
    from medfuse.io.volume import Volume

    vol = (meta.get("metadata") or {}).get("medfuse_volume")
    if isinstance(vol, Volume):
        return vol
    affine = np.asarray(meta.get("affine", np.eye(4)), np.float64)
    return Volume(data=np.asarray(data), affine=affine)


def write_fused(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """napari's writer: returns the paths written (the output, then its record)."""
    from medfuse.io.outputs import atomic_output
    from medfuse.provenance import record_path, versions

    vol = _volume(data, meta)
    target = Path(path)
    name = target.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        _write_nifti(target, vol)
    else:
        target = target.with_suffix("") if target.suffix.lower() == ".dcm" else target
        _write_dicom(target, vol)
    record = record_path(target)
    content = {"schema": "medfuse.napari/1", "output": str(target),
               **((meta.get("metadata") or {}).get("medfuse_record") or {}),
               "versions": versions()}
    with atomic_output(record) as tmp:
        tmp.write_text(json.dumps(content, indent=2, default=str) + "\n", encoding="utf-8")
    return [str(target), str(record)]


def _write_nifti(target: Path, vol: Any) -> None:
    from medfuse.io.nifti import write_nifti

    rgb = vol.data.ndim == 4
    write_nifti(target, vol.data, vol.affine, slope=None if rgb else vol.slope)


def _write_dicom(target: Path, vol: Any) -> None:
    from medfuse.io.geometry import stack_view
    from medfuse.io.sinks import DicomSink

    rgb = vol.data.ndim == 4
    stack, affine = stack_view(vol.data, vol.affine, "axial")
    sink = DicomSink(target, vol, affine, rgb, False, False, (), False,
                     vol.description or "medfuse fused")
    scale = 255.0 if rgb else 65535.0
    try:
        for k in range(stack.shape[0]):
            sink.add(k, np.asarray(stack[k], np.float32) / scale)
        sink.commit()
    except BaseException:
        sink.abort()
        raise


__all__ = ["write_fused"]
