"""From per-image rows to the numbers a table shows: mean, spread, and the best method.

NaN values (an undefined metric, e.g. SCD of a constant image) are left out of a mean and
counted, so one flat slice does not wipe out a method's score while the tables still say
that it happened. Rows that were not scored (missing or failed) are not counted at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medfuse.metrics import HIGHER_IS_BETTER, METRIC_NAMES

if TYPE_CHECKING:
    from medfuse.evaluation.run import ImageScore


@dataclass
class Summary:
    """Mean and spread of one metric for one method on one task, in one profile."""

    task: str
    method: str
    profile: str
    metric: str
    mean: float
    std: float
    n: int  # finite values the mean is over
    n_nan: int  # scored images where the metric was undefined


def summarise(rows: Iterable[ImageScore], metrics: Sequence[str] | None = None) -> list[Summary]:
    """Mean and sample standard deviation (ddof = 1; 0 for one image) over the images
    where a metric is defined, per task, method and profile."""
    metric_list = list(metrics or METRIC_NAMES)
    groups: dict[tuple[str, str, str], list[ImageScore]] = {}
    for r in rows:
        if r.status == "ok":
            groups.setdefault((r.task, r.method, r.profile), []).append(r)
    out: list[Summary] = []
    for (task, method, profile), items in groups.items():
        for metric in metric_list:
            vals = np.array([r.values.get(metric, math.nan) for r in items], dtype=np.float64)
            finite = vals[np.isfinite(vals)]
            n = int(finite.size)
            mean = float(finite.mean()) if n else math.nan
            std = float(finite.std(ddof=1)) if n > 1 else (0.0 if n == 1 else math.nan)
            out.append(Summary(task, method, profile, metric, mean, std, n, int(vals.size - n)))
    return out


def best_methods(summaries: Iterable[Summary]) -> set[tuple[str, str, str, str]]:
    """(task, profile, metric, method) of the best mean per task, profile and metric, in
    the metric's direction (``HIGHER_IS_BETTER``; lower for Nabf). Ties are all best; a
    lone method is never "best", since there is nothing to compare it with."""
    by_key: dict[tuple[str, str, str], list[Summary]] = {}
    for s in summaries:
        if math.isfinite(s.mean):
            by_key.setdefault((s.task, s.profile, s.metric), []).append(s)
    best: set[tuple[str, str, str, str]] = set()
    for (task, profile, metric), items in by_key.items():
        if len(items) < 2:
            continue
        sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
        top = max(sign * s.mean for s in items)
        tol = 1e-12 * max(1.0, abs(top))
        best.update((task, profile, metric, s.method) for s in items if sign * s.mean >= top - tol)
    return best


__all__ = ["Summary", "best_methods", "summarise"]
