"""Machinery of the hostile-input suite (tests/hostile): run the CLI in-process exactly as a user sees
it, snapshot inputs, and check every promise medfuse makes about bad input.

The promises (docs/reliability.md): one ``error:`` line on stderr, exit 2 (usage) or 1
(failure), no traceback, no partial or staged output left behind (``.medfuse-*``), inputs
never modified, and ``batch`` writes every good pair and reports each bad one.

What the in-process runner sees is what a terminal would show: besides ``sys.stderr`` it
captures file descriptor 2 (C libraries such as libtiff and OpenCV write there), the
records of logging handlers that write to a console (nibabel's), and Python warnings
under the interpreter's own display rules (pytest otherwise records them silently).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from helpers.engines import MeanEngine
from medfuse.cli import app
from medfuse.cli.options import injected_engine

STAGING = ".medfuse-"
_runner = CliRunner()


# ------------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What one command did: exit code and the two streams as a terminal would show them."""

    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


@contextlib.contextmanager
def _console_handlers_to(stream: Any) -> Iterator[None]:
    """Point logging handlers that write to a console at ``stream`` for the duration."""
    import logging

    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for h in lg.handlers:
            if type(h) is logging.StreamHandler and not isinstance(h, logging.FileHandler):
                swapped.append((h, h.stream))
                h.stream = stream  # not setStream: it flushes the old stream, maybe closed
    try:
        yield
    finally:
        for h, old in swapped:
            h.stream = old


@contextlib.contextmanager
def _fd2_captured() -> Iterator[list[str]]:
    """Capture what is written to file descriptor 2 itself (C libraries)."""
    box: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.append(tmp.read().decode("utf-8", "replace"))


