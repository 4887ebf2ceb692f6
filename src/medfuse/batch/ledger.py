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
followed by ``fsync`` (:func:`medfuse.io.outputs.append_bytes`, the one way medfuse
appends: a link or a FIFO under the ledger's name is refused, never followed or blocked
on). A killed process therefore leaves whole rows only, except after a power loss
mid-write; then the next append first ends the torn line, so a new row is never glued onto
it, and readers skip any line that is torn, holds a NUL byte, is longer than
:data:`MAX_LINE` or does not parse. On network filesystems without working
``flock``/``O_APPEND`` semantics keep one writer per file, which per-part ledgers already do.

Safety of the text: every row is one line (line breaks inside a value are written as a
space); a value that a spreadsheet would read as a formula (starting ``=``, ``+``, ``-``,
``@``, a tab or a carriage return) is written with a leading ``'``, which readers here take
off again; file names that are not UTF-8 are kept byte for byte (``surrogateescape``).
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

from medfuse.errors import OutputError, one_line
from medfuse.io.outputs import append_bytes, open_regular

#: Ledger of an unsharded run; parts write ``medfuse-ledger.part-I-of-K.csv``.
LEDGER_NAME = "medfuse-ledger.csv"
#: What every ledger file in an output folder matches.
LEDGER_GLOB = "medfuse-ledger*.csv"
#: Row statuses: fused (output and record written), skipped (already done, or existing
#: output left alone), failed (error says why).
STATUSES = ("fused", "skipped", "failed")
#: Longest line a reader accepts (a torn write after a power loss can leave megabytes of
#: NUL bytes or garbage; a real row is a few paths and one error line).
MAX_LINE = 64 * 1024
#: First characters a spreadsheet takes as the start of a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ENCODING = ("utf-8", "surrogateescape")


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


def cell(value: str) -> str:
    """A value as the ledger stores it: on one line, and with a leading ``'`` where a
    spreadsheet would take it for a formula (or where it starts with ``'`` itself, so
    :func:`uncell` is exact)."""
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    if text.startswith(FORMULA_START) or text.startswith("'"):
        return "'" + text
    return text


def uncell(text: str) -> str:
    """The value :func:`cell` stored (line breaks stay spaces)."""
    return text[1:] if text.startswith("'") else text


def format_row(row: LedgerRow, header: bool = False) -> bytes:
    """The CSV bytes of one row: one line, formula-safe (errors folded to one line)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(FIELDS)
    values = asdict(row)
    values["error"] = one_line(values["error"])
    writer.writerow([cell(values[f]) for f in FIELDS])
    return buf.getvalue().encode(*_ENCODING)


#: The header line of every ledger file.
HEADER = (",".join(FIELDS) + "\n").encode("ascii")


class Ledger:
    """Appends rows to one ledger file, each durable before :meth:`append` returns."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def check(self) -> None:
        """Refuse (usage error) a ledger name that is a link, a FIFO or anything but a
        regular file, before a run starts."""
        from medfuse.io.outputs import check_appendable

        check_appendable(self.path)

    def append(self, row: LedgerRow) -> None:
        """Write one row atomically (one write under ``flock``) and ``fsync`` it; the
        header first when the file is new, a newline first when its last line is torn."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write the ledger {self.path}: {exc.strerror or exc}") from exc

        def before(fd: int) -> bytes:
            size = os.fstat(fd).st_size
            if size == 0:
                return HEADER
            return b"" if os.pread(fd, 1, size - 1) == b"\n" else b"\n"

        try:
            append_bytes(self.path, format_row(row), before=before)
        except OutputError as exc:
            raise OutputError(f"the ledger: {exc}") from exc


def _lines(path: Path) -> list[bytes]:
    """The lines of a ledger file read without following a link or blocking on a FIFO
    (anything but a regular file reads as empty)."""
    fd = open_regular(path)
    if fd is None:
        return []
    with contextlib.closing(io.FileIO(fd, "rb")) as fh:
        return fh.read().split(b"\n")


def read_rows(path: Path) -> list[LedgerRow]:
    """The whole rows of one ledger file. A line is skipped when it is torn (no final
    newline, or not the ten fields), holds a NUL byte, is longer than :data:`MAX_LINE`,
    does not parse as CSV or names an unknown status; header lines are skipped wherever
    they are (a file whose first write was torn gets its header again)."""
    lines = _lines(path)
    rows = []
    for raw in lines[:-1]:  # the part after the last newline is torn or empty
        if not raw or len(raw) > MAX_LINE or b"\0" in raw:
            continue
        try:
            values = next(csv.reader([raw.decode(*_ENCODING)]), [])
        except csv.Error:
            continue
        if tuple(values) == FIELDS or len(values) != len(FIELDS):
            continue
        values = [uncell(v) for v in values]
        if values[3] not in STATUSES:
            continue
        rows.append(LedgerRow(*values))
    return rows


def ledger_files(out_dir: Path) -> list[Path]:
    """Every ledger file in an output folder (all parts, any part count); links and
    special files under a ledger name are left out (never followed, never opened)."""
    import stat

    found = []
    for p in out_dir.glob(LEDGER_GLOB):
        try:
            if stat.S_ISREG(p.lstat().st_mode):
                found.append(p)
        except OSError:
            continue
    return sorted(found)


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
    "MAX_LINE",
    "STATUSES",
    "Ledger",
    "LedgerRow",
    "cell",
    "format_row",
    "latest",
    "ledger_files",
    "ledger_path",
    "now",
    "read_ledger",
    "read_rows",
    "uncell",
]
