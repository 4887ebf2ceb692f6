"""``medfuse demo`` and ``medfuse info``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
    resolve_device,
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
    dev = resolve_device(device)  # before anything is generated or read
    if study is not None:
        from medfuse.demo import run_study_demo

        files, device_name, made = run_study_demo(output, study.strip().lower(),
                                                  engine_loader(weights, dev, verbose), force)
        if verbose:
            say(made.describe(), quiet)
        say(f"generated an MRI + {made.kind.upper()} study in {made.directory.resolve()}", quiet)
        say(f"fused it on {device_name}: " + ", ".join(str(f.resolve()) for f in files), quiet)
        return
    from medfuse.demo import run_demo

    fused, device_name = run_demo(output, engine_loader(weights, dev, verbose), force)
    say(f"fused the built-in MRI/PET phantom on {device_name}: {fused.resolve()}", quiet)


@app.command()
@handle_errors
def info(
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (for scripts "
                                          "and bug reports) instead of rows.")] = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Versions, the torch build, the device medfuse would use, the weights it would load,
    the licence, and your models folder with the models in it."""
    from medfuse.installation import describe_installation

    facts = describe_installation(weights, device)
    if as_json:
        out.print(json.dumps(facts.as_dict(), indent=2), markup=False, soft_wrap=True)
        return
    for key, value in info_rows(facts):
        out.print(f"{key:<14}  {value}", soft_wrap=True, markup=False)


def info_rows(facts: Any) -> list[tuple[str, str]]:
    """``medfuse info``'s rows: the facts worded for a person."""
    build = f"CUDA {facts.torch_cuda} build" if facts.torch_cuda else "CPU-only build"
    if facts.device_error:
        device = f"none ({facts.device_error})"
    else:
        device = facts.device + (f" ({facts.device_name})" if facts.device_name else "")
    rows = [
        ("medfuse", facts.medfuse),
        ("python", facts.python),
        ("torch", f"{facts.torch} ({build})"),
        ("cuda available", str(facts.cuda_available)),
        ("device", device),
        ("threads", str(facts.threads)),
    ]
    if facts.weights:
        rows += [("weights", facts.weights), ("sha256", facts.sha256)]
        if facts.model_card:
            rows.append(("model card", facts.model_card))
    else:
        rows.append(("weights", f"none ({facts.weights_error})"))
    rows.append(("licence", f"{facts.licence} (medfuse and its bundled weights)"))
    count = len(facts.models)
    state = ("does not exist yet; put NAME.pt files there" if not facts.models_dir_exists
             else "empty; put NAME.pt files there" if not count
             else f"{count} model{'s' if count != 1 else ''}, for --weights NAME")
    rows.append(("models folder", f"{facts.models_dir} ({state})"))
    rows += [(f"model {name}", path) for name, path in facts.models.items()]
    return rows
