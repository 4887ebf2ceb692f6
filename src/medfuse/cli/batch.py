"""``medfuse batch``: every pair of a folder or a pairs.csv, past bad pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from medfuse.cli.app import app
from medfuse.cli.fuse import ReportOpt
from medfuse.cli.options import (
    GAMUT_MAP_DEFAULT,
    AnonymizeOpt,
    AxisOpt,
    BitDepthOpt,
    ColormapOpt,
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    GamutMapOpt,
    ModalityOpt,
    MriWindowOpt,
    QuietOpt,
    ResizeOpt,
    StretchOpt,
    VerboseOpt,
    VolumeOpt,
    WeightsOpt,
    WindowOpt,
    console,
    engine_loader,
    handle_errors,
    progress_bar,
    resolve_device,
    show_warnings,
)

ResumeOpt = Annotated[bool, typer.Option("--resume", help="Redo only pairs not completed by an earlier run into OUT_DIR (output or provenance record missing, an output not matching its record's sha256, or last attempt failed); cleans staged leftovers of a killed run.")]
PartsOpt = Annotated[int, typer.Option("--num-parts", min=1, help="Split the pairs into K parts (by a stable hash of each pair's name) ...")]
PartIdOpt = Annotated[int, typer.Option("--part-id", min=0, help="... and fuse part I (0 to K-1) only; each part writes its own ledger.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="Worker processes (local) or Ray actors (default: 1 local; Ray: one per GPU, else per CPU), each with its own engine.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="local (this machine) or ray (needs medfuse's optional extra named ray).")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: start a local Ray instance).")]
GpusOpt = Annotated[float | None, typer.Option("--gpus-per-worker", min=0.0, help="Ray: share of a GPU per actor (default: 1 when the cluster has GPUs).")]


def _engine_for(weights: str | None, device: Any, verbose: bool, batch_size: int,
                elsewhere: bool) -> Callable[[], Any]:
    """The CLI's loader for this process, or a picklable spec for worker processes and Ray
    actors (an engine injected by an embedding application travels as it is). ``device``:
    the resolved device, or None for Ray actors that each take the GPU Ray gives them."""
    from medfuse.batch.task import EngineSpec
    from medfuse.cli import options

    if not elsewhere:
        return engine_loader(weights, device, verbose, batch_size)
    if options._injected:
        return options._injected[-1]
    return EngineSpec(weights, device, batch_size)


@app.command()
@handle_errors
def batch(
    in_dir: Annotated[Path, typer.Argument(help="Folder with MRI/ and CT/, PET/ or SPECT/ (or the base of --pairs paths).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the fused outputs and the ledger (medfuse-ledger*.csv).")],
    pairs: Annotated[Path | None, typer.Option("--pairs", help="CSV with columns mri, other[, out].")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Leave pairs whose output exists.")] = False,
    resume: ResumeOpt = False,
    num_parts: PartsOpt = 1,
    part_id: PartIdOpt = 0,
    workers: WorkersOpt = None,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    gpus_per_worker: GpusOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Volume slices per network call.")] = 8,
    fmt: Annotated[str | None, typer.Option("--format", help="png, nifti or dicom for every pair (default: png for images, nifti for DICOM/NIfTI).")] = None,
    modality: ModalityOpt = None,
    resize: ResizeOpt = False,
    stretch: StretchOpt = False,
    bit_depth: BitDepthOpt = None,
    volume: VolumeOpt = None,
    axis: AxisOpt = None,
    window: WindowOpt = None,
    mri_window: MriWindowOpt = None,
    colormap: ColormapOpt = None,
    gamut_map: GamutMapOpt = GAMUT_MAP_DEFAULT,
    anonymize: AnonymizeOpt = False,
    report_dir: ReportOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fuse every pair in a folder (images, DICOM series, NIfTI volumes); keeps going past
    bad pairs, reports them and exits 1 if any failed. Every attempt is a ledger row."""
    from medfuse.batch import BatchItem, BatchRequest, fuse_batch
    from medfuse.fusion import FuseRequest

    dev = resolve_device(device)  # before any input is read, for every backend
    template = FuseRequest(
        Path(), Path(), Path(), volume_index=volume, axis=axis, window=window,
        mri_window=mri_window, colormap=colormap, gamut_map=gamut_map, modality=modality,
        resize=resize, stretch=stretch, bit_depth=bit_depth, anonymize=anonymize, force=force,
    )
    request = BatchRequest(in_dir, out_dir, pairs, fmt, skip_existing, batch_size, template,
                           resume, num_parts, part_id, workers or (None if backend == "ray" else 1),
                           backend.strip().lower(), address, gpus_per_worker)
    elsewhere = request.backend == "ray" or (request.workers or 1) > 1
    # Ray actors given "auto" each take the device Ray assigned them (a GPU share or the
    # CPU); an explicit device was checked above, on this machine, and travels as it is.
    ray_auto = request.backend == "ray" and (device or "auto").strip().lower() == "auto"
    loader = _engine_for(weights, None if ray_auto else dev, verbose, batch_size, elsewhere)
    with progress_bar("fusing", None, not quiet) as update:

        def step(item: BatchItem, done: int, total: int) -> None:
            update(done, total)
            if verbose and item.plan:
                console.print(f"{escape(item.name)}: {escape(item.plan)}", soft_wrap=True)

        if report_dir is None:
            report, index = fuse_batch(request, loader, step), None
        else:
            from medfuse.report import fuse_batch_with_report

            report, index = fuse_batch_with_report(request, report_dir, loader, step)
    if not quiet:
        show_warnings(report.notes)
    for it in report.items:
        if not quiet:
            show_warnings([f"{it.name}: {w}" for w in it.warnings])
        if it.status == "failed":
            console.print(f"[red]failed[/] {escape(it.name)}: {escape(it.error)}", soft_wrap=True, emoji=False)
    if not quiet or report.failed:
        console.print(f"fused {report.count('fused')}, skipped {report.count('skipped')} "
                      f"({'done' if resume else 'existing'}), failed {len(report.failed)}; "
                      f"outputs in {out_dir}", markup=False, soft_wrap=True)
    if index is not None and not quiet:
        console.print(f"report: {index}", markup=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)
