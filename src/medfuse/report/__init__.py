"""The HTML quality-control report: a page per output and an index per cohort.

``medfuse fuse ... --report DIR`` writes ``DIR/index.html``, one self-contained page for the
output (:mod:`medfuse.report.page`); ``medfuse batch ... --report DIR`` writes a page per
fused pair under ``DIR/pairs/`` and ``DIR/index.html``, the cohort table
(:mod:`medfuse.report.index`). The pixels come from the fusion as it runs
(:mod:`medfuse.report.collect`), the words from the provenance record
(:mod:`medfuse.report.words`); :mod:`medfuse.report.build` checks and stages the folder.
"""

from medfuse.report.build import fuse_batch_with_report, fuse_with_report

__all__ = ["fuse_batch_with_report", "fuse_with_report"]
