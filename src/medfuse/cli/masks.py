"""``medfuse masks``: each branch's principal region for one slice of a pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medfuse.cli.app import app
from medfuse.cli.options import (
    AxisOpt,
    ColormapOpt,
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    ModalityOpt,
    MriWindowOpt,
    QuietOpt,
    ResizeOpt,
    SeriesOpt,
    SliceOpt,
    VerboseOpt,
    VolumeOpt,
    WeightsOpt,
    WindowOpt,
    engine_loader,
    handle_errors,
    resolve_device,
    say,
    show_warnings,
)


@app.command()
@handle_errors
def masks(
    mri: Annotated[Path, typer.Argument(help="MRI: image, DICOM or NIfTI (grey).")],
    other: Annotated[Path, typer.Argument(help="CT, PET or SPECT: image, DICOM or NIfTI.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for masks, overlays and masks.json.")],
    slice_: SliceOpt = None,
    modality: ModalityOpt = None,
    resize: ResizeOpt = False,
    series: SeriesOpt = None,
    volume: VolumeOpt = None,
    axis: AxisOpt = None,
    window: WindowOpt = None,
    mri_window: MriWindowOpt = None,
    colormap: ColormapOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write each branch's principal/redundant spatial mask, overlays and statistics
    (volumes: --slice N, default the middle slice)."""
    from medfuse.masks import region_masks

    dev = resolve_device(device)  # before any input is read
    report = region_masks(
        mri, other, output, engine_loader(weights, dev, verbose), modality=modality,
        resize=resize, slice_index=slice_, axis=axis, window=window, mri_window=mri_window,
        colormap=colormap, series=tuple(series or ()), volume_index=volume, force=force,
    )
    if not quiet:
        show_warnings(report.warnings)
    where = "" if report.slice_index is None else f" ({report.axis} slice {report.slice_index})"
    say(f"principal fraction: MRI {report.principal_fraction['mri']:.3f}, other "
        f"{report.principal_fraction['other']:.3f}{where}; wrote {output}", quiet)
