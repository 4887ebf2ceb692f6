"""Run the medfuse CLI in a child process the way the hostile-input suite needs it.

``python -c "<CHILD>" ARGS...`` (see :data:`CHILD` and :func:`command`) sets, before medfuse
is imported, what the test asks for through the environment:

* ``HOSTILE_FSIZE=N``: ``RLIMIT_FSIZE`` of N bytes with SIGXFSZ ignored, so a write past N
  bytes fails with EFBIG (a full disk, simulated);
* ``HOSTILE_ENGINE=mean`` (default): the MeanEngine stand-in, so no weights are needed;
  ``real``: the engine medfuse loads itself (``--weights`` then matters);
* ``HOSTILE_TERM_ON_SAVE=N``: the process sends itself SIGTERM right after the Nth image or
  DICOM file has been written to its staged (temporary) name: a termination mid-write,
  deterministically.

No tests here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

CHILD = "import sys; sys.path.insert(0, sys.argv.pop(1)); from helpers.hostile_run import main; main()"


def _term_after_saves(n: int) -> None:
    import signal

    import pydicom
    from PIL import Image

    count = [0]

    def wrap(original):  # type: ignore[no-untyped-def]
        def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            result = original(self, *args, **kwargs)
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGTERM)
            return result

        return save

    Image.Image.save = wrap(Image.Image.save)  # type: ignore[method-assign]
    pydicom.Dataset.save_as = wrap(pydicom.Dataset.save_as)  # type: ignore[method-assign]


def main() -> None:
    import resource
    import signal

    fsize = os.environ.get("HOSTILE_FSIZE")
    if fsize:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(fsize), int(fsize)))
    term = os.environ.get("HOSTILE_TERM_ON_SAVE")
    if term:
        _term_after_saves(int(term))
    from medfuse.cli import app

    if os.environ.get("HOSTILE_ENGINE", "mean") == "mean":
        from helpers.engines import MeanEngine
        from medfuse.cli.options import injected_engine

        with injected_engine(MeanEngine):
            app(prog_name="medfuse")
    else:
        app(prog_name="medfuse")


def command(*args: str | os.PathLike[str]) -> list[str]:
    """The argv of a child running ``medfuse ARGS``."""
    return [sys.executable, "-c", CHILD, str(TESTS), *map(str, args)]


def run(*args: str | os.PathLike[str], timeout: float = 60, env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``medfuse ARGS`` in a child process and wait (at most ``timeout`` seconds)."""
    full = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout,
                          env=full, cwd=cwd)


def start(*args: str | os.PathLike[str], env: dict[str, str] | None = None,
          cwd: str | os.PathLike[str] | None = None) -> subprocess.Popen[str]:
    """Start ``medfuse ARGS`` in a child process (for tests that signal it)."""
    full = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=full, cwd=cwd)


__all__ = ["CHILD", "TESTS", "command", "main", "run", "start"]
