"""Checks several test modules share (no tests here)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def no_leftovers(folder: Path) -> bool:
    """No staged ``.part`` file or folder anywhere below ``folder``."""
    return not [p for p in folder.rglob("*") if ".part" in p.name]


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder``, as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dicom3tools' validator prints for a DICOM file (call it only where
    ``dciodvfy`` is installed)."""
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
