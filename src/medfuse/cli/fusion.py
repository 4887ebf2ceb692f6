"""``medfuse fuse``, ``batch``, ``masks``, ``demo`` and ``info``."""

from __future__ import annotations

import csv
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from medfuse.cli.app import app
from medfuse.cli.common import (
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    ModalityOpt,
    VerboseOpt,
    WeightsOpt,
    console,
    handle_errors,
    load_engine,
    out,
)
from medfuse.errors import MedfuseError, UsageError

StretchOpt = Annotated[
    bool,
    typer.Option(
        "--stretch/--no-stretch",
        help="Stretch the result min-to-max like the authors' script (default: off, "
        "so intensities stay comparable between images).",
    ),
]
BitDepthOpt = Annotated[int, typer.Option("--bit-depth", help="8 or 16 bits per channel.")]
ResizeOpt = Annotated[
    bool, typer.Option("--resize", help="Resample the second image onto the MRI grid if sizes differ.")
]

FUNCTIONAL_DIRS = ("CT", "PET", "SPECT")


def _check_bit_depth(bit_depth: int) -> None:
    if bit_depth not in (8, 16):
        raise UsageError(f"--bit-depth must be 8 or 16, got {bit_depth}")


def _check_out_path(path: Path, force: bool, inputs: tuple[Path, ...]) -> None:
    from medfuse.io.outputs import check_output
    from medfuse.io.images import IMAGE_SUFFIXES

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(
            f"cannot write {path.name}: output suffix must be one of {', '.join(IMAGE_SUFFIXES)}"
        )
    check_output(path, force, inputs)


SeriesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--series",
        help="Series Instance UID to read from a DICOM folder holding several (repeat it when "
        "both inputs share one folder: the MRI's first).",
    ),
]
VolumeOpt = Annotated[
    int | None, typer.Option("--volume", min=0, help="Volume of a 4D NIfTI input (from 0).")
]
AxisOpt = Annotated[
    str | None,
    typer.Option("--axis", help="Slice volumes along axial (default), coronal or sagittal (RAS)."),
]
SliceOpt = Annotated[
    int | None,
    typer.Option("--slice", help="Fuse only this slice (from 0, along --axis) into one image."),
]
SlicesOpt = Annotated[
    str | None,
    typer.Option("--slices", help="Slices to write for PNG/DICOM output: N, START:STOP, START:STOP:STEP (stop excluded) or a comma list of those."),
]
WindowOpt = Annotated[
    str | None,
    typer.Option(
        "--window",
        help="Window of the second image: CENTRE,WIDTH or brain, bone, soft-tissue (CT). "
        "Default: DICOM header, else CT brain / PET-SPECT min..p99.9.",
    ),
]
MriWindowOpt = Annotated[
    str | None,
    typer.Option("--mri-window", help="Window of the MRI: CENTRE,WIDTH (default: DICOM header, else p0.5..p99.5)."),
]
ColormapOpt = Annotated[
    str | None,
    typer.Option(
        "--colormap",
        help="Colour map for a grey PET/SPECT image: rainbow (PET default), sunset (SPECT "
        "default), hot, jet, gray, or none to fuse it as grey.",
    ),
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="Output format png, nifti or dicom (default: from the output suffix)."),
]
PreviewOpt = Annotated[
    Path | None, typer.Option("--preview", help="Also write a montage of the fused slices (PNG).")
]
AnonymizeOpt = Annotated[
    bool,
    typer.Option("--anonymize", help="DICOM output: blank patient names, IDs and dates; new study UID."),
]
FuseBitDepthOpt = Annotated[
    int | None,
    typer.Option("--bit-depth", help="8 or 16 bits per channel (default 8; 16 for grey results of DICOM/NIfTI)."),
]


def _ordinary_images(mri: Path, other: Path, output: Path, fmt: str | None, **medical: Any) -> bool:
    """True when the original image-only path applies: image inputs, image output, and no
    option that only concerns volumes or medical formats."""
    from medfuse.io.images import IMAGE_SUFFIXES
    from medfuse.io.volume import is_medical

    if is_medical(mri) or is_medical(other):
        return False
    if fmt is not None or output.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    return not any(v not in (None, False, [], ()) for v in medical.values())


