"""The provenance record: a JSON file beside every output of ``fuse_files``.

A fused image alone does not say what it was made from or how: which series, which window,
whether the PET was in SUV, where colour was left out, whether the pair was registered and
how well it fits. The record says all of it, so a result can be checked, compared with
another patient's or reproduced, and a batch ledger can point at it.

**Where**: :func:`record_path` appends ``.json`` to the output's full name
(``fused.nii.gz`` -> ``fused.nii.gz.json``, ``out.png`` -> ``out.png.json`` also when
``out.png`` is the pattern of per-slice PNGs, a DICOM folder ``fused_dcm/`` ->
``fused_dcm.json``). Why the full name: two outputs that differ only in their extension
(``a.png`` and ``a.nii.gz``) must not share, or fight over, one record; appending keeps
the mapping one-to-one. It is staged with the outputs and committed with them as one set
(:class:`medfuse.io.outputs.OutputSet`), under the one output policy: refused up front when
it exists without ``--force``, never an input.

**Trust**: ``outputs.sha256`` holds the sha256 of every file the record describes (keyed by
its path relative to the record's folder; a folder output by the folder rule below), so
``batch --resume`` can tell a finished output from a truncated or planted one
(:func:`verify_outputs`).

**What** (schema ``medfuse.provenance/1``; keys listed in docs/formats.md): the request,
both inputs (path, sha256, modality and its source, DICOM identity), every decision of the
plan with its source (:meth:`medfuse.prepare.plan.FusionPlan.decisions`), the outputs, the
engine (weights path and sha256, device), package versions, warnings and timings per stage.
Input hashes: a file's sha256; a folder's is the sha256 of the bytes of its regular files,
hidden ones (``.name``) left out as the DICOM reader leaves them out, concatenated in sorted
order of their relative POSIX paths.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from medfuse.prepare.plan import FusionPlan

SCHEMA = "medfuse.provenance/1"
#: What is appended to an output's name to name its record.
RECORD_SUFFIX = ".json"
_CHUNK = 1 << 20


def record_path(output: str | os.PathLike[str]) -> Path:
    """The record beside ``output``: the output's full name with ``.json`` appended
    (``a.png`` -> ``a.png.json``, ``a.nii.gz`` -> ``a.nii.gz.json``, a folder ``a/`` ->
    ``a.json``), so every output has its own record. A trailing slash does not matter."""
    path = Path(output)
    return path.with_name(path.name + RECORD_SUFFIX)


def output_hashes(files: list[tuple[Path, Path]], record: Path) -> dict[str, str]:
    """sha256 of each output ``(written, target)``, keyed by the target's path relative to
    the record's folder (POSIX); ``written`` is where the bytes are now (a staged copy)."""
    out: dict[str, str] = {}
    base = Path(os.path.abspath(record.parent))
    for written, target in files:
        key = Path(os.path.relpath(os.path.abspath(target), base)).as_posix()
        out[text_of(key)] = hash_input(written)["sha256"]
    return out


def verify_outputs(record: Path) -> str | None:
    """None when the record at ``record`` parses and every output it lists is there with
    the sha256 it states; else what is wrong, in a few words (what ``batch --resume`` uses
    to redo a pair)."""
    fd = None
    try:
        from medfuse.io.outputs import open_regular

        fd = open_regular(record)
        if fd is None:
            return "no provenance record"
        with os.fdopen(fd, "rb") as fh:
            fd = None
            data = json.loads(fh.read().decode("utf-8"))
        hashes = data["outputs"]["sha256"]
        if not isinstance(hashes, dict) or not hashes:
            return "the provenance record holds no output hashes"
    except (OSError, ValueError, KeyError, TypeError):
        return "the provenance record is unreadable"
    finally:
        if fd is not None:
            os.close(fd)
    for rel, expected in hashes.items():
        target = record.parent / str(rel)
        if not (target.exists() or target.is_symlink()):
            target = record.parent / name_of(str(rel))
        try:
            if not (target.is_file() or target.is_dir()) or target.is_symlink():
                return f"output {rel} is missing"
            if hash_input(target)["sha256"] != expected:
                return f"output {rel} does not match its record"
        except OSError:
            return f"output {rel} is unreadable"
    return None


def name_of(text: str) -> str:
    """The file name :func:`text_of` wrote as ``text`` (``\\xNN`` back to the byte)."""
    import re

    return re.sub(r"\\x([0-9a-fA-F]{2})",
                  lambda m: chr(0xDC00 + int(m.group(1), 16)) if int(m.group(1), 16) >= 0x80
                  else m.group(0), text)


