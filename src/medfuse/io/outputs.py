"""The one output policy and the staging every writer goes through.

Promises kept here, for every command and every kind of output:

* an input is never written: not the same file, not a file inside an input folder, not a
  folder that holds an input;
* an existing output is replaced only with ``force``;
* nothing appears under the requested name until it is complete: files are written to a
  hidden temporary beside the target and renamed, folders are staged and renamed; a crash,
  a full disk or a bad input half-way through leaves the old state.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from medfuse.errors import OutputError, UsageError

#: Prefix of every staged file or folder, so a left-over is recognisable.
STAGING_MARK = ".medfuse-"


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` lies somewhere below ``folder`` (resolved, links followed)."""
    p, f = path.resolve(), folder.resolve()
    return f in p.parents


def check_output(
    path: str | os.PathLike[str],
    force: bool,
    inputs: Iterable[str | os.PathLike[str]] = (),
    kind: Literal["file", "folder"] = "file",
    label: str = "",
) -> None:
    """Refuse an output that is an input, lies inside an input folder or holds an input,
    exists without ``force``, or is something other than a regular file or folder (a pipe or
    device is never replaced); ``kind`` says whether a file or a folder will be written."""
    target = Path(path)
    name = f"{label} {target}" if label else str(target)
    try:
        _check_output(target, name, force, inputs, kind)
    except OSError as exc:  # a name too long, a symlink loop, no permission to look
        raise UsageError(f"cannot use {name} as an output: {exc.strerror or exc}") from None


def _check_output(target: Path, name: str, force: bool,
                  inputs: Iterable[str | os.PathLike[str]], kind: str) -> None:
    import stat

    for raw in inputs:
        src = Path(raw)
        if _same(target, src):
            raise UsageError(f"refusing to overwrite input {src}")
        if src.is_dir() and _inside(target, src):
            raise UsageError(f"refusing to write {name} inside input folder {src}")
        if kind == "folder" and _inside(src, target):
            raise UsageError(f"refusing to write {name}: it holds input {src}")
    if target.exists() or target.is_symlink():
        mode = target.stat().st_mode if target.exists() else 0
        if target.exists() and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UsageError(f"{name} exists and is not a regular file or folder "
                             "(a pipe, device or socket); medfuse does not replace it")
        if kind == "file" and target.is_dir():
            raise UsageError(f"{name} is a folder, not a file")
        if kind == "folder" and not target.is_dir():
            raise UsageError(f"{name} exists and is not a folder")
        if not force:
            raise UsageError(f"{name} exists (use --force to overwrite)")
    if len(os.fsencode(target.name)) > 255 - 40:  # room for the staging prefix and suffix
        raise UsageError(f"output name {target.name[:40]}... is too long for the file system")


def _chmod_like_open(path: Path) -> None:
    """mkstemp/mkdtemp create 0600/0700; give results the mode a plain open() or mkdir()
    would, so other users of a shared folder can read them."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


class _Cleanup:
    """Staged paths removed if the process is terminated (SIGTERM) mid-write, as they are
    when Python unwinds after SIGINT."""

    paths: set[Path] = set()
    installed = False

    @classmethod
    def add(cls, path: Path) -> None:
        cls.paths.add(path)
        if not cls.installed:
            cls.installed = True
            with contextlib.suppress(ValueError):  # not the main thread: nothing to install
                previous = signal.getsignal(signal.SIGTERM)
                if previous in (signal.SIG_DFL, None):
                    signal.signal(signal.SIGTERM, cls._on_term)

    @classmethod
    def discard(cls, path: Path) -> None:
        cls.paths.discard(path)

    @classmethod
    def _on_term(cls, signum: int, frame: Any) -> None:
        for p in list(cls.paths):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # The handler may run where this thread holds SIGTERM back; re-raised there, the
        # signal would wait, and the process go on staging files until the mask is lifted.
        with contextlib.suppress(AttributeError, ValueError, OSError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.kill(os.getpid(), signal.SIGTERM)


def _create(path: Path, folder: bool) -> None:
    """Create ``path`` exclusively (never opening or following what is there): an empty
    file (0600) or a folder (0700)."""
    if folder:
        os.mkdir(path, 0o700)
    else:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        os.close(os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600))


def _new_staged(parent: Path, name: str, folder: bool = False) -> Path:
    """A new hidden staged file or folder in ``parent``, registered for SIGTERM cleanup
    *before* it is created: whenever the handler runs, every staged path on disk is in its
    list. (Holding SIGTERM back around create-then-register is not enough: a signal sent
    to the process can be taken by another thread, numpy's or torch's, and the handler then
    runs at any bytecode of this one.) A name that exists already is never ours, and is
    dropped from the list untouched."""
    for _ in range(100):
        path = parent / f"{STAGING_MARK}{name}.{secrets.token_hex(8)}.part"
        _Cleanup.add(path)
        try:
            _create(path, folder)
        except FileExistsError:
            _Cleanup.discard(path)
            continue
        except BaseException:
            _Cleanup.discard(path)
            raise
        return path
    raise FileExistsError(errno.EEXIST, "no unused staging name", str(parent))


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str], force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[Path]:
    """Yield a temporary path in the target folder; on success rename it onto ``path``."""
    target = Path(path)
    check_output(target, force, inputs)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = _new_staged(folder, target.name)
    except OSError as exc:
        raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}") from exc
    # some writers add the suffix to the name they are given: registered too
    suffixed = Path(str(tmp) + target.suffix)
    _Cleanup.add(suffixed)
    try:
        yield tmp
        if tmp.is_file():
            _chmod_like_open(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        for leftover in (tmp, suffixed):  # removed first, then dropped from the list
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
            _Cleanup.discard(leftover)


def make_staging_dir(parent: Path, name: str) -> Path:
    """A hidden temporary folder in ``parent`` (created if needed) where multi-file outputs
    are staged before they are renamed into place."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        path = _new_staged(parent, name, folder=True)
        _chmod_like_open(path)
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror or exc}") from exc
    return path


def remove_staging(path: Path) -> None:
    """Remove a staged file or folder (after a failure); it stays registered for SIGTERM
    cleanup until it is gone."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
    _Cleanup.discard(path)


def move_into_place(staged: Path, target: Path) -> Path:
    """Rename a staged file or folder onto ``target``, replacing what is there (the caller
    checked ``force``)."""
    try:
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f"{STAGING_MARK}{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(staged, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staged, target)
    except OSError as exc:
        remove_staging(staged)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    _Cleanup.discard(staged)
    return target


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


class StagedFolder(CommitOnExit):
    """A folder written file by file into a hidden staging folder beside it and renamed into
    place on success, so a failure half-way leaves nothing under the requested name."""

    def __init__(self, folder: str | os.PathLike[str], force: bool = False,
                 inputs: Iterable[str | os.PathLike[str]] = (), label: str = ""):
        self.folder = Path(folder)
        check_output(self.folder, force, tuple(inputs), kind="folder", label=label)
        parent = self.folder.parent if str(self.folder.parent) else Path(".")
        self.tmp = make_staging_dir(parent, self.folder.name)
        self.names: list[str] = []

    def path_for(self, name: str) -> Path:
        self.names.append(name)
        return self.tmp / name

    def commit(self) -> Path:
        return move_into_place(self.tmp, self.folder)

    def abort(self) -> None:
        remove_staging(self.tmp)


__all__ = [
    "STAGING_MARK",
    "CommitOnExit",
    "StagedFolder",
    "atomic_output",
    "check_output",
    "make_staging_dir",
    "move_into_place",
    "remove_staging",
]
