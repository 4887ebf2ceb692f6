"""Batch test data and checks: a mixed cohort (images, NIfTI, DICOM), what a batch wrote,
and digests that compare two batch runs byte for byte (no tests here)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

#: Files a batch writes beside the outputs: ledgers and provenance records.
BOOKKEEPING = ("medfuse-ledger",)


def is_bookkeeping(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.startswith(BOOKKEEPING) or name.endswith(".json")


def outputs_in(folder: Path) -> list[str]:
    """Every file below ``folder`` except ledgers and provenance records, as sorted
    relative POSIX paths."""
    files = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(f for f in files if not is_bookkeeping(f))


def _gzip_without_staging_name(data: bytes) -> bytes:
    """A gzip stream with the header's FNAME field dropped when it is a staging name
    (``.medfuse-...part``): io/nifti.py passes the temporary file to GzipFile, whose
    header then records that random name. Everything else (the compressed bytes, CRC,
    length) is compared as written."""
    if len(data) < 10 or data[:2] != b"\x1f\x8b" or not data[3] & 0x08:
        return data
    pos = 10
    if data[3] & 0x04:  # FEXTRA
        pos += 2 + int.from_bytes(data[pos:pos + 2], "little")
    end = data.index(b"\x00", pos)
    if not data[pos:end].startswith(b".medfuse-"):
        return data
    return data[:3] + bytes([data[3] & ~0x08]) + data[4:pos] + data[end + 1:]


def digest_tree(folder: Path) -> dict[str, str]:
    """SHA-256 of every output below ``folder`` (ledgers and records left out: they hold
    times)."""
    out = {}
    for rel in outputs_in(folder):
        data = (folder / rel).read_bytes()
        if rel.endswith(".gz"):
            data = _gzip_without_staging_name(data)
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def mixed_cohort(root: Path, n: int = 24, size: int = 32) -> Path:
    """``root/MRI`` + ``root/PET`` with ``n`` pairs, a third each of PNG images, NIfTI
    volumes (MRI and PET on different grids) and DICOM MRI series with NIfTI PET."""
    from helpers.synth import (
        MR_AFFINE,
        PET_AFFINE,
        head,
        pet_values,
        write_mr_series,
        write_nifti,
    )
    from medfuse.io.images import write_image
    from medfuse.phantom import brain_phantom

    (root / "MRI").mkdir(parents=True, exist_ok=True)
    (root / "PET").mkdir(parents=True, exist_ok=True)
    shape = (size, size, 4)
    for i in range(n):
        kind = i % 3
        name = f"s{i:02d}"
        if kind == 0:
            mri, pet = brain_phantom(size, seed=i)
            write_image(root / "MRI" / f"{name}.png", mri)
            write_image(root / "PET" / f"{name}.png", pet)
            continue
        rng = np.random.default_rng(i)
        vals = (head(shape, MR_AFFINE) * 900 + rng.integers(0, 100, shape)).astype(np.int16)
        if kind == 1:
            write_nifti(root / "MRI" / f"{name}.nii.gz", vals, MR_AFFINE)
        else:
            write_mr_series(root / "MRI" / name, vals, shuffle=False)
        write_nifti(root / "PET" / f"{name}.nii.gz", pet_values() * (1 + i / n), PET_AFFINE)
    return root


class ExitOnBlank:
    """A stand-in engine whose process dies (``os._exit``, as the OOM killer would end it)
    when handed an all-black MRI; otherwise it fuses like MeanEngine."""

    def __init__(self) -> None:
        from helpers.engines import MeanEngine

        self.inner = MeanEngine()
        self.batch_size = self.inner.batch_size

    def fuse_luminance(self, mri: np.ndarray, other: np.ndarray, with_masks: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        import os

        if not np.asarray(mri).any():
            os._exit(3)
        return self.inner.fuse_luminance(mri, other, with_masks)
