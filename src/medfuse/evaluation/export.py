"""An evaluation as files: the per-image CSV and the JSON document.

Both are written through :func:`medfuse.io.outputs.atomic_output`: nothing appears under
the requested name until it is complete, and an existing file is replaced only with
``force``. JSON has no NaN, so an undefined metric is ``null`` there (``nan`` in the CSV).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from medfuse.evaluation.run import EvalResult
from medfuse.io.outputs import atomic_output
from medfuse.metrics import HIGHER_IS_BETTER


def _num(x: float) -> float | None:
    """JSON has no NaN: undefined metrics are written as null."""
    return x if math.isfinite(x) else None


def csv_rows(result: EvalResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-image table (``nan`` for an undefined metric, empty
    cells for an image that was not scored). ``repr`` keeps every digit, so a value read
    back is the value computed."""
    header = ["task", "image", "method", "profile", *result.metrics, "status", "note"]
    body = []
    for r in result.rows:
        if r.status == "ok":
            cells = ["nan" if not math.isfinite(r.values[m]) else repr(float(r.values[m]))
                     for m in result.metrics]
        else:
            cells = ["" for _ in result.metrics]
        body.append([r.task, r.image, r.method, r.profile, *cells, r.status, r.note])
    return header, body


def write_csv(result: EvalResult, path: Path, force: bool = False) -> Path:
    """Per-image scores, one row per (task, image, method, profile)."""
    header, body = csv_rows(result)
    with atomic_output(path, force=force) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(body)
    return path


def to_json(result: EvalResult) -> dict[str, Any]:
    """Run description, summaries, per-image rows and problems as plain JSON data."""
    from medfuse import __version__

    return {
        "medfuse": __version__,
        "data": str(result.data_dir) if result.data_dir else None,
        "split": result.split,
        "profiles": result.profiles,
        "metrics": result.metrics,
        "higher_is_better": {m: HIGHER_IS_BETTER[m] for m in result.metrics},
        "methods": [{"label": m.label, "kind": m.kind, "path": str(m.path) if m.path else None,
                     "description": result.method_info.get(m.label, "")} for m in result.methods],
        "tasks": [{"name": t.name, "folder": str(t.folder), "modality": t.modality,
                   "pairs": len(t.pairs)} for t in result.tasks],
        "seconds": round(result.seconds, 3),
        "gamut_map": result.gamut_map,
        "summary": [{"task": s.task, "method": s.method, "profile": s.profile,
                     "metric": s.metric, "mean": _num(s.mean), "std": _num(s.std),
                     "n": s.n, "n_nan": s.n_nan} for s in result.summaries()],
        "rows": [{"task": r.task, "image": r.image, "method": r.method, "profile": r.profile,
                  "status": r.status, "note": r.note, "slices": r.slices,
                  "values": {m: _num(v) for m, v in r.values.items()} if r.status == "ok" else None}
                 for r in result.rows],
        "problems": [{"task": p.task, "image": p.image, "method": p.method, "kind": p.kind,
                      "message": p.message} for p in result.problems],
    }


def write_json(result: EvalResult, path: Path, force: bool = False) -> Path:
    """The :func:`to_json` document (strict JSON: NaN as null)."""
    text = json.dumps(to_json(result), indent=2, allow_nan=False) + "\n"
    with atomic_output(path, force=force) as tmp:
        tmp.write_text(text)
    return path


__all__ = ["csv_rows", "to_json", "write_csv", "write_json"]
