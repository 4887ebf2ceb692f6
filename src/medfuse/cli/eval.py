"""``medfuse eval``: score fusion methods side by side on a dataset.

The command fills in an :class:`~medfuse.evaluation.EvalRequest`, calls
:func:`~medfuse.evaluation.evaluate_files`, prints the tables and problems, and picks the
exit code; everything else lives in :mod:`medfuse.evaluation`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medfuse.cli.app import app
from medfuse.cli.options import (
    GAMUT_MAP_DEFAULT,
    AxisOpt,
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    GamutMapOpt,
    SliceOpt,
    VerboseOpt,
    WeightsOpt,
    console,
    handle_errors,
    out,
    progress_bar,
    resolve_device,
)

MethodOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--method",
        help="Method to run, repeatable: average, max, laplacian, gff, gesenet (default "
        "weights) or gesenet:PATH; prefix LABEL= to name it (mine=gesenet:run/best.pt).",
    ),
]
FusedOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fused",
        help="Folder of existing fused images matched by name (per task: DIR/<TASK>/ when "
        "there are several; a volume pair's slices in DIR/<name>/axial_NNNN.png), "
        "repeatable, optional LABEL=DIR.",
    ),
]
ProfileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--profile",
        help="Metric convention, repeatable: standard (default), toolbox2022, or all "
        "(both side by side).",
    ),
]


def _rich_tables(result: Any) -> list[Any]:
    """One rich table per task: rows metric x profile, columns methods, best in bold."""
    from rich.table import Table

    from medfuse.evaluation import other_label
    from medfuse.evaluation.report import arrow, summary_grid

    tables = []
    tasks = {t.name: t for t in result.tasks}
    for task in result.task_names():
        labels, grid = summary_grid(result, task)
        t = tasks[task]
        table = Table(title=f"{task}: {len(t.pairs)} pairs, MRI + {other_label(t)} "
                            "(mean ± std; bold = best)")
        table.add_column("metric")
        table.add_column("profile")
        for label in labels:
            table.add_column(label, justify="right")
        last = None
        for row in grid:
            metric = f"{row.metric} {arrow(row.metric)}" if row.metric != last else ""
            if row.metric != last and last is not None and len(result.profiles) > 1:
                table.add_section()
            last = row.metric
            table.add_row(metric, row.profile,
                          *[f"[bold]{c.text}[/bold]" if c.best else c.text for c in row.cells])
        tables.append(table)
    return tables


def _print_table(table: Any) -> None:
    """On a terminal, fit the terminal; piped into a file or log, use the table's natural
    width instead of rich's 80-column default, which would wrap every cell in two."""
    from rich.measure import Measurement

    if out.is_terminal:
        out.print(table)
        return
    natural = Measurement.get(out, out.options.update(width=400), table).maximum
    out.print(table, width=max(out.width, min(natural, 400)))


def _print_problems(result: Any, allow_missing: bool) -> bool:
    """List what was not scored; True when the exit code must say so (failures, or
    missing fused images without --allow-missing)."""
    from rich.markup import escape

    for p in result.problems:
        if p.kind == "unmatched":
            console.print(f"[yellow]not scored[/] {escape(p.task)}: {escape(p.message)}",
                          soft_wrap=True)
    missing, errors = result.missing, result.errors
    for label, items in (("missing", missing), ("failed", errors)):
        for p in items:
            who = f" ({escape(p.method)})" if p.method else ""
            console.print(f"[red]{label}[/] {escape(p.task)}/{escape(p.image)}{who}: "
                          f"{escape(p.message)}", soft_wrap=True)
    if missing:
        console.print(f"{len(missing)} fused image(s) missing; the rest were scored"
                      + ("" if allow_missing else " (use --allow-missing to accept)"),
                      soft_wrap=True)
    return bool(errors or (missing and not allow_missing))


@app.command("eval")
@handle_errors
def eval_cmd(
    data_dir: Annotated[Path, typer.Argument(help="Task folder (MRI/ + CT/|PET/|SPECT/ of images, NIfTI or DICOM) or a root of task folders.")],
    method: MethodOpt = None,
    fused: FusedOpt = None,
    split: Annotated[str | None, typer.Option("--split", help="Use <TASK>/<SPLIT> under DATA_DIR (e.g. val).")] = None,
    profile: ProfileOpt = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="Only these metrics (repeatable or comma-separated); default all ten.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write per-image scores as CSV.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write summary and per-image scores as JSON (NaN as null).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Folder for report.md, box plots and example grids.")] = None,
    save_fused: Annotated[Path | None, typer.Option("--save-fused", help="Keep every output as DIR/<method>/<TASK>/<name>.png (volumes: <name>/<axis>_NNNN.png), the scored 8-bit values.")] = None,
    examples: Annotated[int, typer.Option("--examples", min=0, help="Example rows per task in the report grid.")] = 3,
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Exit 0 even if --fused images are missing (they are still listed).")] = False,
    resize: Annotated[bool, typer.Option("--resize", help="Resample other images onto the MRI grid where 2D sizes differ (else such pairs fail).")] = False,
    axis: AxisOpt = None,
    slice_index: SliceOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Pairs or slices per GeSeNet call.")] = 8,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    gamut_map: GamutMapOpt = GAMUT_MAP_DEFAULT,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score fusion methods side by side: mean ± std of EN SD SF AG MI SSIM VIF SCD Qabf Nabf
    per method and task, per-image CSV/JSON, and a Markdown report. Volume pairs are scored
    on every slice with anatomy (or --slice N) and averaged.

    Exit 0 when every pair was scored; 1 when some failed or --fused images are missing (the rest are still scored and written); 2 for a bad command line.
    """
    from medfuse.evaluation import EvalRequest, evaluate_files

    resolve_device(device)  # checked before any input is read; the text is what it records
    request = EvalRequest(
        data_dir, methods=method or [], fused=fused or [], split=split,
        profiles=profile or [], metrics=metric or [], csv=csv_path, json=json_path,
        report=report, save_fused=save_fused, examples=examples, resize=resize, axis=axis,
        slice_index=slice_index, batch_size=batch_size, weights=weights, device=device,
        force=force, gamut_map=gamut_map,
    )
    with progress_bar("scoring", None) as update:
        done = evaluate_files(request, progress=update)
    result = done.result
    for table in _rich_tables(result):
        _print_table(table)
    if verbose:
        for t in result.tasks:
            console.print(f"task {t.name}: {len(t.pairs)} pairs in {t.folder}", markup=False)
        for label, text in result.method_info.items():
            console.print(f"{label}: {text}", soft_wrap=True, markup=False)
    if result.nan_count():
        console.print(f"{result.nan_count()} metric value(s) undefined (NaN), left out of the "
                      "means and counted in the cells; the report explains why.", soft_wrap=True)
    for path in done.written:
        console.print(f"wrote {path}", markup=False)
    console.print(f"{result.seconds:.1f} s")
    if _print_problems(result, allow_missing):
        raise typer.Exit(1)


__all__ = ["eval_cmd"]
