"""The one output policy and the staging every writer goes through.

Promises kept here, for every command and every kind of output:

* an input is never written: not the same file, not a file inside an input folder, not a
  folder that holds an input;
* an existing output is replaced only with ``force``;
* nothing appears under the requested name until it is complete: files are written to a
  hidden temporary beside the target and renamed, folders are staged and renamed; a crash,
  a full disk or a bad input half-way through leaves the old state;
* outputs that belong together (a fused image, its provenance record and its registration
  transform; the five mask files) are staged first and renamed as one set
  (:class:`OutputSet`): a failure while renaming puts back what was there;
* a file medfuse appends to (the batch ledger) is opened without following a link and
  without blocking, and only a regular file is appended to (:func:`append_bytes`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from medfuse.errors import OutputError, UsageError

#: Prefix of every staged file or folder, so a left-over is recognisable.
STAGING_MARK = ".medfuse-"


def safe_resolve(path: Path) -> Path:
    """``path`` resolved where it can be; a symlink loop (RuntimeError before Python 3.13)
    or a name the system refuses gives the absolute path as written, so one bad entry is
    reported where it is used instead of stopping a whole batch here."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
    except OSError:
        pass
    return safe_resolve(a) == safe_resolve(b)


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` lies somewhere below ``folder`` (resolved, links followed)."""
    p, f = safe_resolve(path), safe_resolve(folder)
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
    except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop, no permission
        reason = getattr(exc, "strerror", None) or exc
        raise UsageError(f"cannot use {name} as an output: {reason}") from None


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
            _remove(p)
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
        raise _cannot_write(folder, exc) from exc
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


def _cannot_write(folder: Path, exc: OSError) -> OutputError:
    """The error for a folder that takes no new entry. A folder that exists but answers
    ENOENT (``/proc``, some FUSE mounts) is not said to be missing."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT and folder.is_dir():
        reason = "the folder does not accept new files"
    return OutputError(f"cannot write to {folder}: {reason}")


def make_staging_dir(parent: Path, name: str) -> Path:
    """A hidden temporary folder in ``parent`` (created if needed) where multi-file outputs
    are staged before they are renamed into place."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        path = _new_staged(parent, name, folder=True)
        _chmod_like_open(path)
    except OSError as exc:
        raise _cannot_write(parent, exc) from exc
    return path


def _remove(path: Path) -> None:
    """Remove a file, a link (never what it points at) or a folder tree, quietly."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except OSError:
        pass


def remove_staging(path: Path) -> None:
    """Remove a staged file or folder (after a failure), or a link planted under a staging
    name (the link only); it stays registered for SIGTERM cleanup until it is gone."""
    _remove(path)
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


class OutputSet(CommitOnExit):
    """Outputs that appear together or not at all: each is staged in a hidden folder
    beside its target (:meth:`path_for`, or handed over staged by a writer with
    :meth:`add`), and :meth:`commit` renames them onto their targets in order. Should one
    rename fail (an immutable file, a folder that stopped taking entries), those already
    renamed are removed and what they replaced is put back, so the set is all there or not
    at all; a replaced output is moved aside first (``.medfuse-NAME.old-*``) for that.

    Why renames in a row and not one rename: the outputs lie in different folders (a
    transform may go anywhere), and no file system renames several entries at once. A
    SIGKILL between two renames can still leave a part of the set; ``batch --resume``
    redoes such a pair, since a pair counts as done only when its provenance record is
    there and the outputs match the sha256 values it holds."""

    def __init__(self) -> None:
        self.moves: list[tuple[Path, Path]] = []  # (staged, target), renamed in this order
        self.owned: list[Path] = []  # staging folders removed after commit or abort
        self.committed: list[Path] = []

    def path_for(self, target: str | os.PathLike[str]) -> Path:
        """A staged path for ``target`` (in a new hidden folder beside it, under the
        target's own name, so writers that look at the suffix see the real one)."""
        target = Path(target)
        parent = target.parent if str(target.parent) else Path(".")
        folder = make_staging_dir(parent, target.name)
        self.owned.append(folder)
        staged = folder / target.name
        self.moves.append((staged, target))
        return staged

    def add(self, staged: Path, target: Path, owned: Path | None = None) -> None:
        """Hand over an entry a writer staged itself; ``owned``: a staging folder this set
        removes when it is done."""
        self.moves.append((staged, target))
        if owned is not None and owned not in self.owned:
            self.owned.append(owned)

    def staged(self) -> list[tuple[Path, Path]]:
        """(staged, target) of every entry that was written."""
        return [(s, t) for s, t in self.moves if s.exists() or s.is_symlink()]

    def commit(self) -> list[Path]:
        placed: list[tuple[Path, Path | None]] = []  # (target, what it replaced, moved aside)
        try:
            for staged, target in self.staged():
                parent = target.parent if str(target.parent) else Path(".")
                parent.mkdir(parents=True, exist_ok=True)
                aside = None
                if target.exists() or target.is_symlink():
                    aside = target.with_name(
                        f"{STAGING_MARK}{target.name}.old-{secrets.token_hex(6)}")
                    os.replace(target, aside)
                try:
                    os.replace(staged, target)
                except BaseException:
                    if aside is not None:
                        os.replace(aside, target)
                    raise
                placed.append((target, aside))
        except OSError as exc:
            self._roll_back(placed)
            self.abort()
            name = exc.filename if exc.filename else "an output"
            raise OutputError(f"cannot write {name}: {exc.strerror or exc}; none of the "
                              "outputs that go with it were written") from exc
        except BaseException:
            self._roll_back(placed)
            self.abort()
            raise
        for _, aside in placed:
            if aside is not None:
                _remove(aside)
        self.abort()  # the staging folders, now empty
        self.committed = [t for t, _ in placed]
        return self.committed

    @staticmethod
    def _roll_back(placed: list[tuple[Path, Path | None]]) -> None:
        for target, aside in reversed(placed):
            _remove(target)
            if aside is not None:
                with contextlib.suppress(OSError):
                    os.replace(aside, target)

    def abort(self) -> None:
        for folder in self.owned:
            remove_staging(folder)
        self.owned = []


def _open_append(path: Path) -> int:
    """Open ``path`` for appending, readable for a look at its last byte (created 0666 less the umask if missing) without
    following a link and without blocking on a FIFO, and only if it is a regular file."""
    flags = (os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) or path.is_symlink():
            raise OutputError(f"refusing to append to {path}: it is a symbolic link "
                              "(medfuse appends only to a regular file it can see)") from exc
        if exc.errno == errno.ENXIO:  # a FIFO with no reader, opened non-blocking
            raise OutputError(f"refusing to append to {path}: it is not a regular file "
                              "(a pipe, device or socket)") from exc
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputError(f"refusing to append to {path}: it is not a regular file "
                          "(a pipe, device or socket)")
    return fd


def check_appendable(path: Path) -> None:
    """Refuse (usage error) a file to be appended to that exists and is a link or anything
    but a regular file, before a run that would append to it starts."""
    import stat

    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"cannot use {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"refusing to append to {path}: it is a symbolic link; remove it "
                         "(medfuse appends only to a regular file)")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"refusing to append to {path}: it is not a regular file (a pipe, "
                         "device, socket or folder); remove it")


def append_bytes(path: Path, data: bytes, *, sync: bool = True,
                 before: Callable[[int], bytes] | None = None) -> None:
    """Append ``data`` to the regular file ``path`` in one ``write(2)`` under an exclusive
    ``flock`` and ``fsync`` it: the one way medfuse appends. ``before(fd)``, called under
    the lock, may return bytes to put first (the ledger's header, or the newline a torn
    last line lacks). A link, a FIFO, a device or a socket under that name is refused with
    one line, never followed, opened for blocking or written."""
    fd = _open_append(path)
    try:
        _lock(fd)
        try:
            head = before(fd) if before is not None else b""
            view = memoryview(head + data)
            while view:  # a regular file takes it in one write; a short one is continued
                n = os.write(fd, view)
                view = view[n:]
            if sync:
                os.fsync(fd)
        finally:
            _unlock(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _lock(fd: int) -> None:
    with contextlib.suppress(ImportError, OSError):  # no flock (Windows, some NFS): O_APPEND only
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)


def _unlock(fd: int) -> None:
    with contextlib.suppress(ImportError, OSError):
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def open_regular(path: Path) -> int | None:
    """A read-only descriptor of ``path`` if it is a regular file (no link followed, no
    blocking on a FIFO), else None: how medfuse reads back files it wrote itself."""
    import stat

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


__all__ = [
    "STAGING_MARK",
    "CommitOnExit",
    "OutputSet",
    "StagedFolder",
    "append_bytes",
    "atomic_output",
    "check_appendable",
    "check_output",
    "make_staging_dir",
    "move_into_place",
    "open_regular",
    "remove_staging",
    "safe_resolve",
]
