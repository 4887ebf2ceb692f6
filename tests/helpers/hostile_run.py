"""Run the medfuse CLI in a child process the way the hostile-input suite needs it.

``python -c "<CHILD>" ARGS...`` (see :data:`CHILD` and :func:`command`) sets, before medfuse
is imported, what the test asks for through the environment:

* ``HOSTILE_FSIZE=N``: ``RLIMIT_FSIZE`` of N bytes with SIGXFSZ ignored, so a write past N
  bytes fails with EFBIG (a full disk, simulated);
* ``HOSTILE_ENGINE=mean`` (default): the MeanEngine stand-in, so no weights are needed;
  ``real``: the engine medfuse loads itself (``--weights`` then matters);
* ``HOSTILE_TERM_ON_SAVE=N``: the process sends itself SIGTERM right after the Nth image or
  DICOM file has been written to its staged (temporary) name: a termination mid-write,
  deterministically;
* ``HOSTILE_TERM_ON_DISCARD=N``: SIGTERM right after the Nth staged path leaves the list of
  paths the SIGTERM handler removes (before the path itself is removed);
* ``HOSTILE_TERM_ON_CREATE=N``: SIGTERM right after the Nth staged path is created on
  disk, before the code that created it goes on (a handler that runs at any bytecode, as
  it does when another thread takes the signal, must find every staged path registered);
* ``HOSTILE_TERM_HELD_BACK=N``: right after the Nth staged path is created, the SIGTERM
  handler runs while this thread holds SIGTERM back (as when the signal arrived just before
  it was blocked); the handler must end the process there: if it returns, the child exits
  with code 99 at once;
* ``HOSTILE_MANY=FILE``: run every command of FILE (one JSON argv list a line) in turn in
  this one process (start-up is most of a child's cost), each one's stderr ended by
  ``SEPARATOR`` and its exit code (see :func:`run_many`).

No tests here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

CHILD = "import sys; sys.path.insert(0, sys.argv.pop(1)); from helpers.hostile_run import main; main()"
#: Ends each command's stderr when one child runs several (``HOSTILE_MANY``), with its code.
SEPARATOR = "@@hostile-exit="


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


def _term_after_discards(n: int) -> None:
    """SIGTERM right after the Nth staged path is dropped from the cleanup list: the moment
    between "no longer registered" and "removed" (a race a real SIGTERM can hit)."""
    import signal

    from medfuse.io import outputs

    original = outputs._Cleanup.discard.__func__  # type: ignore[attr-defined]
    count = [0]

    def discard(cls, path):  # type: ignore[no-untyped-def]
        original(cls, path)
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), signal.SIGTERM)

    outputs._Cleanup.discard = classmethod(discard)  # type: ignore[method-assign,assignment]


def _term_on_create(n: int, held_back: bool) -> None:
    """SIGTERM (or, ``held_back``, the handler with SIGTERM blocked) right after the Nth
    staged path is created (see above)."""
    import signal

    from medfuse.io import outputs

    original = outputs._create
    count = [0]

    def create(path, folder):  # type: ignore[no-untyped-def]
        original(path, folder)
        count[0] += 1
        if count[0] != n:
            return
        if not held_back:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler):
            handler(signal.SIGTERM, None)
        os._exit(99)  # the handler returned: the process would go on staging files

    outputs._create = create  # type: ignore[assignment]


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
    term = os.environ.get("HOSTILE_TERM_ON_DISCARD")
    if term:
        _term_after_discards(int(term))
    for key, held_back in (("HOSTILE_TERM_ON_CREATE", False), ("HOSTILE_TERM_HELD_BACK", True)):
        term = os.environ.get(key)
        if term:
            _term_on_create(int(term), held_back)
    from medfuse.cli import app

    many = os.environ.get("HOSTILE_MANY")
    commands = [json.loads(line) for line in open(many)] if many else [None]

    def run_one(argv: list[str] | None) -> None:
        try:
            app(args=argv, prog_name="medfuse")
        except SystemExit as exc:
            if not many:
                raise
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            sys.stdout.flush()
            sys.stderr.write(f"{SEPARATOR}{code}\n")
            sys.stderr.flush()

    if os.environ.get("HOSTILE_ENGINE", "mean") == "mean":
        from helpers.engines import MeanEngine
        from medfuse.cli.options import injected_engine

        with injected_engine(MeanEngine):
            for argv in commands:
                run_one(argv)
    else:
        for argv in commands:
            run_one(argv)


def command(*args: str | os.PathLike[str]) -> list[str]:
    """The argv of a child running ``medfuse ARGS``."""
    return [sys.executable, "-c", CHILD, str(TESTS), *map(str, args)]


def run(*args: str | os.PathLike[str], timeout: float = 60, env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``medfuse ARGS`` in a child process and wait (at most ``timeout`` seconds)."""
    full = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout,
                          env=full, cwd=cwd)


def run_many(commands: list[list[str | os.PathLike[str]]], timeout: float = 120,
             env: dict[str, str] | None = None, workdir: Path | None = None
             ) -> list[tuple[int, str]]:
    """Run several ``medfuse`` commands in one child; returns (exit code, stderr) of each.
    (stdout is shared and not split; the hostile tests look at stderr and the files.)"""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False,
                                     dir=workdir) as fh:
        for argv in commands:
            fh.write(json.dumps([str(a) for a in argv]) + "\n")
    try:
        cp = run(env={**(env or {}), "HOSTILE_MANY": fh.name}, timeout=timeout)
    finally:
        os.unlink(fh.name)
    parts = cp.stderr.split(SEPARATOR)
    results = []
    for n in range(len(commands)):
        if n + 1 < len(parts):
            code_text, _, _ = parts[n + 1].partition("\n")
            text = parts[n]
            if n:
                text = text.split("\n", 1)[1] if "\n" in text else ""
            results.append((int(code_text), text))
        else:
            results.append((cp.returncode, parts[n] if n < len(parts) else ""))
    return results


def start(*args: str | os.PathLike[str], env: dict[str, str] | None = None,
          cwd: str | os.PathLike[str] | None = None) -> subprocess.Popen[str]:
    """Start ``medfuse ARGS`` in a child process (for tests that signal it)."""
    full = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=full, cwd=cwd)


__all__ = ["CHILD", "SEPARATOR", "TESTS", "command", "main", "run", "run_many", "start"]
