"""Atomic output: write to a temporary file beside the target, then rename.

A crash, a full disk or a bad input half-way through never leaves a truncated file under
the name the user asked for, and an existing output is replaced only with ``force``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from medfuse.errors import OutputError, UsageError


def check_output(path: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse to overwrite an input (ever) or an existing output (without ``force``)."""
    for src in inputs:
        try:
            if path.exists() and src.exists() and path.samefile(src):
                raise UsageError(f"refusing to overwrite input {src}")
        except OSError:
            continue
        if path.resolve() == src.resolve():
            raise UsageError(f"refusing to overwrite input {src}")
    if path.exists() and not force:
        raise UsageError(f"{path} exists (use --force to overwrite)")
    if path.exists() and path.is_dir():
        raise UsageError(f"{path} is a folder, not a file")


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str], force: bool = False, inputs: tuple[Path, ...] = ()
) -> Iterator[Path]:
    """Yield a temporary path in the target folder; on success rename it onto ``path``."""
    target = Path(path)
    check_output(target, force, inputs)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}") from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.is_file():
            # mkstemp creates 0600; give the result the permissions a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        for leftover in (tmp, Path(str(tmp) + target.suffix)):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def make_staging_dir(parent: Path, prefix: str) -> Path:
    """A temporary folder in ``parent`` (created if needed) where multi-file outputs are
    staged before they are renamed into place."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=".part", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror or exc}") from exc


_W = TypeVar("_W", bound="CommitOnExit")


class CommitOnExit:
    """Context protocol of staged writers: ``commit()`` when the block succeeds,
    ``abort()`` (remove what was staged) when it raises."""

    def commit(self) -> Any:
        raise NotImplementedError

    def abort(self) -> None:
        """Remove whatever was staged; the requested outputs are untouched."""

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
