"""What ``batch --report`` costs: the same cohort fused with and without the QC report.

    PYTHONPATH=src python benchmarks/bench_report.py --json benchmarks/results/report-cpu.json

The cohort is ``--studies`` generated MRI + PET studies (MNI anatomy at 2 mm when nilearn is
installed, as ``medfuse demo --study pet``; NIfTI files) plus one pair whose MRI is not a
NIfTI at all (the failed row of the index). Both runs fuse every pair serially with the
bundled weights on the CPU, in this one process (the engine loaded once per run). Two
measures of the report's cost, as a fraction of the batch's wall time with the report:

* ``instrumented``: seconds spent inside the report's own code (keeping slices as they are
  fused, writing each page and thumbnail, writing the index), timed around those calls;
  the number that does not move with the load on a shared machine;
* ``wall``: the difference between the two runs' wall times (noisy on a busy machine).

It also records the index's size, each page's size and, when a chromium is installed, how
long the index and one page take to open in it (``tests/helpers/browser.py``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the browser driver the tests use

SPENT: dict[str, float] = {"collect": 0.0, "pages": 0.0, "index": 0.0}


def _timed(key: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[key] += time.perf_counter() - t0

    return wrapper


def instrument() -> None:
    """Time the report's three parts where they run (serial batch: this process)."""
    import medfuse.report.index as index
    import medfuse.report.pair as pair
    from medfuse.report.collect import SliceCollector

    SliceCollector.__call__ = _timed("collect", SliceCollector.__call__)  # type: ignore[method-assign]
    pair.write_pair_page = _timed("pages", pair.write_pair_page)  # imported at call time
    index.write_index = _timed("index", index.write_index)  # imported at call time


def make_cohort(root: Path, n: int, resolution: float) -> Path:
    from medfuse.studies import generate_study

    inp = root / "in"
    (inp / "MRI").mkdir(parents=True)
    (inp / "PET").mkdir(parents=True)
    for i in range(n):
        s = generate_study("pet", root / "studies" / f"s{i:02d}", resolution=resolution, seed=i)
        shutil.copy(s.path("mri"), inp / "MRI" / f"study{i:02d}.nii.gz")
        shutil.copy(s.path("other"), inp / "PET" / f"study{i:02d}.nii.gz")
    (inp / "MRI" / "study99.nii.gz").write_bytes(b"this is not a NIfTI file")
    shutil.copy(inp / "PET" / "study00.nii.gz", inp / "PET" / "study99.nii.gz")
    return inp


def run(inp: Path, out: Path, report: Path | None, loader: Any) -> float:
    from medfuse.batch import BatchRequest, fuse_batch
    from medfuse.report import fuse_batch_with_report

    request = BatchRequest(inp, out)
    t0 = time.perf_counter()
    if report is None:
        fuse_batch(request, loader)
    else:
        fuse_batch_with_report(request, report, loader)
    return time.perf_counter() - t0


def open_times(report: Path) -> dict[str, float] | None:
    from helpers.browser import Browser

    exe = Browser.find()
    if exe is None:
        return None
    page = next((report / "pairs").glob("*.html"))
    with Browser(exe) as b:
        b.open(report / "index.html")  # a first, cold start of the renderer
        return {"index_s": round(b.open(report / "index.html"), 3),
                "page_s": round(b.open(page), 3)}


def _rows(report: Path) -> list[dict[str, Any]]:
    import re

    text = (report / "index.html").read_text(encoding="utf-8")
    block = re.search(r'id="data">(.*?)</script>', text, re.S)
    return json.loads(block.group(1).replace("<\\/", "</"))["rows"] if block else []


def big_index(root: Path, rows: int) -> dict[str, Any]:
    """An index of ``rows`` pairs (every 50th failed, every 13th warned), each fused row with
    a page and a thumbnail file, to time opening it; the pairs are not fused."""
    from medfuse.batch import BatchItem, BatchReport
    from medfuse.report.build import page_name
    from medfuse.report.index import write_index
    from medfuse.report.page import png_bytes

    pairs = root / "pairs"
    pairs.mkdir(parents=True)
    thumb = png_bytes(np.zeros((96, 80, 3), np.uint8) + 60)
    items = []
    for i in range(rows):
        failed = i % 50 == 0
        it = BatchItem(f"patient{i:05d}", Path(f"MRI/p{i}"), Path(f"PET/p{i}"),
                       Path(f"out/p{i}.nii.gz"), "failed" if failed else "fused",
                       "MRI/p: not a readable NIfTI file" if failed else "",
                       warnings=["the pair does not look registered"] if i % 13 == 0 else [],
                       started="2026-01-01T00:00:00+00:00", finished="2026-01-01T00:00:06+00:00")
        items.append(it)
        if not failed:
            name = page_name(it.name)
            (pairs / f"{name}.html").write_text("<!doctype html>", encoding="utf-8")
            (pairs / f"{name}.png").write_bytes(thumb)
    index = write_index(BatchReport(items, Path("out")), root, "pairs", page_name)
    out: dict[str, Any] = {"rows": rows, "index_bytes": index.stat().st_size}
    from helpers.browser import Browser

    exe = Browser.find()
    if exe is not None:
        with Browser(exe) as b:
            b.open(index)
            out["open_s"] = round(b.open(index), 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--studies", type=int, default=24)
    ap.add_argument("--resolution", type=float, default=2.0)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--engine", choices=("real", "mean"), default="real",
                    help="real: the bundled weights on the CPU (the cost that counts); mean: "
                    "the tests' averaging stand-in, for the index's size and opening time on "
                    "big cohorts (its fractions say nothing about a real batch)")
    ap.add_argument("--skip-plain", action="store_true",
                    help="run only the batch with the report (the instrumented fraction)")
    ap.add_argument("--index-rows", type=int, default=0,
                    help="instead: time opening an index of this many pairs (none fused)")
    args = ap.parse_args()
    if args.index_rows:
        work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-index-"))
        print(json.dumps(big_index(work, args.index_rows), indent=2))
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-report-"))
    inp = make_cohort(work, args.studies, args.resolution)
    if args.engine == "real":
        from medfuse.engine import load_model

        engine: Any = load_model(None, "cpu")
    else:
        from helpers.engines import MeanEngine

        engine = MeanEngine()
    loader = lambda: engine  # noqa: E731
    instrument()
    plain = float("nan") if args.skip_plain else run(inp, work / "out-plain", None, loader)
    SPENT.update({k: 0.0 for k in SPENT})
    with_report = run(inp, work / "out-report", work / "qc", loader)
    pages = sorted((work / "qc" / "pairs").glob("*.html"))
    spent = sum(SPENT.values())
    result = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "engine": args.engine, "resolution_mm": args.resolution,
        "pairs": args.studies + 1, "failed": 1,
        "batch_s": None if args.skip_plain else round(plain, 2), "batch_with_report_s": round(with_report, 2),
        "report_parts_s": {k: round(v, 3) for k, v in SPENT.items()},
        "fraction_instrumented": round(spent / with_report, 4),
        "fraction_wall": (None if args.skip_plain
                          else round((with_report - plain) / with_report, 4)),
        "index_bytes": (work / "qc" / "index.html").stat().st_size,
        "page_bytes_mean": round(sum(p.stat().st_size for p in pages) / max(1, len(pages))),
        "pages": len(pages),
        "open_in_chromium": open_times(work / "qc"),
        "failed_row": next((r for r in _rows(work / "qc") if r["s"] == "failed"), None),
        "workdir": str(work),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
