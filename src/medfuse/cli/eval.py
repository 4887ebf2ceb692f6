"""``medfuse eval``: score fusion methods side by side on a dataset (thin over
:mod:`medfuse.evaluation` and :mod:`medfuse.report`)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from medfuse.cli.app import app
from medfuse.cli.common import (
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    VerboseOpt,
    WeightsOpt,
    console,
    handle_errors,
    out,
)
from medfuse.errors import UsageError

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
        help="Folder of existing fused images matched by stem (per task: DIR/<TASK>/ when "
        "there are several), repeatable, optional LABEL=DIR.",
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

    from medfuse.report import arrow, summary_grid

    tables = []
    tasks = {t.name: t for t in result.tasks}
    for task in result.task_names():
        labels, grid = summary_grid(result, task)
        t = tasks[task]
        table = Table(title=f"{task}: {len(t.pairs)} pairs, MRI + {t.other_label} "
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


def _command_line(data_dir: Path, split: str | None, method: list[str] | None,
                  fused: list[str] | None, profiles: list[str], metric: list[str] | None,
                  weights: Path | None, resize: bool, device: str) -> str:
    parts = ["medfuse", "eval", str(data_dir)]
    if split:
        parts += ["--split", split]
    for m in method or []:
        parts += ["--method", m]
    for f in fused or []:
        parts += ["--fused", f]
    for p in profiles:
        parts += ["--profile", p]
    for m in metric or []:
        parts += ["--metric", m]
    if weights is not None:
        parts += ["--weights", str(weights)]
    if resize:
        parts.append("--resize")
    if device != "auto":
        parts += ["--device", device]
    return " ".join(shlex.quote(p) for p in parts)


def _print_table(table: Any) -> None:
    """On a terminal, fit the terminal; piped into a file or log, use the table's natural
    width instead of rich's 80-column default, which would wrap every cell in two."""
    from rich.measure import Measurement

    if out.is_terminal:
        out.print(table)
        return
    natural = Measurement.get(out, out.options.update(width=400), table).maximum
    out.print(table, width=max(out.width, min(natural, 400)))


@app.command("eval")
@handle_errors
def eval_cmd(
    data_dir: Annotated[Path, typer.Argument(help="Task folder (MRI/ + CT/|PET/|SPECT/) or a root of task folders.")],
    method: MethodOpt = None,
    fused: FusedOpt = None,
    split: Annotated[str | None, typer.Option("--split", help="Use <TASK>/<SPLIT> under DATA_DIR (e.g. val).")] = None,
    profile: ProfileOpt = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="Only these metrics (repeatable or comma-separated); default all ten.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write per-image scores as CSV.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write summary and per-image scores as JSON (NaN as null).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Folder for report.md, box plots and example grids.")] = None,
    save_fused: Annotated[Path | None, typer.Option("--save-fused", help="Keep every output as DIR/<method>/<TASK>/<name>.png (the scored 8-bit values).")] = None,
    examples: Annotated[int, typer.Option("--examples", min=0, help="Example rows per task in the report grid.")] = 3,
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Exit 0 even if --fused images are missing (they are still listed).")] = False,
    resize: Annotated[bool, typer.Option("--resize", help="Resample second images onto the MRI grid where sizes differ (else such pairs fail).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Pairs per GeSeNet call.")] = 8,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score fusion methods side by side: mean ± std of EN SD SF AG MI SSIM VIF SCD Qabf Nabf
    per method and task, per-image CSV/JSON, and a Markdown report.

    Exit 0 when every pair was scored; 1 when some failed or --fused images are missing (the rest are still scored and written); 2 for a bad command line.
    """
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from medfuse.evaluation import (
        check_unique,
        discover_tasks,
        evaluate,
        parse_fused,
        parse_method,
        parse_metrics,
        parse_profiles,
        write_csv,
        write_json,
    )
    from medfuse.io.outputs import check_output
    from medfuse.report import check_report_dir, write_report

    methods = [parse_method(m) for m in method or []] + [parse_fused(f) for f in fused or []]
    check_unique(methods)
    profiles = parse_profiles(profile)
    metrics = parse_metrics(metric)
    if weights is not None and not any(m.kind == "gesenet" and m.path is None for m in methods):
        raise UsageError("--weights applies to --method gesenet, which is not requested "
                         "(add it, or use --method gesenet:PATH)")
    tasks = discover_tasks(data_dir, split)
    # The report records how to reproduce it: the options as parsed, not sys.argv (which is
    # the test runner's or a notebook's when called in-process).
    command = _command_line(data_dir, split, method, fused, profiles, metric, weights,
                            resize, device)
    if csv_path is not None and json_path is not None and csv_path.resolve() == json_path.resolve():
        raise UsageError("--csv and --json name the same file")
    for p in (csv_path, json_path):
        if p is not None:
            check_output(p, force)
    if report is not None:
        check_report_dir(report, [t.name for t in tasks if t.pairs], profiles, force)
    if verbose:
        for t in tasks:
            console.print(f"task {t.name}: {len(t.pairs)} pairs in {t.folder}")

    total = sum(len(t.pairs) for t in tasks) * len(methods)
    with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        bar = progress.add_task("eval", total=total)
        result = evaluate(
            tasks, methods, profiles, metrics, weights=weights, device=device,
            batch_size=batch_size, resize=resize, save_fused=save_fused, force=force,
            examples=examples, split=split, data_dir=data_dir,
            progress=lambda n: progress.advance(bar, n),
        )

    for table in _rich_tables(result):
        _print_table(table)
    if verbose:
        for label, text in result.method_info.items():
            console.print(f"{label}: {text}", soft_wrap=True)
    nan_cells = sum(1 for r in result.rows if r.status == "ok"
                    for v in r.values.values() if v != v)
    if nan_cells:
        console.print(f"{nan_cells} metric value(s) undefined (NaN), left out of the means "
                      "and counted in the cells; the report explains why.", soft_wrap=True)

    if csv_path is not None:
        write_csv(result, csv_path, force)
        console.print(f"wrote {csv_path}")
    if json_path is not None:
        write_json(result, json_path, force)
        console.print(f"wrote {json_path}")
    if report is not None:
        path = write_report(result, report, force, command=command)
        console.print(f"wrote {path}")
    console.print(f"{result.seconds:.1f} s")

    for p in result.problems:
        if p.kind == "unmatched":
            console.print(f"[yellow]not scored[/] {escape(p.task)}: {escape(p.message)}", soft_wrap=True)
    missing, errors = result.missing, result.errors
    for label, items in (("missing", missing), ("failed", errors)):
        for p in items:
            who = f" ({escape(p.method)})" if p.method else ""
            console.print(f"[red]{label}[/] {escape(p.task)}/{escape(p.image)}{who}: "
                          f"{escape(p.message)}", soft_wrap=True)
    if missing:
        console.print(f"{len(missing)} fused image(s) missing; the rest were scored"
                      + ("" if allow_missing else " (use --allow-missing to accept)"), soft_wrap=True)
    if errors or (missing and not allow_missing):
        raise typer.Exit(1)


__all__ = ["eval_cmd"]
