"""``medfuse train`` and ``medfuse train-semantic``: options in, one call into
:mod:`medfuse.training`, a result line out. The run-folder, overwrite and loading rules live
in the library (:mod:`medfuse.training.checkpoint`), so Python callers get the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medfuse.cli.app import app
from medfuse.cli.options import (
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    VerboseOpt,
    console,
    handle_errors,
    resolve_device,
    say,
)

if TYPE_CHECKING:
    from rich.progress import TaskID

DataOpt = Annotated[Path, typer.Option("--data", help="Dataset root: <TASK>/{train,val}/{MRI,CT|PET|SPECT} (the layout batch and eval read).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Run folder (logs, checkpoints).")]


@contextmanager
def _loss_progress(total: int, label: str) -> Iterator[Callable[[int, dict[str, float]], None]]:
    """A rich progress bar whose description shows the latest loss terms (a generic bar
    would hide what a user watches a training run for). It appears at the first step, so
    a run refused while checking its inputs prints only its error line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    tasks: list[TaskID] = []

    def update(step: int, row: dict[str, float]) -> None:
        if not tasks:
            progress.start()
            tasks.append(progress.add_task(label, total=total))
        keys = ("total", "content", "gradient", "ssim", "mef_ssim", "qabf", "semantic", "mask",
                "mask_support", "scd", "intensity", "contrast", "lattice", "lattice_logits",
                "channel_sparsity", "peaks", "loss")
        desc = " ".join(f"{k}={row[k]:.4f}" for k in keys if k in row and row[k] == row[k])
        progress.update(tasks[0], completed=step, description=f"{label} {desc}")

    try:
        yield update
    finally:
        if tasks:
            progress.stop()


