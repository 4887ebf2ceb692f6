"""``medfuse batch``: every pair of a folder or a pairs.csv, past bad pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medfuse.cli.app import app
from medfuse.cli.options import (
    AnonymizeOpt,
    AxisOpt,
    BitDepthOpt,
    ColormapOpt,
    DebugOpt,
    DeviceOpt,
    ForceOpt,
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
    show_warnings,
)


@app.command()
@handle_errors
def batch(
    in_dir: Annotated[Path, typer.Argument(help="Folder with MRI/ and CT/, PET/ or SPECT/ (or the base of --pairs paths).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the fused outputs.")],
    pairs: Annotated[Path | None, typer.Option("--pairs", help="CSV with columns mri, other[, out].")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Leave pairs whose output exists.")] = False,
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
    anonymize: AnonymizeOpt = False,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fuse every pair in a folder (images, DICOM series, NIfTI volumes); keeps going past
    bad pairs, reports them and exits 1 if any failed."""
    from medfuse.batch import BatchItem, BatchRequest, fuse_batch
    from medfuse.fusion import FuseRequest

    template = FuseRequest(
        Path(), Path(), Path(), volume_index=volume, axis=axis, window=window,
        mri_window=mri_window, colormap=colormap, modality=modality, resize=resize,
        stretch=stretch, bit_depth=bit_depth, anonymize=anonymize, force=force,
    )
    request = BatchRequest(in_dir, out_dir, pairs, fmt, skip_existing, batch_size, template)
    with progress_bar("fusing", None, not quiet) as update:

        def step(item: BatchItem, done: int, total: int) -> None:
            update(done, total)
            if verbose and item.plan:
                console.print(f"{escape(item.name)}: {escape(item.plan)}", soft_wrap=True)

        report = fuse_batch(request, engine_loader(weights, device, verbose, batch_size), step)
    for it in report.items:
        if not quiet:
            show_warnings([f"{it.name}: {w}" for w in it.warnings])
        if it.status == "failed":
            console.print(f"[red]failed[/] {escape(it.name)}: {escape(it.error)}", soft_wrap=True, emoji=False)
    if not quiet or report.failed:
        console.print(f"fused {report.count('fused')}, skipped {report.count('skipped')} "
                      f"(existing), failed {len(report.failed)}; outputs in {out_dir}",
                      markup=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)
