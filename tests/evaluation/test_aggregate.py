"""medfuse.evaluation.aggregate: means, spreads, NaN counting and the best method."""

from __future__ import annotations

import math

import pytest

from medfuse.evaluation import ImageScore, Summary, best_methods, summarise


def test_summarise_leaves_nan_out_and_counts_it() -> None:
    rows = [ImageScore("T", str(i), "m", "standard", {"SCD": v})
            for i, v in enumerate([1.0, 2.0, math.nan, 3.0])]
    rows.append(ImageScore("T", "x", "m", "standard", {"SCD": math.nan}, "missing", "gone"))
    (s,) = summarise(rows, ["SCD"])
    assert (s.mean, s.n, s.n_nan) == (2.0, 3, 1)
    assert s.std == pytest.approx(1.0)  # sample standard deviation


def test_summarise_one_image_and_none_defined() -> None:
    rows = [ImageScore("T", "a", "m", "standard", {"EN": 4.0, "SCD": math.nan})]
    by = {s.metric: s for s in summarise(rows, ["EN", "SCD"])}
    assert (by["EN"].mean, by["EN"].std, by["EN"].n) == (4.0, 0.0, 1)
    assert math.isnan(by["SCD"].mean) and math.isnan(by["SCD"].std) and by["SCD"].n_nan == 1


def test_summarise_groups_by_task_method_and_profile() -> None:
    rows = [ImageScore(t, "a", m, p, {"EN": v})
            for v, (t, m, p) in enumerate([("T", "x", "standard"), ("T", "x", "toolbox2022"),
                                           ("T", "y", "standard"), ("U", "x", "standard")])]
    got = {(s.task, s.method, s.profile): s.mean for s in summarise(rows, ["EN"])}
    assert got == {("T", "x", "standard"): 0.0, ("T", "x", "toolbox2022"): 1.0,
                   ("T", "y", "standard"): 2.0, ("U", "x", "standard"): 3.0}


def test_best_respects_direction() -> None:
    sums = [Summary("T", m, "standard", metric, mean, 0.0, 3, 0)
            for m, mean in (("a", 0.1), ("b", 0.3))
            for metric in ("Qabf", "Nabf")]
    assert best_methods(sums) == {("T", "standard", "Qabf", "b"), ("T", "standard", "Nabf", "a")}


def test_best_ties_nan_and_lone_methods() -> None:
    sums = [Summary("T", "a", "standard", "EN", 5.0, 0, 2, 0),
            Summary("T", "b", "standard", "EN", 5.0, 0, 2, 0),
            Summary("T", "c", "standard", "EN", math.nan, math.nan, 0, 2),
            Summary("T", "a", "toolbox2022", "EN", 9.0, 0, 2, 0)]
    assert best_methods(sums) == {("T", "standard", "EN", "a"), ("T", "standard", "EN", "b")}