@app.command("train-semantic")
@handle_errors
def train_semantic_cmd(
    data: DataOpt,
    out_dir: OutOpt,
    steps: Annotated[int, typer.Option(min=1, help="SGD steps.")] = 3000,
    batch: Annotated[int, typer.Option(min=1)] = 8,
    patch: Annotated[int, typer.Option(min=8)] = 64,
    lr: Annotated[float, typer.Option()] = 0.01,
    seed: Annotated[int, typer.Option()] = 0,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes")] = None,
    force: ForceOpt = False,
    device: DeviceOpt = "auto",
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Pre-train the semantic segmentation module on pseudo-labels (SGD)."""
    from medfuse.training.semantic import train_semantic

    resolve_device(device)  # checked before any input is read
    with _loss_progress(steps, "semantic") as update:
        summary = train_semantic(data, out_dir, steps, batch, patch, lr, seed, device,
                                 max_minutes, update, force=force)
    say(f"semantic net: {summary['weights']}; val pixel accuracy {summary['val_pixel_accuracy']:.3f}")


#: Flags of the earlier, one-option-per-setting ``medfuse train``: each still works for one
#: release, as the recipe key it sets (``--set``), with a one-line note. (flag, key, kind):
#: kind "value" takes one value, "band" two, "on" is a switch that sets true, "zero" a
#: switch that sets the key to 0.
DEPRECATED_FLAGS: dict[str, tuple[str, str]] = {
    "--semantic": ("train.semantic", "value"), "--batch": ("train.batch", "value"),
    "--patch": ("train.patch", "value"), "--stride": ("train.stride", "value"),
    "--lr": ("train.lr", "value"), "--tau": ("train.tau", "value"),
    "--tau-start": ("train.tau_start", "value"), "--gamma": ("losses.gradient", "value"),
    "--alpha": ("losses.ssim", "value"), "--beta": ("losses.semantic", "value"),
    "--delta": ("losses.semantic_aux", "value"), "--mask-weight": ("losses.mask", "value"),
    "--mask-target": ("losses.mask_target", "value"),
    "--compute-target": ("losses.compute_target", "value"),
    "--mef-ssim": ("losses.mef_ssim", "value"), "--qabf-loss": ("losses.qabf", "value"),
    "--mask-support": ("losses.mask_support", "value"),
    "--support-band": ("losses.support_band", "band"), "--scd": ("losses.scd", "value"),
    "--intensity": ("losses.intensity", "value"), "--contrast": ("losses.contrast", "value"),
    "--peaks": ("losses.peaks", "value"),
    "--peaks-coloured-only": ("losses.peaks_coloured_only", "on"),
    "--peaks-studies-only": ("losses.peaks_studies_only", "on"),
    "--gamut": ("losses.gamut", "value"),
    "--gamut-studies-only": ("losses.gamut_studies_only", "on"),
    "--anatomy": ("losses.anatomy", "value"), "--lattice": ("losses.lattice", "value"),
    "--lattice-logits": ("losses.lattice_logits", "value"),
    "--mask-lr-scale": ("train.mask_lr_scale", "value"),
    "--channel-sparsity": ("losses.channel_sparsity", "value"),
    "--sparse-target": ("losses.sparse_target", "value"), "--studies": ("data.studies", "value"),
    "--straight-through": ("train.straight_through", "on"), "--anchor": ("losses.anchor", "value"),
    "--anchor-weights": ("train.anchor_weights", "value"),
    "--display-luma": ("train.display_luma", "on"),
    "--criterion": ("validation.criterion", "value"), "--no-content": ("losses.content", "zero"),
    "--fit-steps": ("train.fit_steps", "on"), "--stop-after": ("train.stop_after", "value"),
}


def name_old_flags(message: str) -> str:
    """``message`` with each recipe key that an old flag sets shown as that flag too
    (``train.lr`` -> ``--lr (train.lr)``): a user of the old flags reads their own words."""
    import re

    by_key: dict[str, str] = {}
    for flag, (key, _) in DEPRECATED_FLAGS.items():
        by_key.setdefault(key, flag)
    for key in sorted(by_key, key=len, reverse=True):
        message = re.sub(rf"(?<![\w.-]){re.escape(key)}(?![\w])", f"{by_key[key]} ({key})",
                         message)
    return message


def deprecated_sets(args: list[str]) -> tuple[list[str], list[str]]:
    """(``--set`` items, one note per flag) for the old flags among ``args``; an unknown
    option or a flag without its value is a usage error naming it."""
    from medfuse.errors import UsageError

    sets, notes, i = [], [], 0
    while i < len(args):
        raw = args[i]
        flag, eq, inline = raw.partition("=")
        if flag not in DEPRECATED_FLAGS:
            raise UsageError(f"train: no such option: {raw} (see medfuse train --help)")
        key, kind = DEPRECATED_FLAGS[flag]
        if kind in ("on", "zero"):
            value = "true" if kind == "on" else "0"
            i += 1
        else:
            n = 2 if kind == "band" else 1
            vals = [inline] if eq else args[i + 1 : i + 1 + n]
            if len(vals) < n or any(v.startswith("--") for v in vals):
                raise UsageError(f"train: {flag} needs {n} value{'s' if n > 1 else ''}")
            value = f"[{vals[0]}, {vals[1]}]" if kind == "band" else vals[0]
            i += 1 + (0 if eq else n)
        sets.append(f"{key}={value}")
        notes.append(f"note: {flag} is deprecated and will be removed in the next release; "
                     f"use --set {key}={value}")
    return sets, notes


@contextmanager
def _stage_progress() -> Iterator[Callable[[str, int, int, dict[str, float]], None]]:
    """One progress bar per stage, its description the stage and the latest loss terms
    (every term the registry lists that the run logs). It appears at the first logged
    step, so a run refused while checking its inputs prints only its error line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from medfuse.training.terms import progress_text

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    tasks: dict[str, TaskID] = {}

    def update(stage: str, step: int, total: int, row: dict[str, float]) -> None:
        if not tasks:
            progress.start()
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=step,
                        description=f"{stage} {progress_text(row)}")

    try:
        yield update
    finally:
        if tasks:
            progress.stop()


