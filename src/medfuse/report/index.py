"""The cohort index: one table of every pair of a batch, linking to each pair's page.

Built to stay usable for thousands of pairs: the rows are a compact JSON block the page's
script sorts, filters and shows a few hundred at a time; thumbnails are small files loaded
lazily as rows scroll into view; each pair's page (its pixels inside) is a separate file
opened only when asked for. An index of 10 000 pairs is a few MB.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medfuse.report.words import score_of

if TYPE_CHECKING:
    from medfuse.batch import BatchItem, BatchReport


def _template(name: str) -> str:
    return resources.files("medfuse.report").joinpath("templates", name).read_text("utf-8")


def _seconds(item: BatchItem, record: dict[str, Any]) -> float | None:
    total = (record.get("timings_s") or {}).get("total")
    if total is not None:
        return float(total)
    try:
        a = dt.datetime.fromisoformat(item.started)
        b = dt.datetime.fromisoformat(item.finished)
    except (TypeError, ValueError):
        return None
    return (b - a).total_seconds()


def _record(item: BatchItem) -> dict[str, Any]:
    if item.record is None or item.status != "fused":
        return {}
    try:
        return json.loads(Path(item.record).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def index_rows(report: BatchReport, folder: Path, pairs: str,
               page_name: Callable[[str], str]) -> list[dict[str, Any]]:
    """One compact row per pair: name, status, one-line error, warnings, registration
    score, seconds, modality and the links to its page and thumbnail (when written)."""
    rows = []
    for it in report.items:
        record = _record(it)
        name = page_name(it.name)
        page = folder / pairs / f"{name}.html"
        has_page = it.status == "fused" and page.exists()
        seconds = _seconds(it, record)
        rows.append({
            "n": it.name, "s": it.status, "e": it.error, "w": list(it.warnings),
            "r": score_of(record), "t": None if seconds is None else round(seconds, 2),
            "m": ((record.get("decisions") or {}).get("modality") or {}).get("value"),
            "o": "" if it.output is None else str(it.output),
            "p": f"{pairs}/{name}.html" if has_page else "",
            "i": f"{pairs}/{name}.png" if has_page else "",
        })
    return rows


def write_index(report: BatchReport, folder: Path, pairs: str,
                page_name: Callable[[str], str]) -> Path:
    """``folder/index.html``: the cohort table (folder is the staged report folder)."""
    rows = index_rows(report, folder, pairs, page_name)
    counts = {s: sum(1 for r in rows if r["s"] == s) for s in ("fused", "skipped", "failed")}
    data = {"rows": rows, "counts": counts, "out_dir": str(report.out_dir),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    text = (_template("index.html")
            .replace("{{title}}", html.escape(str(report.out_dir)))
            .replace("{{style}}", _template("report.css"))
            .replace("{{script}}", _template("index.js"))
            .replace("{{data}}", payload))
    path = folder / "index.html"
    path.write_text(text, encoding="utf-8")
    return path


__all__ = ["index_rows", "write_index"]
