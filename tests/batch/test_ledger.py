"""The batch ledger: rows round-trip, appends are whole and durable, parts merge on read."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from medfuse.batch.ledger import (
    FIELDS,
    LEDGER_NAME,
    Ledger,
    LedgerRow,
    latest,
    ledger_path,
    read_ledger,
    read_rows,
)


def _row(name: str, status: str = "fused", finished: str = "2025-01-01T00:00:00.000+00:00",
         error: str = "", part: str = "") -> LedgerRow:
    return LedgerRow(name, f"MRI/{name}.png", f"PET/{name}.png", status, error, f"{name}.png",
                     f"{name}.json", "2025-01-01T00:00:00.000+00:00", finished, part)


def test_paths_per_part(tmp_path: Path) -> None:
    assert ledger_path(tmp_path) == tmp_path / LEDGER_NAME
    assert ledger_path(tmp_path, (0, 1)) == tmp_path / LEDGER_NAME
    assert ledger_path(tmp_path, (2, 5)).name == "medfuse-ledger.part-2-of-5.csv"


def test_round_trip_with_awkward_text(tmp_path: Path) -> None:
    """Commas, quotes and newlines in errors or paths survive; an error is one line."""
    ledger = Ledger(tmp_path / "out" / LEDGER_NAME)  # the folder is created
    a = _row("a,b \"quoted\"", "failed", error="line one\nline two, with comma")
    ledger.append(a)
    ledger.append(_row("c"))
    text = (tmp_path / "out" / LEDGER_NAME).read_text()
    assert text.splitlines()[0] == ",".join(FIELDS)
    assert len(text.splitlines()) == 3  # header + one line per row
    rows = read_rows(tmp_path / "out" / LEDGER_NAME)
    assert rows[0].name == a.name and rows[0].error == "line one line two, with comma"
    assert rows[1] == _row("c")


def test_torn_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_NAME
    Ledger(path).append(_row("a"))
    with open(path, "a") as fh:
        fh.write("b,MRI/b.png,PET/b.png,fus")  # a write cut short by a crash
    assert [r.name for r in read_rows(path)] == ["a"]
    other = tmp_path / "medfuse-ledger.part-0-of-2.csv"
    other.write_text("something,else\n1,2\n")
    assert [r.name for r in read_ledger(tmp_path)] == ["a"]
    assert read_rows(tmp_path / "missing.csv") == []


def test_parts_merge_and_the_latest_attempt_wins(tmp_path: Path) -> None:
    Ledger(ledger_path(tmp_path, (0, 2))).append(
        _row("a", "failed", "2025-01-01T00:00:02.000+00:00", part="0/2"))
    Ledger(ledger_path(tmp_path, (1, 2))).append(
        _row("b", "fused", "2025-01-01T00:00:01.000+00:00", part="1/2"))
    Ledger(ledger_path(tmp_path)).append(_row("a", "fused", "2025-01-01T00:00:03.000+00:00"))
    rows = read_ledger(tmp_path)
    assert [r.name for r in rows] == ["b", "a", "a"]  # by finishing time
    last = latest(rows)
    assert last[("a", "a.png")].status == "fused" and last[("b", "b.png")].part == "1/2"


def _append_many(path: str, tag: str, n: int) -> None:
    ledger = Ledger(Path(path))
    for i in range(n):
        ledger.append(_row(f"{tag}{i}", error="x" * 500))


def test_concurrent_appends_stay_whole(tmp_path: Path) -> None:
    """Two processes appending to one file: every row whole, one header."""
    path = tmp_path / LEDGER_NAME
    ctx = multiprocessing.get_context("fork")  # no torch in these children
    procs = [ctx.Process(target=_append_many, args=(str(path), tag, 40)) for tag in "xy"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    rows = read_rows(path)
    assert len(rows) == 80 and {r.name for r in rows} == {f"{t}{i}" for t in "xy" for i in range(40)}
    assert path.read_text().count("name,mri,other") == 1


@pytest.mark.parametrize("value", ["=1+1", "+x", "-y", "@z", "\tt", "'q", "plain", "", "a=b"])
def test_cells_are_formula_safe_and_read_back_exactly(value: str) -> None:
    from medfuse.batch.ledger import cell, uncell

    stored = cell(value)
    assert not stored.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert uncell(stored) == value


def test_line_breaks_in_values_never_split_a_row(tmp_path: Path) -> None:
    from medfuse.batch.ledger import Ledger, LedgerRow, read_rows

    row = LedgerRow("a\nb", "m\r\no", "o", "failed", "x\ny", "a.png", "", "t0", "t1", "")
    Ledger(tmp_path / "l.csv").append(row)
    assert (tmp_path / "l.csv").read_bytes().count(b"\n") == 2
    [back] = read_rows(tmp_path / "l.csv")
    assert back.name == "a b" and back.mri == "m o" and back.error == "x y"
