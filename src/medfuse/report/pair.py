"""One batch pair's QC page, written in the process that fused the pair (where its slices
are in memory), and the page's file name.

A module of its own so that the batch's per-pair task (:mod:`medfuse.batch.task`) can write
the page without importing :mod:`medfuse.report.build`, which runs the batch: the batch and
the report then depend on each other in one direction only.
"""

from __future__ import annotations

import re
from hashlib import sha1
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medfuse.errors import OutputError

if TYPE_CHECKING:
    from medfuse.fusion import FuseReport


def page_name(name: str) -> str:
    """A file name for a pair's page: its name made safe, with a short hash so two names
    that read alike stay apart."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "pair"
    return f"{safe}-{sha1(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def os_error(folder: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write the report {folder}: {exc.strerror or exc}")


def write_pair_page(report: FuseReport, collector: Any, pages: Path, name: str) -> None:
    """A batch pair's page and thumbnail into the staged ``pairs`` folder (called in the
    process that fused the pair, where its slices are in memory)."""
    from medfuse.report.page import write_pair_page as write

    try:
        write(report, collector, pages, page_name(name), name)
    except OSError as exc:
        raise os_error(pages.parent, exc) from exc


__all__ = ["os_error", "page_name", "write_pair_page"]