def _list_recipes() -> None:
    from medfuse.training.recipe import load_recipe, shipped_recipes

    for name in shipped_recipes():
        r = load_recipe(name)
        stages = f" ({len(r.stages)} stages)" if len(r.stages) > 1 else ""
        say(f"{name:10s} {r.description}{stages}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@handle_errors
def train(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option("--data", help="Training data: a dataset root with <TASK>/{train,val}/ (the atlas layout), or what batch reads: PNG or NIfTI/DICOM volume pairs in MRI/ + CT|PET|SPECT/ folders, or a pairs.csv (a share of the pairs is held out for validation). --resume remembers it.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run folder: recipe.toml, stages/ (logs, checkpoints), weights.pt, summary.json.")] = None,
    recipe: Annotated[str | None, typer.Option("--recipe", help="A shipped recipe (paper, v2, finetune, medfuse; see --list-recipes) or a recipe file (TOML). Default: paper.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a recipe key, e.g. --set losses.qabf=10; train.lr wins in every stage, stages.NAME.train.lr in one. Repeatable.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Same as --set train.steps=N (every stage).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Same as --set train.seed=N.")] = None,
    init: Annotated[str | None, typer.Option("--init", help="Start weights of the first stage: a medfuse weights file or 'bundled' (never the authors' checkpoint).")] = None,
    val_every: Annotated[int | None, typer.Option("--val-every", min=1, help="Steps between validations (validation.every).")] = None,
    checkpoint_every: Annotated[int | None, typer.Option("--checkpoint-every", min=1, help="Steps between checkpoints, the points a run resumes from (checkpoint.every).")] = None,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Time budget of this call; the run stops cleanly at it and --resume continues.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out (its own recipe) from its last checkpoint, in whatever stage.")] = False,
    export: Annotated[Path | None, typer.Option("--export", help="Also write the result (the last stage's best weights, recipe in its metadata) here.")] = None,
    force: ForceOpt = False,
    device: DeviceOpt = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads.")] = None,
    list_recipes: Annotated[bool, typer.Option("--list-recipes", help="List the shipped recipes and exit.")] = False,
    show_recipe: Annotated[bool, typer.Option("--show-recipe", help="Print the recipe with every override applied (TOML) and exit.")] = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train GeSeNet by a recipe: from random weights, or fine-tune on your own studies.

    A recipe (TOML) holds every setting and loss weight, in one or several stages.
    A run folder that holds a run is continued with --resume or started over with
    --force (which also replaces an existing --export file, never an input)."""
    from medfuse.errors import UsageError

    if list_recipes:
        _list_recipes()
        return
    resolve_device(device)  # checked before any input is read; the recipe keeps the text
    old_sets, notes = deprecated_sets(list(ctx.args))
    overrides = old_sets + list(sets or [])
    for key, value in (("train.steps", steps), ("train.seed", seed), ("train.init", init),
                       ("validation.every", val_every), ("checkpoint.every", checkpoint_every)):
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        _run(recipe, overrides, notes, data, out_dir, resume, force, export, device, threads,
             max_minutes, show_recipe)
    except UsageError as exc:
        if not notes:
            raise
        raise UsageError(name_old_flags(str(exc))) from None


def _run(recipe: str | None, overrides: list[str], notes: list[str], data: Path | None,
         out_dir: Path | None, resume: bool, force: bool, export: Path | None, device: str,
         threads: int | None, max_minutes: float | None, show_recipe: bool) -> None:
    """Resolve the recipe, then run it; the old flags' notes (stdout) come once the recipe
    is accepted, so a refused call prints its one error line alone."""
    from medfuse.errors import UsageError
    from medfuse.training.chain import RunOptions, resolve_recipe, run_recipe, saved_data

    if show_recipe:
        text = resolve_recipe(recipe or "paper", overrides).to_toml()
        for note in notes:
            say(note)
        typer.echo(text, nl=False)
        return
    if recipe is not None or not resume:
        resolve_recipe(recipe or "paper", overrides)  # refused here, before any note
    for note in notes:
        say(note)
    if data is None and resume and out_dir is not None:
        found = saved_data(out_dir)
        data = Path(found) if found else None
    if data is None or out_dir is None:
        raise UsageError("train needs --data and --out (or --list-recipes, --show-recipe)")
    opts = RunOptions(data=str(data), out=str(out_dir), device=device, threads=threads,
                      max_minutes=max_minutes, resume=resume, force=force,
                      export=str(export) if export else None)
    with _stage_progress() as update:
        opts.progress = update
        summary = run_recipe(recipe, opts, overrides)
    for st in summary["stages"]:
        say(f"stage {st['stage']}: step {st['steps']}; best {st['best_score']:.4f} at step "
            f"{st['best_step']}")
    if not summary["complete"]:
        say(f"stopped before the end (time budget); continue with: medfuse train --resume "
            f"--out {out_dir}")
        return
    say(f"result: {summary['weights']}")
    if "before" in summary:
        say(f"before/after table: {Path(out_dir) / 'before_after.md'}")
    if "export" in summary:
        say(f"exported the result to {summary['export']}")