class _Warnings:
    """Collect library warnings (registration, guessed modality) and show them as one
    ``warning:`` line each once the command has succeeded; a failing command shows only its
    error line."""

    def __enter__(self) -> _Warnings:
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self.caught = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        from rich.markup import escape

        self._ctx.__exit__(exc_type, *exc)
        if exc_type is None:
            for w in self.caught or []:
                console.print(f"[yellow]warning:[/] {escape(str(w.message))}", soft_wrap=True,
                              emoji=False)


def _fuse_medical(request: Any, weights: Path | None, device: str, verbose: bool) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from medfuse.prepare.plan import fuse_files

    with Progress(
        TextColumn("fusing slices"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    ) as bar, _Warnings():
        task = bar.add_task("fuse", total=None, visible=False)

        def progress(done: int, total: int) -> None:
            if total > 1:
                bar.update(task, completed=done, total=total, visible=True)

        report = fuse_files(request, lambda: load_engine(weights, device, verbose), progress)
    plan = report.plan
    if verbose:
        console.print(
            f"{'2D pair' if plan.two_d else f'{len(report.slices)} {plan.axis} slice(s)'}; "
            f"modality {plan.modality}; colour map {plan.colormap or 'none'}; "
            f"MRI window {plan.mri_window.describe()}; second window {plan.other_window.describe()}"
            + ("; second volume resampled onto the MRI grid (trilinear)" if plan.resampled else ""),
            soft_wrap=True,
        )
    outs = report.outputs
    if len(outs) > 3:
        out.print(f"{outs[0].parent}: {len(outs)} files ({outs[0].name} ... {outs[-1].name})",
                  markup=False, emoji=False)
    else:
        for p in outs:
            out.print(str(p), markup=False, emoji=False)
    if report.preview is not None:
        out.print(str(report.preview), markup=False, emoji=False)


@app.command()
@handle_errors
def fuse(
    mri: Annotated[Path, typer.Argument(help="MRI: image, DICOM file or series folder, or NIfTI (grey).")],
    other: Annotated[Path, typer.Argument(help="CT (grey), PET/SPECT (colour or grey): image, DICOM or NIfTI.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Fused output: .png (one per slice for volumes), .nii/.nii.gz, .dcm or a DICOM series folder.")],
    modality: ModalityOpt = None,
    resize: ResizeOpt = False,
    stretch: StretchOpt = False,
    bit_depth: FuseBitDepthOpt = None,
    series: SeriesOpt = None,
    volume: VolumeOpt = None,
    axis: AxisOpt = None,
    slice_: SliceOpt = None,
    slices: SlicesOpt = None,
    window: WindowOpt = None,
    mri_window: MriWindowOpt = None,
    colormap: ColormapOpt = None,
    fmt: FormatOpt = None,
    preview: PreviewOpt = None,
    anonymize: AnonymizeOpt = False,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fuse one registered pair: two images, two slices, or two volumes (DICOM/NIfTI)."""
    medical = dict(series=series, volume=volume, axis=axis, slice_=slice_, slices=slices,
                   window=window, mri_window=mri_window, preview=preview, anonymize=anonymize)
    if not _ordinary_images(mri, other, output, fmt, **medical):
        from medfuse.prepare.plan import FuseRequest

        request = FuseRequest(
            mri=mri, other=other, output=output, format=fmt, series=tuple(series or ()),
            volume_index=volume, axis=axis, slice_index=slice_, slices=slices, window=window,
            mri_window=mri_window, colormap=colormap, modality=modality, resize=resize,
            stretch=stretch, bit_depth=bit_depth, preview=preview, anonymize=anonymize,
            force=force,
        )
        _fuse_medical(request, weights, device, verbose)
        return

    from medfuse.io.images import read_image, write_image
    from medfuse.prepare.pair import fuse_prepared, prepare_pair

    bit_depth = 8 if bit_depth is None else bit_depth
    _check_bit_depth(bit_depth)
    _check_out_path(output, force, (mri, other))
    second = _pseudo_colour_image(read_image(other), modality, colormap)
    pair = prepare_pair(mri, second, modality=modality, resize=resize, name=mri.stem)
    engine = load_engine(weights, device, verbose)
    result = fuse_prepared([pair], engine, do_stretch=stretch)[0]
    write_image(output, result.image, bit_depth=bit_depth, force=force)
    if verbose:
        console.print(f"modality: {result.modality}; wrote {output}")
    else:
        out.print(str(output))


def _pseudo_colour_image(image: Any, modality: str | None, colormap: str | None) -> Any:
    """A grey PET/SPECT image (``--modality pet|spect``) through its colour map, as the
    atlas images were coloured; colour images and CT pass unchanged."""
    from medfuse.prepare.colormaps import resolve_colormap

    if image.is_colour:
        return image
    mod = modality.lower() if modality else None
    name = resolve_colormap(mod, colormap) if mod in ("pet", "spect") else None
    if name is None:
        return image
    from medfuse.prepare.colormaps import apply_colormap
    from medfuse.io.images import ImageData

    return ImageData(apply_colormap(image.pixels, name), image.path, image.bit_depth)


@dataclass
class BatchItem:
    name: str
    mri: Path
    other: Path
    out: Path


def _find_dir(root: Path, name: str) -> Path | None:
    for child in root.iterdir():
        if child.is_dir() and child.name.upper() == name:
            return child
    return None


#: What ``batch --format`` writes for each pair; ``auto``: PNG for ordinary images,
#: NIfTI for DICOM/NIfTI inputs.
BATCH_EXTENSIONS = {"png": ".png", "nifti": ".nii.gz", "dicom": ""}


def _stem(p: Path) -> str:
    """Name without its format suffix (``.nii.gz`` counts as one); folders keep their name."""
    from medfuse.io.images import IMAGE_SUFFIXES
    from medfuse.io.volume import DICOM_SUFFIXES, NIFTI_SUFFIXES

    name = p.name
    for suffix in NIFTI_SUFFIXES[::-1] + IMAGE_SUFFIXES + DICOM_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _inputs_by_stem(folder: Path) -> dict[str, Path]:
    """Images, NIfTI files, DICOM files and DICOM series sub-folders, by name stem."""
    from medfuse.io.images import IMAGE_SUFFIXES
    from medfuse.io.volume import DICOM_SUFFIXES, NIFTI_SUFFIXES

    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        name = p.name.lower()
        usable = p.is_dir() or (
            p.is_file()
            and (p.suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES or name.endswith(NIFTI_SUFFIXES))
        )
        if usable:
            found.setdefault(_stem(p), p)
    return found


_images_by_stem = _inputs_by_stem  # the name the core commands used


def _output_name(stem: str, mri: Path, ext: str | None) -> str:
    """``stem`` plus the extension for ``ext`` (None: by the MRI input's kind)."""
    if ext is None:
        from medfuse.io.images import IMAGE_SUFFIXES

        is_image = mri.is_file() and mri.suffix.lower() in IMAGE_SUFFIXES
        ext = ".png" if is_image else ".nii.gz"
    return f"{stem}{ext}"


def discover_pairs(in_dir: Path, out_dir: Path, ext: str | None = None) -> tuple[list[BatchItem], list[tuple[str, str]]]:
    """Pairs from ``IN_DIR/MRI`` and one of ``CT/PET/SPECT`` matched by stem, plus the
    (name, reason) of files that have no partner. ``ext`` None picks the output suffix by
    input kind (.png for images, .nii.gz for DICOM/NIfTI)."""
    if not in_dir.is_dir():
        raise UsageError(f"input folder not found: {in_dir}")
    mri_dir = _find_dir(in_dir, "MRI")
    others = [d for d in (_find_dir(in_dir, n) for n in FUNCTIONAL_DIRS) if d is not None]
    if mri_dir is None or not others:
        raise UsageError(f"{in_dir} must hold MRI/ and one of CT/, PET/, SPECT/ (or use --pairs)")
    if len(others) > 1:
        raise UsageError(
            f"{in_dir} holds several second-modality folders ({', '.join(d.name for d in others)}); "
            "give one task per folder or use --pairs"
        )
    mris, oths = _inputs_by_stem(mri_dir), _inputs_by_stem(others[0])
    if not mris and not oths:
        raise UsageError(f"no images in {mri_dir} or {others[0]}")
    items = [BatchItem(s, mris[s], oths[s], out_dir / _output_name(s, mris[s], ext))
             for s in mris if s in oths]
    unmatched = [(f"{mri_dir.name}/{mris[s].name}", f"no matching file in {others[0].name}/")
                 for s in mris if s not in oths]
    unmatched += [(f"{others[0].name}/{oths[s].name}", "no matching MRI")
                  for s in oths if s not in mris]
    return items, unmatched


def read_pairs_csv(csv_path: Path, base: Path, out_dir: Path, ext: str | None = None) -> list[BatchItem]:
    """Rows of mri, other[, out]; relative paths are taken from ``base``."""
    if not csv_path.is_file():
        raise UsageError(f"pairs file not found: {csv_path}")
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower() for c in (reader.fieldnames or [])}
        if not {"mri", "other"} <= cols:
            raise UsageError(f"{csv_path} needs columns mri, other[, out]; found {sorted(cols)}")
        items = []
        for row in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            m, o = base / row["mri"], base / row["other"]
            stem = _stem(Path(row["mri"]))
            name = row.get("out") or _output_name(stem, m, ext)
            items.append(BatchItem(stem, m, o, out_dir / name))
    if not items:
        raise UsageError(f"{csv_path} lists no pairs")
    return items


@app.command()
@handle_errors
def batch(
    in_dir: Annotated[Path, typer.Argument(help="Folder with MRI/ and CT/, PET/ or SPECT/ (or the base of --pairs paths).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the fused images.")],
    pairs: Annotated[Path | None, typer.Option("--pairs", help="CSV with columns mri, other[, out].")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Leave pairs whose output exists.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Same-sized pairs (or volume slices) per network call.")] = 8,
    modality: ModalityOpt = None,
    resize: ResizeOpt = False,
    stretch: StretchOpt = False,
    bit_depth: FuseBitDepthOpt = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="png, nifti or dicom for every pair (default: png for images, nifti for DICOM/NIfTI)."),
    ] = None,
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
    debug: DebugOpt = False,
) -> None:
    """Fuse every pair in a folder (images, DICOM series, NIfTI volumes); keeps going past
    bad pairs and reports them."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from medfuse.io.images import IMAGE_SUFFIXES, read_image, write_image
    from medfuse.prepare.pair import fuse_prepared, prepare_pair

    if bit_depth is not None:
        _check_bit_depth(bit_depth)
    ext: str | None = None
    if fmt is not None:
        key = fmt.strip().lower()
        if key not in BATCH_EXTENSIONS:
            raise UsageError(f"--format {fmt!r}: expected one of {', '.join(BATCH_EXTENSIONS)}")
        ext = BATCH_EXTENSIONS[key]
    if pairs is not None:
        items, failed = read_pairs_csv(pairs, in_dir, out_dir, ext), []
    else:
        items, failed = discover_pairs(in_dir, out_dir, ext)
    if not items:
        raise UsageError(f"no matching pairs in {in_dir}")
    inputs = {p.resolve() for it in items for p in (it.mri, it.other)}
    todo: list[BatchItem] = []
    skipped = 0
    for it in items:
        if it.out.resolve() in inputs:
            failed.append((it.name, f"output {it.out} would overwrite an input"))
        elif it.out.exists() and skip_existing:
            skipped += 1
        elif it.out.exists() and not force:
            failed.append((it.name, f"{it.out} exists (use --force or --skip-existing)"))
        else:
            todo.append(it)
    medical_opts = dict(volume=volume, axis=axis, window=window, mri_window=mri_window,
                        anonymize=anonymize)

    def ordinary(it: BatchItem) -> bool:
        try:
            return fmt is None and _ordinary_images(it.mri, it.other, it.out, None, **medical_opts)
        except MedfuseError:
            return it.mri.suffix.lower() in IMAGE_SUFFIXES  # let the image path report it
    plain = [it for it in todo if ordinary(it)]
    volumes = [it for it in todo if not ordinary(it)]
    engine = load_engine(weights, device, verbose, batch_size=batch_size) if todo else None
    done = 0
    chunk = max(1, batch_size)
    with Progress(
        TextColumn("fusing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not todo or not console.is_terminal,
    ) as progress, _Warnings():
        task = progress.add_task("fuse", total=len(todo))
        for start in range(0, len(plain), chunk):
            group = plain[start : start + chunk]
            ready = []
            for it in group:
                try:
                    second = it.other
                    if modality is not None and modality.lower() in ("pet", "spect"):
                        second = _pseudo_colour_image(read_image(it.other), modality, colormap)
                    ready.append((it, prepare_pair(it.mri, second, modality, resize, it.name)))
                except MedfuseError as exc:
                    failed.append((it.name, str(exc)))
                    progress.advance(task)
            if not ready:
                continue
            try:
                results = fuse_prepared([p for _, p in ready], engine, do_stretch=stretch)
            except (MedfuseError, RuntimeError, ValueError) as exc:
                failed.extend((it.name, f"fusion failed: {exc}") for it, _ in ready)
                progress.advance(task, len(ready))
                continue
            for (it, _), res in zip(ready, results):
                try:
                    write_image(it.out, res.image, bit_depth=bit_depth or 8, force=force)
                    done += 1
                except MedfuseError as exc:
                    failed.append((it.name, str(exc)))
                progress.advance(task)
        for it in volumes:
            from medfuse.prepare.plan import FuseRequest, fuse_files

            request = FuseRequest(
                mri=it.mri, other=it.other, output=it.out,
                format="dicom" if fmt is not None and fmt.strip().lower() == "dicom" else None,
                volume_index=volume, axis=axis, window=window, mri_window=mri_window,
                colormap=colormap, modality=modality, resize=resize, stretch=stretch,
                bit_depth=bit_depth, anonymize=anonymize, force=force,
            )
            try:
                fuse_files(request, lambda: engine)
                done += 1
            except MedfuseError as exc:
                failed.append((it.name, str(exc)))
            except (RuntimeError, ValueError) as exc:
                failed.append((it.name, f"fusion failed: {exc}"))
            progress.advance(task)
    table = Table(title="medfuse batch", show_header=True)
    table.add_column("result")
    table.add_column("count", justify="right")
    table.add_row("fused", str(done))
    table.add_row("skipped (existing)", str(skipped))
    table.add_row("failed", str(len(failed)), style="red" if failed else None)
    console.print(table)
    for name, reason in failed:
        from rich.markup import escape

        console.print(f"[red]failed[/] {escape(name)}: {escape(reason)}", soft_wrap=True, emoji=False)
    console.print(f"outputs in {out_dir}")
    if failed:
        raise typer.Exit(1)


def _overlay(base: Any, mask: Any) -> Any:
    """Tint principal regions red on the input (paper Fig. 11 style)."""
    import numpy as np

    rgb = base if base.ndim == 3 else np.repeat(base[..., None], 3, -1)
    tint = np.array([1.0, 0.15, 0.15], np.float32)
    m = mask[..., None].astype(np.float32) * 0.45
    return (rgb * (1 - m) + tint * m).astype(np.float32)


@app.command()
@handle_errors
def masks(
    mri: Annotated[Path, typer.Argument(help="MRI image (grey).")],
    other: Annotated[Path, typer.Argument(help="CT (grey) or PET/SPECT (colour) image.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for masks, overlays and masks.json.")],
    modality: ModalityOpt = None,
    resize: ResizeOpt = False,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write each branch's principal/redundant spatial mask, overlays and statistics."""
    from medfuse.io.outputs import atomic_output, check_output
    from medfuse.io.images import read_image, write_image
    from medfuse.prepare.pair import fuse_prepared, prepare_pair, resize_to

    if output.exists() and not output.is_dir():
        raise UsageError(f"{output} exists and is not a folder")
    names = ["mask_mri.png", "mask_functional.png", "overlay_mri.png", "overlay_functional.png", "masks.json"]
    for n in names:
        check_output(output / n, force, (mri, other))
    a, b = read_image(mri), read_image(other)
    pair = prepare_pair(a, b, modality=modality, resize=resize, name=mri.stem)
    engine = load_engine(weights, device, verbose)
    res = fuse_prepared([pair], engine, with_masks=True)[0]
    assert res.mask_mri is not None and res.mask_functional is not None
    other_px = b.pixels if b.shape == a.shape else resize_to(b.pixels, a.shape)
    write_image(output / "mask_mri.png", res.mask_mri, force=force)
    write_image(output / "mask_functional.png", res.mask_functional, force=force)
    write_image(output / "overlay_mri.png", _overlay(a.pixels, res.mask_mri), force=force)
    write_image(output / "overlay_functional.png", _overlay(other_px, res.mask_functional), force=force)
    counts = engine.model.sparse_channel_counts()
    report = {
        "mri": str(mri),
        "other": str(other),
        "modality": res.modality,
        "weights": str(engine.weights_path),
        "shape": list(a.shape),
        "mri_branch": {
            "principal_fraction": float(res.mask_mri.mean()),
            "sparse_channels_per_layer": counts["mri"],
        },
        "functional_branch": {
            "principal_fraction": float(res.mask_functional.mean()),
            "sparse_channels_per_layer": counts["functional"],
        },
        "channels_per_layer": 32,
    }
    with atomic_output(output / "masks.json", force=force) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    out.print(
        f"principal fraction: MRI {report['mri_branch']['principal_fraction']:.3f}, "
        f"functional {report['functional_branch']['principal_fraction']:.3f}; wrote {output}"
    )


@app.command()
@handle_errors
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo files.")] = Path("medfuse-demo"),
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fuse a built-in synthetic MRI/PET brain phantom and say where the result is."""
    from medfuse.io.outputs import check_output
    from medfuse.io.images import write_image
    from medfuse.phantom import brain_phantom
    from medfuse.prepare.pair import fuse_prepared, prepare_pair

    files = {n: output / n for n in ("mri.png", "pet.png", "fused.png")}
    for p in files.values():
        check_output(p, force)
    engine = load_engine(weights, device, verbose)
    mri_px, pet_px = brain_phantom()
    res = fuse_prepared([prepare_pair(mri_px, pet_px, modality="pet")], engine)[0]
    write_image(files["mri.png"], mri_px, force=force)
    write_image(files["pet.png"], pet_px, force=force)
    write_image(files["fused.png"], res.image, force=force)
    out.print(f"fused the built-in MRI/PET phantom on {engine.device}: {files['fused.png'].resolve()}")


@app.command()
@handle_errors
def info(
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Versions, the device medfuse would use, and the weights it would load."""
    import torch

    from medfuse import __version__
    from medfuse.engine import resolve_weights, select_device, sha256_of

    dev = select_device(device)
    rows: list[tuple[str, str]] = [
        ("medfuse", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("cuda available", str(torch.cuda.is_available())),
        ("device", str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")),
        ("threads", str(torch.get_num_threads())),
    ]
    try:
        path = resolve_weights(weights)
        rows += [("weights", str(path)), ("sha256", sha256_of(path))]
        card = path.with_name("MODEL_CARD.md")
        if card.is_file():
            rows.append(("model card", str(card)))
    except MedfuseError as exc:
        rows.append(("weights", f"none ({exc})"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        out.print(f"{k:<{width}}  {v}", soft_wrap=True)


__all__ = ["batch", "demo", "fuse", "info", "masks"]