def text_of(value: str) -> str:
    """A string JSON (UTF-8) can hold: a file name that is not UTF-8 (its bytes came in
    as surrogate escapes) is written with those bytes as ``\\xNN`` escapes, so a record
    is written for any name the file system allows."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace")


def _regular_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of every regular, non-hidden file below ``folder``."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            p = Path(root) / name
            try:
                if not stat.S_ISREG(p.stat().st_mode):
                    continue  # a pipe or device: reading it could block
            except OSError:
                continue
            yield p.relative_to(folder).as_posix(), p


def hash_input(path: str | os.PathLike[str]) -> dict[str, Any]:
    """sha256 of a file, or of a folder's files (see the module docstring), with the count
    and total size of what was hashed."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        files = sorted(_regular_files(p))
        size = 0
        for _, f in files:
            with open(f, "rb") as fh:
                while block := fh.read(_CHUNK):
                    h.update(block)
                    size += len(block)
        return {"sha256": h.hexdigest(), "kind": "folder", "files": len(files), "bytes": size,
                "hash_of": "bytes of its regular non-hidden files in sorted relative-path order"}
    size = 0
    with open(p, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
            size += len(block)
    return {"sha256": h.hexdigest(), "kind": "file", "files": 1, "bytes": size}


def versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Versions of medfuse, Python and the packages a result depends on (read from the
    installed metadata, so nothing is imported)."""
    from importlib import metadata

    from medfuse import __version__

    out: dict[str, str | None] = {"medfuse": __version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "pydicom", "nibabel", "scipy", *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _volume_facts(volume: Any, affine: np.ndarray) -> dict[str, Any]:
    from medfuse.io.geometry import voxel_sizes

    return {
        "format": volume.format,
        "shape": list(volume.shape),
        "rgb": bool(volume.is_rgb),
        "voxel_mm": [round(float(v), 6) for v in voxel_sizes(affine)],
        "affine_ras": np.asarray(affine, np.float64).round(6).tolist(),
        "has_geometry": bool(volume.has_geometry),
        "description": volume.description or None,
    }


def describe_inputs(plan: FusionPlan, mri_path: Path, other_path: Path,
                    series: tuple[str, ...] = (), volume_index: int | None = None
                    ) -> dict[str, Any]:
    """Both inputs: path, hash, modality and its source, DICOM identity, grid (the other's
    affine as read, before any registration)."""
    from medfuse.io.dicom.facts import dicom_identity

    other_affine = np.asarray(plan.other.affine, np.float64)
    if plan.registration is not None:
        other_affine = plan.registration.matrix_ras @ other_affine
    out: dict[str, Any] = {}
    for role, path, vol, affine, modality, source in (
        ("mri", mri_path, plan.mri, plan.mri.affine, "mri",
         "first input (DICOM Modality "
         f"{plan.mri.dicom.get('Modality', 'not stated') if plan.mri.dicom is not None else 'not stated'})"),
        ("other", other_path, plan.other, other_affine, plan.modality, plan.modality_source),
    ):
        entry: dict[str, Any] = {"path": str(Path(path).resolve()), **hash_input(path),
                                 "modality": modality, "modality_source": source}
        entry["dicom"] = dicom_identity(vol.dicom) if vol.dicom is not None else None
        entry.update(_volume_facts(vol, affine))
        out[role] = entry
    out["selection"] = {"series": list(series), "volume_index": volume_index}
    return out


def _clean(value: Any) -> Any:
    """JSON-ready: NumPy scalars and arrays to Python, paths to text, NaN/inf to None."""
    if isinstance(value, str):
        return text_of(value)
    if isinstance(value, dict):
        return {text_of(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return text_of(str(value))
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return value


def build_record(
    *,
    plan: FusionPlan,
    request: dict[str, Any],
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    engine: Any,
    warnings: list[str],
    timings: dict[str, float],
) -> dict[str, Any]:
    """The record as a JSON-ready dict (see the module docstring for what it holds)."""
    extra = ("SimpleITK",) if plan.registration is not None else ()
    device = getattr(engine, "device", None)
    return _clean({
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "request": request,
        "inputs": inputs,
        "decisions": plan.decisions(),
        "summary": plan.describe(),
        "outputs": outputs,
        "engine": {
            "weights": getattr(engine, "weights_path", None),
            "weights_sha256": getattr(engine, "weights_sha256", None),
            "device": str(device) if device is not None else None,
            "batch_size": getattr(engine, "batch_size", None),
            "type": type(engine).__name__,
        },
        "versions": versions(extra),
        "warnings": list(warnings),
        "timings_s": {k: round(float(v), 4) for k, v in timings.items()},
    })


def record_text(record: dict[str, Any]) -> str:
    """The record as the JSON text written to disk."""
    return json.dumps(_clean(record), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_record(path: Path, record: dict[str, Any], force: bool,
                 inputs: tuple[Path, ...]) -> Path:
    """Write the record atomically under the output policy (refused if it exists without
    ``force`` or is an input)."""
    from medfuse.io.outputs import atomic_output

    with atomic_output(path, force=force, inputs=inputs) as tmp:
        tmp.write_text(record_text(record), encoding="utf-8")
    return path


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A record read back (for ledgers and tests)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


__all__ = [
    "RECORD_SUFFIX",
    "SCHEMA",
    "build_record",
    "describe_inputs",
    "hash_input",
    "name_of",
    "output_hashes",
    "read_record",
    "record_path",
    "record_text",
    "text_of",
    "verify_outputs",
    "versions",
    "write_record",
]
