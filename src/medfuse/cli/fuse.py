"""``medfuse fuse``: one pair, any supported formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medfuse.cli.app import app
from medfuse.cli.options import (
    GAMUT_MAP_DEFAULT,
    AllowNonMrOpt,
    AnonymizeOpt,
    AxisOpt,
    BitDepthOpt,
    ColormapOpt,
    DebugOpt,
    DeviceOpt,
    FloorOpt,
    ForceOpt,
    GamutMapOpt,
    ModalityOpt,
    MriWindowOpt,
    OutputFileOpt,
    QuietOpt,
    RegisterOpt,
    ResizeOpt,
    SaveTransformOpt,
    SeriesOpt,
    SliceOpt,
    SlicesOpt,
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
    say,
    show_warnings,
)

FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="Output format png, nifti or dicom (default: from the output suffix)."),
]
PreviewOpt = Annotated[
    Path | None,
    typer.Option("--preview", help="Also write a QC picture (PNG): a montage of fused slices "
                 "with slice numbers and orientation letters."),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option("--report", help="Also write an HTML quality-control report into this "
                 "folder (index.html; opens offline in any browser)."),
]
PreviewStyleOpt = Annotated[
    str,
    typer.Option("--preview-style", help="montage (default) or triptych: MRI | other | fused "
                 "rows for the same slices."),
]


@app.command()
@handle_errors
def fuse(
    mri: Annotated[Path, typer.Argument(help="MRI: image, DICOM file or series folder, or NIfTI (grey).")],
    other: Annotated[Path, typer.Argument(help="CT (grey), PET/SPECT (colour or grey): image, DICOM or NIfTI.")],
    output: OutputFileOpt,
    modality: ModalityOpt = None,
    resize: ResizeOpt = False,
    stretch: StretchOpt = False,
    bit_depth: BitDepthOpt = None,
    series: SeriesOpt = None,
    volume: VolumeOpt = None,
    axis: AxisOpt = None,
    slice_: SliceOpt = None,
    slices: SlicesOpt = None,
    window: WindowOpt = None,
    mri_window: MriWindowOpt = None,
    colormap: ColormapOpt = None,
    gamut_map: GamutMapOpt = GAMUT_MAP_DEFAULT,
    fmt: FormatOpt = None,
    preview: PreviewOpt = None,
    preview_style: PreviewStyleOpt = "montage",
    report_dir: ReportOpt = None,
    floor: FloorOpt = None,
    register: RegisterOpt = None,
    save_transform: SaveTransformOpt = None,
    allow_non_mr: AllowNonMrOpt = False,
    anonymize: AnonymizeOpt = False,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fuse one registered pair: two images, two slices, or two volumes (DICOM/NIfTI).

    A provenance record (JSON) is written beside the output."""
    from medfuse.fusion import FuseRequest, fuse_files

    dev = resolve_device(device)  # before any input is read
    request = FuseRequest(
        mri=mri, other=other, output=output, format=fmt, series=tuple(series or ()),
        volume_index=volume, axis=axis, slice_index=slice_, slices=slices, window=window,
        mri_window=mri_window, colormap=colormap, gamut_map=gamut_map, modality=modality,
        resize=resize, stretch=stretch, bit_depth=bit_depth, preview=preview,
        anonymize=anonymize, force=force, preview_style=preview_style, floor=floor,
        register=register, save_transform=save_transform, allow_non_mr=allow_non_mr,
    )
    page = None
    with progress_bar("fusing slices", None, not quiet) as update:
        loader = engine_loader(weights, dev, verbose)
        step = lambda done, total: total > 1 and update(done, total)  # noqa: E731
        if report_dir is None:
            report = fuse_files(request, loader, step)
        else:
            from medfuse.report import fuse_with_report

            report, page = fuse_with_report(request, report_dir, loader, step)
    if not quiet:
        show_warnings(report.warnings)
    if verbose:
        for line in [*report.plan.describe_lines(), *report.plan.info]:
            console.print(line, soft_wrap=True, markup=False)
        if report.record is not None:
            console.print(f"provenance record: {report.record}", soft_wrap=True, markup=False)
    outs = report.outputs
    if len(outs) > 3:
        say(f"{outs[0].parent}: {len(outs)} files ({outs[0].name} ... {outs[-1].name})", quiet)
    for p in outs if len(outs) <= 3 else []:
        say(str(p), quiet)
    if report.preview is not None:
        say(str(report.preview), quiet)
    if report.transform is not None:
        say(str(report.transform), quiet)
    if page is not None:
        say(str(page), quiet)
