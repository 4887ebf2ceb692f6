"""Tables and the Markdown report of an evaluation (``medfuse eval --report DIR``).

The report has to be readable by someone who did not run it: what was compared, on what,
with which metric convention, which method is best on each metric, what the spread is,
where a number is undefined and why, and what the images look like. Box plots need
matplotlib (the optional ``plot`` extra); everything else, the example grids included,
needs only NumPy and Pillow (drawn by :mod:`medfuse.render`), so the report always exists.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medfuse.evaluation.aggregate import Summary, best_methods
from medfuse.evaluation.run import ANATOMY_LEVEL, EvalResult, Example, other_label
from medfuse.io.outputs import atomic_output, check_output
from medfuse.metrics import HIGHER_IS_BETTER

REPORT_NAME = "report.md"

#: Why each metric can be undefined (mirrors the NaN table of docs/metrics.md).
NAN_REASONS: dict[str, str] = {
    "SCD": "a correlation with a constant is 0/0: A, B, F - A or F - B is constant "
           "(e.g. a blank slice, or a method that returned one source unchanged)",
    "VIF": "a source has no variance at some scale (a constant image, or one smaller than "
           "the 17x17 window), so the information it carries is 0 and the fraction kept is "
           "undefined; the toolbox2022 profile is also NaN when uint8 saturation clamps every "
           "scale-1 variance to 0",
    "Qabf": "neither source has an edge anywhere (constant images): no edge to transfer",
    "Nabf": "neither source has an edge anywhere (constant images): no edge budget",
    "SSIM": "the image is smaller than the 11x11 window",
    "AG": "the image has fewer than 2 rows or columns",
}


# -- number formatting and table grids --------------------------------------------------------


def fmt(x: float) -> str:
    """Four significant digits, never scientific notation for fusion-metric ranges."""
    if not math.isfinite(x):
        return "NaN"
    if abs(x) >= 1000:
        return f"{x:.1f}"
    if x == 0:
        return "0"
    return f"{x:.4g}" if abs(x) >= 1e-4 else f"{x:.2e}"


def fmt_spread(x: float) -> str:
    """Two significant digits: a spread is an uncertainty, more digits are noise."""
    if not math.isfinite(x):
        return "NaN"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if x == 0:
        return "0"
    return f"{x:.2g}" if abs(x) >= 1e-4 else f"{x:.1e}"


def arrow(metric: str) -> str:
    return "↑" if HIGHER_IS_BETTER.get(metric, True) else "↓"


def cell_text(s: Summary | None, with_std: bool = True) -> str:
    """``mean ± std``, with the count of images where the metric was undefined."""
    if s is None:
        return "-"
    text = fmt(s.mean) + (f" ± {fmt_spread(s.std)}" if with_std and math.isfinite(s.mean) else "")
    if s.n_nan:
        text += f" ({s.n_nan} NaN)"
    return text


@dataclass
class Cell:
    text: str
    best: bool


@dataclass
class GridRow:
    metric: str
    profile: str
    cells: list[Cell]


def summary_grid(result: EvalResult, task: str, with_std: bool = True) -> tuple[list[str], list[GridRow]]:
    """One task's comparison: a row per (metric, profile), a column per method.

    Profiles sit in adjacent rows so that the same metric under both conventions can be
    read together, while each row's best is decided within one profile only.
    """
    summaries = [s for s in result.summaries() if s.task == task]
    index = {(s.method, s.profile, s.metric): s for s in summaries}
    best = best_methods(summaries)
    labels = [m.label for m in result.methods]
    rows = []
    for metric in result.metrics:
        for profile in result.profiles:
            cells = [Cell(cell_text(index.get((label, profile, metric)), with_std),
                          (task, profile, metric, label) in best) for label in labels]
            rows.append(GridRow(metric, profile, cells))
    return labels, rows


def means_grid(result: EvalResult, profile: str) -> tuple[list[str], list[list[Cell]]]:
    """Means only, one row per (task, method), one column per metric, for one profile:
    the compact table that goes next to a paper's."""
    summaries = [s for s in result.summaries() if s.profile == profile]
    index = {(s.task, s.method, s.metric): s for s in summaries}
    best = best_methods(summaries)
    header = ["task", "method"] + [f"{m} {arrow(m)}" for m in result.metrics]
    rows = []
    for task in result.task_names():
        for m in result.methods:
            cells = [Cell(task, False), Cell(m.label, False)]
            for metric in result.metrics:
                s = index.get((task, m.label, metric))
                cells.append(Cell(cell_text(s, with_std=False),
                                  (task, profile, metric, m.label) in best))
            rows.append(cells)
    return header, rows


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Cell]], align_first: int = 1) -> str:
    def cell(c: Cell) -> str:
        t = _md_escape(c.text)
        return f"**{t}**" if c.best else t

    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "|".join("---" if i < align_first else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def task_table_md(result: EvalResult, task: str) -> str:
    labels, grid = summary_grid(result, task)
    header = ["metric", "profile", *labels]
    rows = [[Cell(f"{r.metric} {arrow(r.metric)}", False), Cell(r.profile, False), *r.cells]
            for r in grid]
    return _md_table(header, rows, align_first=2)


def means_table_md(result: EvalResult, profile: str) -> str:
    header, rows = means_grid(result, profile)
    return _md_table(header, rows, align_first=2)


# -- images ------------------------------------------------------------------------------------


def example_grid(examples: Sequence[Example], columns: Sequence[str], other: str) -> np.ndarray:
    """Rows of examples, columns MRI | other image | each method, the pair's name on its
    MRI tile (float32 RGB in [0, 1]; see :func:`medfuse.render.labelled_grid`)."""
    from medfuse.render import labelled_grid

    rows = [[e.mri, e.other, *[e.fused.get(c) for c in columns]] for e in examples]
    return labelled_grid(rows, ["MRI", other, *columns], [e.caption for e in examples])


def matplotlib_available() -> bool:
    """True when box plots can be drawn (``pip install 'medfuse[plot]'``)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def box_plots(result: EvalResult, task: str, profile: str, path: Path, force: bool = False) -> None:
    """One figure per task and profile, one panel per metric, a box per method (the
    layout of the GeSeNet paper's Fig. 7): boxes show the quartiles, whiskers 1.5 IQR,
    the white dot the mean; undefined (NaN) values are not drawn."""
    from matplotlib.figure import Figure

    labels = [m.label for m in result.methods]
    metrics = result.metrics
    ncol = min(5, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig = Figure(figsize=(3.2 * ncol, 3.3 * nrow), dpi=100, layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    rows = [r for r in result.rows if r.task == task and r.profile == profile and r.status == "ok"]
    for k, metric in enumerate(metrics):
        ax = axes[k // ncol][k % ncol]
        data = []
        for label in labels:
            vals = np.array([r.values[metric] for r in rows if r.method == label], np.float64)
            data.append(vals[np.isfinite(vals)])
        positions = [i + 1 for i, d in enumerate(data) if d.size]
        if positions:
            ax.boxplot([d for d in data if d.size], positions=positions, widths=0.6,
                       showmeans=True, meanprops={"marker": "o", "markerfacecolor": "white",
                                                  "markeredgecolor": "black", "markersize": 4},
                       flierprops={"markersize": 3})
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
        ax.set_xlim(0.4, len(labels) + 0.6)
        ax.set_title(f"{metric} ({'higher' if HIGHER_IS_BETTER.get(metric, True) else 'lower'} is better)",
                     fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    for k in range(len(metrics), nrow * ncol):
        axes[k // ncol][k % ncol].set_visible(False)
    fig.suptitle(f"{task}, profile {profile}", fontsize=11)
    with atomic_output(path, force=force) as tmp:
        fig.savefig(tmp, format="png")


# -- the report ----------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def planned_files(task_names: Sequence[str], profiles: Sequence[str], plots: bool = True) -> list[str]:
    """The file names ``write_report`` may create, so a caller can refuse to overwrite
    them before spending minutes on the evaluation."""
    names = [REPORT_NAME]
    for task in task_names:
        names.append(f"examples-{_slug(task)}.png")
        if plots:
            names += [f"boxplots-{_slug(task)}-{p}.png" for p in profiles]
    return names


def check_report_dir(folder: Path, task_names: Sequence[str], profiles: Sequence[str],
                     force: bool) -> None:
    """UsageError now rather than after the run if the report would overwrite files."""
    check_output(folder, True, kind="folder", label="--report")
    for name in planned_files(task_names, profiles):
        check_output(folder / name, force)


def _nan_section(result: EvalResult) -> list[str]:
    counts: dict[tuple[str, str, str, str], list[str]] = {}
    for r in result.rows:
        if r.status != "ok":
            continue
        for metric, v in r.values.items():
            if not math.isfinite(v):
                counts.setdefault((r.task, r.profile, r.method, metric), []).append(r.image)
    lines = ["## Undefined values (NaN)", ""]
    if not counts:
        lines += ["Every metric was defined on every scored image.", ""]
        return lines
    lines += [
        "A metric is NaN where its definition divides by zero; medfuse reports NaN rather than "
        "inventing a number. Means and standard deviations above leave those images out, and "
        "each cell says how many there were.", "",
        "| task | profile | method | metric | images | examples |",
        "|---|---|---|---|---:|---|",
    ]
    for (task, profile, method, metric), images in sorted(counts.items()):
        shown = ", ".join(images[:5]) + (", ..." if len(images) > 5 else "")
        lines.append(f"| {task} | {profile} | {method} | {metric} | {len(images)} | {shown} |")
    lines += ["", "Why:", ""]
    for metric in sorted({k[3] for k in counts}):
        lines.append(f"- **{metric}**: {NAN_REASONS.get(metric, 'undefined for this input')}.")
    lines += ["", "See the NaN table of `docs/metrics.md` for the exact conditions.", ""]
    return lines


def _problem_section(result: EvalResult) -> list[str]:
    if not result.problems:
        return []
    titles = {"missing": "Missing fused images", "error": "Images that could not be scored",
              "unmatched": "Source files that could not be paired (not scored)"}
    lines = ["## Problems", ""]
    for kind in ("missing", "error", "unmatched"):
        items = [p for p in result.problems if p.kind == kind]
        if not items:
            continue
        lines += [f"### {titles[kind]} ({len(items)})", ""]
        for p in items:
            who = f" [{p.method}]" if p.method else ""
            lines.append(f"- {p.task}/{p.image}{who}: {_md_escape(p.message)}")
        lines.append("")
    return lines


def render_markdown(result: EvalResult, plots: dict[tuple[str, str], str],
                    grids: dict[str, str], command: str | None = None,
                    plot_note: str | None = None) -> str:
    """The report text; ``plots`` maps (task, profile) and ``grids`` maps task to the
    relative file names of images that were written."""
    from medfuse import __version__

    tasks = {t.name: t for t in result.tasks}
    scored = result.task_names()
    lines = ["# medfuse evaluation report", ""]
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines += [
        f"- data: `{result.data_dir}`" + (f", split `{result.split}`" if result.split else ""),
        "- tasks: " + ", ".join(f"{n} ({len(tasks[n].pairs)} pairs)" for n in scored),
        f"- profiles: {', '.join(result.profiles)}; gamut map {result.gamut_map}",
        f"- medfuse {__version__}, {when}, {result.seconds:.1f} s",
    ]
    if command:
        lines.append(f"- command: `{command}`")
    if any(r.slices is not None for r in result.rows):
        lines.append(f"- volume pairs: scored slice by slice on every slice whose windowed MRI "
                     f"has a mean of at least {ANATOMY_LEVEL:g} (or the one slice asked for); "
                     "a pair's value is the mean over those slices (see the csv notes)")
    lines += ["", "Methods (all fuse luminance and share GeSeNet's colour path; outputs scored as "
              "8-bit PNG values, no contrast stretch):", ""]
    lines += [f"- **{m.label}**: {_md_escape(result.method_info.get(m.label, m.describe()))}"
              for m in result.methods]
    lines += [
        "",
        "How to read the tables: mean ± sample standard deviation over the images of a task; "
        "**bold** is the best method for that metric, task and profile (↑ higher is better, "
        "↓ lower is better). `standard` uses the correct metric definitions; `toolbox2022` "
        "reproduces the MATLAB-toolbox convention behind published tables (its SD, SSIM and "
        "VIF are not the quantities their names say; see `docs/metrics.md`). Compare numbers "
        "only within one profile.",
        "",
        "## Summary: means per task",
        "",
    ]
    for profile in result.profiles:
        lines += [f"### profile `{profile}`", "", means_table_md(result, profile), ""]
    for task in scored:
        t = tasks[task]
        lines += [f"## {task} ({len(t.pairs)} pairs, MRI + {other_label(t)})", "",
                  task_table_md(result, task), ""]
        for profile in result.profiles:
            if (task, profile) in plots:
                lines += [f"![box plots {task} {profile}]({plots[(task, profile)]})", ""]
        if task in grids:
            shown = [e.caption for e in result.examples if e.task == task]
            lines += [f"Examples ({', '.join(shown)}); columns: MRI, {other_label(t)}, "
                      + ", ".join(m.label for m in result.methods) + ".", "",
                      f"![examples {task}]({grids[task]})", ""]
    if plot_note:
        lines += [f"> {plot_note}", ""]
    lines += _nan_section(result)
    lines += _problem_section(result)
    return "\n".join(lines).rstrip() + "\n"


def write_report(result: EvalResult, folder: Path, force: bool = False,
                 command: str | None = None) -> Path:
    """Write report.md, per-task example grids and (with matplotlib) box plots into
    ``folder``; each file atomically. Returns the report path."""
    from medfuse.io.images import write_image

    folder = Path(folder)
    check_report_dir(folder, result.task_names(), result.profiles, force)
    plots: dict[tuple[str, str], str] = {}
    grids: dict[str, str] = {}
    note = None
    can_plot = matplotlib_available()
    if not can_plot:
        note = ("Box plots were skipped: matplotlib is not installed "
                "(`pip install 'medfuse[plot]'`). The tables above are complete.")
    labels = [m.label for m in result.methods]
    tasks = {t.name: t for t in result.tasks}
    for task in result.task_names():
        if can_plot:
            for profile in result.profiles:
                name = f"boxplots-{_slug(task)}-{profile}.png"
                box_plots(result, task, profile, folder / name, force)
                plots[(task, profile)] = name
        examples = [e for e in result.examples if e.task == task]
        if examples:
            name = f"examples-{_slug(task)}.png"
            grid = example_grid(examples, labels, other_label(tasks[task]))
            write_image(folder / name, grid, force=force)
            grids[task] = name
    text = render_markdown(result, plots, grids, command, note)
    path = folder / REPORT_NAME
    with atomic_output(path, force=force) as tmp:
        tmp.write_text(text)
    return path


__all__ = [
    "NAN_REASONS",
    "REPORT_NAME",
    "box_plots",
    "cell_text",
    "check_report_dir",
    "example_grid",
    "fmt",
    "fmt_spread",
    "means_grid",
    "means_table_md",
    "planned_files",
    "render_markdown",
    "summary_grid",
    "task_table_md",
    "write_report",
]
