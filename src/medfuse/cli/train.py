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

    with _loss_progress(steps, "semantic") as update:
        summary = train_semantic(data, out_dir, steps, batch, patch, lr, seed, device,
                                 max_minutes, update, force=force)
    say(f"semantic net: {summary['weights']}; val pixel accuracy {summary['val_pixel_accuracy']:.3f}")


@app.command()
@handle_errors
def train(
    data: DataOpt,
    out_dir: OutOpt,
    semantic: Annotated[Path | None, typer.Option("--semantic", help="Frozen semantic net (from train-semantic); omit to train without L_S.")] = None,
    steps: Annotated[int, typer.Option(min=1)] = 20000,
    batch: Annotated[int, typer.Option(min=1)] = 4,
    patch: Annotated[int, typer.Option(min=8, help="Patch side (paper: 24).")] = 24,
    stride: Annotated[int, typer.Option(min=1, help="Patch grid stride (paper: 8).")] = 8,
    lr: Annotated[float, typer.Option()] = 1e-3,
    tau: Annotated[float, typer.Option(help="Gumbel-softmax temperature (paper: 0.5).")] = 0.5,
    tau_start: Annotated[float | None, typer.Option(help="Anneal the temperature from this value to --tau.")] = None,
    gamma: Annotated[float, typer.Option(help="Gradient loss weight (0 = ablate).")] = 10.0,
    alpha: Annotated[float, typer.Option(help="SSIM loss weight.")] = 0.5,
    beta: Annotated[float, typer.Option(help="Semantic loss weight.")] = 0.3,
    delta: Annotated[float, typer.Option(help="Auxiliary semantic head weight.")] = 0.5,
    mask_weight: Annotated[float, typer.Option("--mask-weight", help="Region-mask budget weight (0 = off).")] = 0.1,
    mask_target: Annotated[float, typer.Option("--mask-target", min=0.0, max=1.0, help="Principal fraction the spatial masks are held to.")] = 0.5,
    compute_target: Annotated[float | None, typer.Option("--compute-target", min=0.0, max=1.0, help="Share of region-mask body work to keep (channel x spatial masks); off by default.")] = None,
    mef_ssim: Annotated[float, typer.Option("--mef-ssim", min=0.0, help="Weight of 1 - MEF-SSIM (the toolbox2022 SSIM); medfuse's addition, 0 = off.")] = 0.0,
    qabf_weight: Annotated[float, typer.Option("--qabf-loss", min=0.0, help="Weight of 1 - Qabf (edge transfer with orientation); medfuse's addition, 0 = off.")] = 0.0,
    mask_support: Annotated[float, typer.Option("--mask-support", min=0.0, help="Weight of the support-aware region-mask prior (background redundant, --support-band share of the anatomy principal); medfuse's addition, 0 = off.")] = 0.0,
    support_band: Annotated[tuple[float, float], typer.Option("--support-band", help="LO HI: principal share of each image's anatomy the prior allows.")] = (0.3, 0.9),
    scd: Annotated[float, typer.Option("--scd", min=0.0, help="Weight of 2 - SCD (each source's contrast kept in F); v2 addition, 0 = off.")] = 0.0,
    intensity: Annotated[float, typer.Option("--intensity", min=0.0, help="Weight of the one-sided, brightness-weighted shortfall below max(A, B) (CT bone, PET/SPECT hot spots); v2 addition, 0 = off.")] = 0.0,
    contrast: Annotated[float, typer.Option("--contrast", min=0.0, help="Weight of the per-image SD shortfall below max(A, B)'s; v2 addition, 0 = off.")] = 0.0,
    peaks: Annotated[float, typer.Option("--peaks", min=0.0, help="Weight of the one-sided local-peak term: where the functional image stands above its surround (a hot lesion), F must too; 0 = off.")] = 0.0,
    peaks_coloured_only: Annotated[bool, typer.Option("--peaks-coloured-only", help="Apply --peaks only where the other image is shown in colour (PET/SPECT uptake, not CT); needs --display-luma.")] = False,
    peaks_studies_only: Annotated[bool, typer.Option("--peaks-studies-only", help="Apply --peaks only on the generated-study pairs (realistic bright PET/SPECT with lesions), not on the atlas pairs; needs --studies.")] = False,
    gamut: Annotated[float, typer.Option("--gamut", min=0.0, help="Weight of the colour the written RGB loses to clipping where the other image is coloured (fused luminance that leaves room for a hot lesion's red); needs --display-luma; 0 = off.")] = 0.0,
    gamut_studies_only: Annotated[bool, typer.Option("--gamut-studies-only", help="Apply --gamut only on the generated-study pairs, not on the atlas pairs; needs --studies.")] = False,
    anatomy: Annotated[float, typer.Option("--anatomy", min=0.0, help="Weight of 1 - the correlation of the fused and MRI edges on the generated-study pairs (where the MRI is the anatomy); needs --studies; 0 = off.")] = 0.0,
    lattice: Annotated[float, typer.Option("--lattice", min=0.0, help="Weight of the phase imbalance of the spatial-mask upsampler (kills the 2-pixel lattice); v2 addition, 0 = off.")] = 0.0,
    lattice_logits: Annotated[float, typer.Option("--lattice-logits", min=0.0, help="Weight of the 2x2-block deviation of the spatial-mask logits (the symptom; --lattice acts on the cause); 0 = off.")] = 0.0,
    mask_lr_scale: Annotated[float, typer.Option("--mask-lr-scale", min=0.0, help="Learning-rate factor of the channel-mask logits (a fine-tune that must flip channels to sparse).")] = 1.0,
    channel_sparsity: Annotated[float, typer.Option("--channel-sparsity", min=0.0, help="Weight of the hinge that keeps --sparse-target of each masked layer's channels sparse; v2 addition, 0 = off.")] = 0.0,
    sparse_target: Annotated[float, typer.Option("--sparse-target", min=0.0, max=1.0, help="Share of each masked layer's channels held sparse by --channel-sparsity.")] = 0.25,
    studies: Annotated[int, typer.Option("--studies", min=0, max=2000, help="Add this many generated-study slice pairs (PET and SPECT, random windows and colour maps; about 1.3 MB of memory each at 256x256) to the training split; 0 = none.")] = 0,
    recipe: Annotated[str | None, typer.Option("--recipe", help="Preset of loss weights and switches (v2: docs/training.md); options given explicitly win.")] = None,
    straight_through: Annotated[bool, typer.Option("--straight-through", help="Train with the inference masks (argmax, no Gumbel noise) and straight-through gradients.")] = False,
    anchor: Annotated[float, typer.Option("--anchor", min=0.0, help="Weight of how far the fused luminance moves from the --anchor-weights model's on the atlas pairs (all pairs without --studies): keeps the atlas results while the study terms act; 0 = off.")] = 0.0,
    anchor_weights: Annotated[Path | None, typer.Option("--anchor-weights", help="The model --anchor holds the output to (a previous medfuse weights file; never the authors' checkpoint).")] = None,
    display_luma: Annotated[bool, typer.Option("--display-luma", help="Losses score the luminance of the RGB that is written (chroma rule, clip to the gamut) rather than the network's own.")] = False,
    init: Annotated[Path | None, typer.Option("--init", help="Start from these weights (a previous medfuse run; never the authors' checkpoint).")] = None,
    criterion: Annotated[str, typer.Option("--criterion", help="Best-checkpoint rule, among validations with meaningful masks: val_qabf, val_qabf+ssim, val_v2 (+ 0.05 SCD) or last (the latest).")] = "val_qabf",
    no_content: Annotated[bool, typer.Option("--no-content", help="Ablate the content loss.")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    checkpoint_every: Annotated[int, typer.Option(min=1)] = 500,
    val_every: Annotated[int, typer.Option(min=1)] = 2000,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Stop cleanly after this budget.")] = None,
    fit_steps: Annotated[bool, typer.Option("--fit-steps", help="With --max-minutes: after a short warm-up, set --steps (and the validation interval) from the measured speed so the learning-rate schedule ends inside the budget.")] = False,
    stop_after: Annotated[int | None, typer.Option("--stop-after", help="End this invocation at this step, keeping the --steps schedule (resume later).")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    export: Annotated[Path | None, typer.Option("--export", help="Write the best weights as a plain state dict here.")] = None,
    force: ForceOpt = False,
    device: DeviceOpt = "auto",
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
    ctx: typer.Context = None,  # type: ignore[assignment]  # typer fills it in
) -> None:
    """Train GeSeNet from scratch on dataset-layout data (all tasks, one model).

    An --out folder that holds a run is continued with --resume or started over with
    --force; --force also replaces an existing --export file (never an input)."""
    from medfuse.training.losses import LossWeights
    from medfuse.training.trainer import TrainConfig, recipe_options
    from medfuse.training.trainer import train as run

    o = dict(ctx.params)  # every option by parameter name
    if recipe is not None:
        # by name: typer may bundle its own click, whose ParameterSource is another enum
        given = {k for k in o if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") != "DEFAULT"}
        o.update({k: v for k, v in recipe_options(recipe, init).items() if k not in given})
    sem = o["semantic"]
    cfg = TrainConfig(
        data=str(data), out=str(out_dir), steps=o["steps"], batch=o["batch"], patch=o["patch"],
        stride=o["stride"], lr=o["lr"], tau=o["tau"], tau_start=o["tau_start"], seed=o["seed"],
        device=device, checkpoint_every=o["checkpoint_every"], val_every=o["val_every"],
        max_minutes=o["max_minutes"], stop_after=o["stop_after"], fit_steps=o["fit_steps"],
        mask_lr_scale=o["mask_lr_scale"],
        semantic=str(sem) if sem else None, threads=o["threads"],
        weights=LossWeights(
            content=0.0 if o["no_content"] else 1.0, gradient=o["gamma"], ssim=o["alpha"],
            semantic=o["beta"] if sem else 0.0, semantic_aux=o["delta"], mask=o["mask_weight"],
            mask_target=o["mask_target"], compute_target=o["compute_target"],
            mef_ssim=o["mef_ssim"], qabf=o["qabf_weight"], mask_support=o["mask_support"],
            support_band=(float(o["support_band"][0]), float(o["support_band"][1])),
            scd=o["scd"], intensity=o["intensity"], contrast=o["contrast"], peaks=o["peaks"],
            peaks_coloured_only=o["peaks_coloured_only"],
            peaks_studies_only=o["peaks_studies_only"], gamut=o["gamut"],
            gamut_studies_only=o["gamut_studies_only"], anatomy=o["anatomy"], anchor=o["anchor"],
            lattice=o["lattice"],
            lattice_logits=o["lattice_logits"],
            channel_sparsity=o["channel_sparsity"], sparse_target=o["sparse_target"]),
        straight_through=o["straight_through"], criterion=o["criterion"],
        init=str(init) if init else None, display_luma=o["display_luma"], recipe=recipe,
        studies=o["studies"], anchor_weights=str(anchor_weights) if anchor_weights else None,
    )
    steps, criterion = cfg.steps, cfg.criterion
    with _loss_progress(steps, "train") as update:
        summary = run(cfg, resume=resume, progress=update, force=force, export=export)
    say(f"steps {summary['steps']}; best {criterion} {summary['best_score']:.4f} at step "
        f"{summary['best_step']}; run in {out_dir}")
    if "export" in summary:
        say(f"exported best weights to {summary['export']}")
