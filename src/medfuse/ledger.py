"""The batch ledger: one CSV row per pair attempt, appended atomically, read back merged.

Why a ledger: a cohort run is long, may be split over many machines (``--num-parts``) and
may be killed. Outputs already appear atomically (:mod:`medfuse.io.outputs`), but "is this
pair done?" also needs to know whether the last attempt failed and whether the provenance
record beside the output was written; the ledger says so, and it is the audit trail of a
run (who did what, when, with which error).

Format: ``OUT_DIR/medfuse-ledger.csv`` for an unsharded run and
``OUT_DIR/medfuse-ledger.part-I-of-K.csv`` for part I of K, so shards sharing one output
folder (a cluster's shared filesystem) never write the same file. Readers merge every
``medfuse-ledger*.csv`` in the folder (:func:`read_ledger`). Columns are :data:`FIELDS`;
``output`` and ``record`` are relative to the output folder, so a ledger stays valid when
the folder is mounted elsewhere. Times are UTC ISO 8601.

Durability: each row is one ``write(2)`` on a file opened with ``O_APPEND``, under an
exclusive ``flock`` (the header goes in the same locked section when the file is new),
followed by ``fsync``. A killed process therefore leaves whole rows only, except after a
power loss mid-write; readers skip a torn last line. On network filesystems without
working ``flock``/``O_APPEND`` semantics keep one writer per file, which per-part ledgers
already do.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from medfuse.errors import OutputError

#: Ledger of an unsharded run; parts write ``medfuse-ledger.part-I-of-K.csv``.
LEDGER_NAME = "medfuse-ledger.csv"
#: What every ledger file in an output folder matches.
LEDGER_GLOB = "medfuse-ledger*.csv"
#: Row statuses: fused (output and record written), skipped (already done, or existing
#: output left alone), failed (error says why).
STATUSES = ("fused", "skipped", "failed")


@dataclass(frozen=True)
class LedgerRow:
    """One attempt at one pair."""

    name: str
    mri: str
    other: str
    status: str
    error: str
    output: str  # relative to the output folder ("" when the pair had none)
    record: str  # the provenance record, relative to the output folder ("" when none)
    started: str
    finished: str
    part: str  # "I/K", or "" for an unsharded run

    @property
    def key(self) -> tuple[str, str]:
        """What identifies a pair across runs: its name and its output."""
        return self.name, self.output


FIELDS = tuple(f.name for f in fields(LedgerRow))


def now() -> str:
    """The current time as the ledger writes it (UTC, ISO 8601, milliseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def ledger_path(out_dir: Path, part: tuple[int, int] | None = None) -> Path:
    """Where a run writes its ledger: one file per part, so shards never share a file."""
    if part is None or part[1] == 1:
        return out_dir / LEDGER_NAME
    index, count = part
    return out_dir / f"medfuse-ledger.part-{index}-of-{count}.csv"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def format_row(row: LedgerRow, header: bool = False) -> bytes:
    """The CSV bytes of one row (errors folded to one line, so a row is one line)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(FIELDS)
    values = asdict(row)
    values["error"] = _one_line(values["error"])
    writer.writerow([values[f] for f in FIELDS])
    return buf.getvalue().encode("utf-8")


class Ledger:
    """Appends rows to one ledger file, each durable before :meth:`append` returns."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, row: LedgerRow) -> None:
        """Write one row atomically (one write under ``flock``) and ``fsync`` it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write the ledger {self.path}: {exc.strerror or exc}") from exc
        try:
            _lock(fd)
            try:
                data = format_row(row, header=os.fstat(fd).st_size == 0)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                _unlock(fd)
        except OSError as exc:
            raise OutputError(f"cannot write the ledger {self.path}: {exc.strerror or exc}") from exc
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


def read_rows(path: Path) -> list[LedgerRow]:
    """The whole rows of one ledger file; a torn or malformed line is skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    rows = []
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(header) != FIELDS:
        return []
    for values in reader:
        if len(values) != len(FIELDS) or values[3] not in STATUSES:
            continue
        rows.append(LedgerRow(*values))
    return rows


def ledger_files(out_dir: Path) -> list[Path]:
    """Every ledger file in an output folder (all parts, any part count)."""
    return sorted(p for p in out_dir.glob(LEDGER_GLOB) if p.is_file())


def read_ledger(out_dir: Path) -> list[LedgerRow]:
    """Rows of every ledger in ``out_dir`` merged into one list, ordered by finishing time
    (ties keep file order), so the last row of a pair is its latest attempt."""
    rows = [r for p in ledger_files(out_dir) for r in read_rows(p)]
    return sorted(rows, key=lambda r: r.finished)


def latest(rows: Iterable[LedgerRow]) -> dict[tuple[str, str], LedgerRow]:
    """The latest row of each pair (by :attr:`LedgerRow.key`)."""
    out: dict[tuple[str, str], LedgerRow] = {}
    for r in rows:
        out[r.key] = r
    return out


__all__ = [
    "FIELDS",
    "LEDGER_GLOB",
    "LEDGER_NAME",
    "STATUSES",
    "Ledger",
    "LedgerRow",
    "format_row",
    "latest",
    "ledger_files",
    "ledger_path",
    "now",
    "read_ledger",
    "read_rows",
]
