"""``medfuse demo`` and ``medfuse info``."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Annotated

import typer

from medfuse.cli.app import app
from medfuse.cli.options import (
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    QuietOpt,
    VerboseOpt,
    WeightsOpt,
    engine_loader,
    handle_errors,
    out,
    say,
)


@app.command()
@handle_errors
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo files.")] = Path("medfuse-demo"),
    study: Annotated[str | None, typer.Option(
        "--study", help="Instead of the phantom: generate a 2 mm MRI + pet|spect|ct study "
        "(DICOM and NIfTI, with lesions) and fuse it.")] = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fuse a built-in synthetic MRI/PET brain phantom (or, with --study, a generated
    study) and say where the result is."""
    if study is not None:
        from medfuse.demo import run_study_demo

        files, device_name, made = run_study_demo(output, study.strip().lower(),
                                                  engine_loader(weights, device, verbose), force)
        if verbose:
            say(made.describe(), quiet)
        say(f"generated an MRI + {made.kind.upper()} study in {made.directory.resolve()}", quiet)
        say(f"fused it on {device_name}: " + ", ".join(str(f.resolve()) for f in files), quiet)
        return
    from medfuse.demo import run_demo

    fused, device_name = run_demo(output, engine_loader(weights, device, verbose), force)
    say(f"fused the built-in MRI/PET phantom on {device_name}: {fused.resolve()}", quiet)


@app.command()
@handle_errors
def info(
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Versions, the device medfuse would use, the weights it would load, and your models."""
    import torch

    from medfuse import __version__
    from medfuse.engine import resolve_weights, select_device, sha256_of, user_models
    from medfuse.errors import MedfuseError

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
        if path.with_name("MODEL_CARD.md").is_file():
            rows.append(("model card", str(path.with_name("MODEL_CARD.md"))))
    except MedfuseError as exc:
        rows.append(("weights", f"none ({exc})"))
    rows += [(f"model {name}", str(p)) for name, p in user_models()]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        out.print(f"{k:<{width}}  {v}", soft_wrap=True, markup=False)