def _show_on_stderr(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, file: Any = None, line: str | None = None) -> None:
    """What the interpreter prints for a warning nobody handles (pytest would record it)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def invoke(*args: Any, env: dict[str, str | None] | None = None,
           engine: Any = MeanEngine) -> Outcome:
    """``medfuse ARGS`` in-process with the MeanEngine injected (``engine=None``: medfuse
    loads weights itself), warnings shown the way a plain interpreter shows them."""
    argv = [str(a) for a in args]
    ctx = injected_engine(engine) if engine is not None else contextlib.nullcontext()
    with warnings.catch_warnings(), _fd2_captured() as fd2, ctx:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                      ResourceWarning):
            warnings.simplefilter("ignore", quiet)
        warnings.showwarning = _show_on_stderr

        class _Late:
            """Forwards to whatever sys.stderr is when written to (the runner's buffer)."""

            def write(self, s: str) -> int:
                return sys.stderr.write(s)

            def flush(self) -> None:
                sys.stderr.flush()

        with _console_handlers_to(_Late()):
            code, stdout, stderr, exc = _run_cli(argv, env)
    stderr += "".join(fd2)
    if exc is not None:
        import traceback

        stderr += "Traceback (escaped the CLI)\n" + "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Outcome(code, stdout, stderr, exc)


_command: list[Any] = []


def _run_cli(argv: list[str], env: dict[str, str | None] | None
             ) -> tuple[int, str, str, BaseException | None]:
    """What typer's CliRunner.invoke does, with the click command built once (typer rebuilds
    it from the annotations on every invoke, which is most of the cost of a refused case)."""
    import typer.main

    if not _command:
        _command.append(typer.main.get_command(app))
    code, exc = 0, None
    with _runner.isolation(env=env) as (out, err, _):
        try:
            _command[0].main(args=argv, prog_name="medfuse")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Exception as e:  # escaped every handler: the test fails on it
            code, exc = 1, e
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            stdout = out.getvalue().decode("utf-8", "replace")
            stderr = err.getvalue().decode("utf-8", "replace")
    return code, stdout, stderr, exc


def from_process(cp: subprocess.CompletedProcess[str]) -> Outcome:
    return Outcome(cp.returncode, cp.stdout, cp.stderr)


# ------------------------------------------------------------------------------- state


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root`` (hidden ones too, links not followed): kind, content hash
    and mode, so that any change to an input shows."""
    out: dict[str, tuple[Any, ...]] = {}
    if not root.exists() and not root.is_symlink():
        return out
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(),
                            stat.S_IMODE(st.st_mode))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode))
    return out


def leftovers(root: Path) -> list[str]:
    """Staged files or folders (``.medfuse-*``) anywhere under ``root``."""
    found = []
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        found += [str(Path(dirpath) / n) for n in dirs + files if n.startswith(STAGING)]
    return found


#: Batch's record of attempts (medfuse.batch.ledger), written even when every pair fails.
LEDGER_PREFIX = "medfuse-ledger"


def written(folder: Path) -> list[Path]:
    """Files written under ``folder``, leaving out batch's ledger of attempts."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith(LEDGER_PREFIX))


def valid_image(path: Path) -> np.ndarray:
    """Decode a written PNG/TIFF/... and check it is a finite image."""
    from medfuse.io.images import read_pixels

    arr, _ = read_pixels(path)
    assert arr.size and np.isfinite(arr).all(), path
    return arr


def valid_output(path: Path) -> None:
    """A written output decodes: image files, NIfTI volumes, DICOM files or folders."""
    name = path.name.lower()
    if path.is_dir():
        files = sorted(path.iterdir())
        assert files, f"{path} is empty"
        for f in files:
            valid_output(f)
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        data = np.asarray(nib.load(str(path)).dataobj)
        if data.dtype.names:
            assert data.size
        else:
            assert data.size and np.isfinite(data).all(), path
    elif name.endswith(".dcm"):
        import pydicom

        ds = pydicom.dcmread(path)
        assert ds.pixel_array.size
    else:
        valid_image(path)


# ------------------------------------------------------------------------------- the box


@dataclass
class Box:
    """A test's sandbox: inputs under ``inp``, outputs under ``out``; the inputs' state is
    recorded by :meth:`snap` and checked after the command."""

    root: Path
    before: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def inp(self) -> Path:
        return self.root / "in"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def put(self, rel: str, data: bytes) -> Path:
        p = self.inp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    def png(self, rel: str, colour: bool = False, size: int = 64, seed: int = 0) -> Path:
        from helpers.hostile_files import image_bytes

        return self.put(rel, image_bytes("png", colour, size, seed))

    def partner(self, image: Path) -> Path:
        """A second ordinary image of the size medfuse reads ``image`` at, with other pixels
        (medfuse refuses one image given twice); ``image`` itself when medfuse cannot read
        it (then its refusal is what the test is about)."""
        from medfuse.errors import MedfuseError
        from medfuse.io.images import read_pixels, write_image

        try:
            pixels, _ = read_pixels(image)
        except MedfuseError:
            return image
        other = self.inp / f"partner-{image.stem}.png"
        write_image(other, 1.0 - pixels[..., 0] if pixels.ndim == 3 else 1.0 - pixels)
        return other

    def snap(self) -> None:
        self.before = tree_state(self.inp)

    # -- checks ---------------------------------------------------------------------------

    def common(self, res: Outcome) -> None:
        text = res.stdout + res.stderr
        assert "Traceback" not in text, str(res)
        assert "\x1b[" not in res.stderr, f"terminal escape codes on stderr\n{res}"
        assert not leftovers(self.root), f"staged files left: {leftovers(self.root)}\n{res}"
        if self.before:
            assert tree_state(self.inp) == self.before, f"inputs changed\n{res}"

    def refused(self, res: Outcome, code: int, match: str | None = None,
                absent: tuple[Path, ...] = ()) -> str:
        """Exit ``code``, exactly one non-empty stderr line starting ``error:``, nothing else
        there; no traceback, no staged leftovers, inputs unchanged, ``absent`` not written.
        Returns the error line."""
        self.common(res)
        assert res.code == code, f"expected exit {code}\n{res}"
        lines = res.err_lines
        assert len(lines) == 1, f"expected one stderr line\n{res}"
        assert lines[0].startswith("error: ") and len(lines[0]) > len("error: ") + 3, str(res)
        # "(run with --debug for the traceback)" marks an exception nobody anticipated
        assert "--debug" not in lines[0], f"an unexpected exception, not a refusal\n{res}"
        if match is not None:
            assert match.lower() in lines[0].lower(), f"{match!r} not in the error\n{res}"
        for p in absent:
            assert not p.exists() and not p.is_symlink(), f"{p} was written\n{res}"
        return lines[0]

    def accepted(self, res: Outcome, outputs: tuple[Path, ...] = ()) -> None:
        """Exit 0, no error line, every output written and decodable."""
        self.common(res)
        assert res.code == 0, str(res)
        stray = [ln for ln in res.err_lines if not ln.startswith("warning: ")]
        assert not stray, f"stderr holds more than warning lines\n{res}"
        for p in outputs:
            assert p.exists(), f"{p} missing\n{res}"
            valid_output(p)

    def batch(self, res: Outcome, good: dict[str, Path], bad: list[str]) -> None:
        """A batch with bad entries: exit 1, one ``failed NAME:`` line per bad entry and a
        summary, every good output written and decodable."""
        self.common(res)
        assert res.code == (1 if bad else 0), str(res)
        failed = [ln for ln in res.err_lines if ln.startswith("failed ")]
        assert len(failed) == len(bad), f"expected {len(bad)} failed lines\n{res}"
        for name in bad:
            assert any(name in ln for ln in failed), f"{name} not reported\n{res}"
        summary = [ln for ln in res.err_lines if ln.startswith("fused ")]
        assert len(summary) == 1 and f"failed {len(bad)}" in summary[0], str(res)
        assert f"fused {len(good)}," in summary[0], str(res)
        assert not any(ln.startswith("error:") for ln in res.err_lines), str(res)
        for p in good.values():
            assert p.exists(), f"good output {p} missing\n{res}"
            valid_output(p)


# ------------------------------------------------------------------------------- guards


def _vm_size() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def memory_guard(extra: int = 1536 << 20) -> Iterator[None]:
    """Cap this process's address space at its present size + ``extra`` while a bomb is
    opened: a reader that believed a lying header would fail to allocate instead of taking
    the machine's memory (and the test checks the refusal came from the header check)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def fifo_guard(fifo: Path, seconds: float = 10.0) -> Iterator[None]:
    """If something blocks opening or reading ``fifo`` for ``seconds``, open its other end
    and close it, so a hanging reader sees end-of-file and the test fails on time instead of
    hanging the suite."""
    done = threading.Event()
    start = time.monotonic()

    def release() -> None:
        if done.wait(seconds):
            return
        while not done.is_set():
            with contextlib.suppress(OSError):
                fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
                os.close(fd)
            done.wait(0.05)

    t = threading.Thread(target=release, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()
    assert time.monotonic() - start < seconds, f"blocked on {fifo}"


__all__ = [
    "Box",
    "Outcome",
    "fifo_guard",
    "from_process",
    "invoke",
    "leftovers",
    "memory_guard",
    "tree_state",
    "valid_image",
    "valid_output",
    "written",
]
