"""What every command shares: option declarations, the consoles, progress, warnings, and
the one place library errors become one line and an exit code."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from medfuse.errors import MedfuseError

F = TypeVar("F", bound=Callable[..., Any])


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on shown as a Python escape
    (ESC as ``\\x1b``, other C0/C1 controls, bidirectional overrides, undecodable bytes of a
    file name), so a hostile file name cannot clear the screen, recolour it or reorder what
    is shown; newlines and tabs are kept (messages collapse them where one line is meant)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


class SafeConsole(Console):
    """A rich console that shows non-printable characters escaped (:func:`printable`) in
    every string it prints, message or markup, whichever command prints it; rich itself
    keeps ESC. Styles rich adds for a terminal are not affected."""

    def render_str(self, text: str, **kwargs: Any) -> Any:
        return super().render_str(printable(text), **kwargs)


def help_text(text: str | None) -> str | None:
    """``text`` as the help renderer should get it: paragraphs kept, the line breaks of a
    docstring inside a paragraph joined, and Rich markup escaped.

    Why: Typer renders help through Rich markup, so ``pip install "medfuse[register]"``
    would lose ``[register]`` as an unknown style tag, and a docstring's own line breaks
    would show as ragged lines. Applied to every command and option at once
    (:func:`tidy_help`), so no help text needs to remember either."""
    if text is None:
        return None
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(escape(" ".join(p.split())) for p in paragraphs if p.strip())


def tidy_help(command: Any) -> None:
    """Prepare ``command``'s help once: :func:`help_text` on its own help and on each
    parameter's, and boolean switches shown as switches (no ``<bool>`` value column, which
    read as if ``--force`` wanted a value), the ``--help`` switch included."""
    if getattr(command, "_medfuse_help_tidied", False):
        return
    command.help = help_text(command.help)
    command.short_help = help_text(command.short_help)
    for param in getattr(command, "params", ()):
        if getattr(param, "help", None):
            param.help = help_text(param.help)
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    get_help_option = command.get_help_option

    def switch_help_option(ctx: Any) -> Any:
        option = get_help_option(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = switch_help_option
    command._medfuse_help_tidied = True


console = SafeConsole(stderr=True, highlight=False)
out = SafeConsole(highlight=False)

# -- options shared by several commands -----------------------------------------------------
WeightsOpt = Annotated[
    str | None,
    typer.Option("--weights", "-w", help="GeSeNet weights: a .pt/.pth file or the name of a "
                 "model in your models folder (medfuse info lists them); default: "
                 "$MEDFUSE_WEIGHTS, else the bundled weights."),
]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda or cuda:N.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs (never inputs).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Say what is being done and decided.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
ModalityOpt = Annotated[
    str | None,
    typer.Option("--modality", "-m", help="The other image's modality: ct, pet or spect "
                 "(default: from the DICOM header, else grey = ct, colour = pet)."),
]
OutputFileOpt = Annotated[
    Path,
    typer.Option("--output", "-o", help="Fused output: .png (one per slice for volumes), "
                 ".nii/.nii.gz, .dcm or a DICOM series folder."),
]
StretchOpt = Annotated[
    bool,
    typer.Option("--stretch/--no-stretch", help="Stretch the result min-to-max like the "
                 "authors' script (default: off, so intensities stay comparable)."),
]
ResizeOpt = Annotated[
    bool, typer.Option("--resize", help="Resample a 2D other image onto the MRI grid if sizes differ.")
]
BitDepthOpt = Annotated[
    int | None,
    typer.Option("--bit-depth", help="8 or 16 bits per channel (default 8; 16 for grey "
                 "results of DICOM/NIfTI)."),
]
SeriesOpt = Annotated[
    list[str] | None,
    typer.Option("--series", help="Series Instance UID to read from a DICOM folder holding "
                 "several (repeat it when both inputs share one folder: the MRI's first)."),
]
VolumeOpt = Annotated[int | None, typer.Option("--volume", min=0, help="Volume of a 4D NIfTI input (from 0).")]
AxisOpt = Annotated[
    str | None,
    typer.Option("--axis", help="Slice volumes along axial (default), coronal or sagittal."),
]
SliceOpt = Annotated[
    int | None,
    typer.Option("--slice", help="Only this slice (from 0, along --axis)."),
]
SlicesOpt = Annotated[
    str | None,
    typer.Option("--slices", help="Slices to write for PNG/DICOM output: N, START:STOP, "
                 "START:STOP:STEP (stop excluded) or a comma list of those."),
]
WindowOpt = Annotated[
    str | None,
    typer.Option("--window", help="Window of the other image: CENTRE,WIDTH or LOW:HIGH (in "
                 "SUV for a PET in SUV) or the CT presets brain, bone, soft-tissue. Default: PET in SUV "
                 "0-12, else the DICOM header, else CT brain / PET-SPECT 0 to a multiple of "
                 "the grey-matter level."),
]
MriWindowOpt = Annotated[
    str | None,
    typer.Option("--mri-window", help="Window of the MRI: CENTRE,WIDTH or LOW:HIGH (default: DICOM "
                 "header, else p0.5..p99.5)."),
]
ColormapOpt = Annotated[
    str | None,
    typer.Option("--colormap", help="Colour map for a grey PET/SPECT image: rainbow (PET "
                 "default), sunset (SPECT default), hot, jet, gray, the DICOM palettes pet, "
                 "hot-iron, hot-metal-blue, pet-20-step, or none to fuse it as grey. A hot "
                 "lesion keeps its contrast mostly through hue, so the hue maps (rainbow, "
                 "jet) keep it best."),
]
#: ``medfuse.colour.DEFAULT_GAMUT_MAP``, spelt out so that parsing the command line needs no
#: NumPy (a test holds the two equal).
GAMUT_MAP_DEFAULT = "fit"
GamutMapOpt = Annotated[
    str,
    typer.Option("--gamut-map", help="How a strong colour on bright anatomy, which RGB "
                 "cannot show, comes back: fit (default) lowers the luminance smoothly there "
                 "so the colour keeps its hue; clip clips each channel, as the paper's code "
                 "does (colours turn pale: red to pink, blue to white)."),
]
FloorOpt = Annotated[
    str | None,
    typer.Option("--floor", help="PET/SPECT volumes: values at or below this are not "
                 "coloured (the MRI shows); in the window's units (SUV for a PET in SUV), or "
                 "none. Default: 1/8 of the way up the window (SUV 1.5)."),
]
AllowNonMrOpt = Annotated[
    bool,
    typer.Option("--allow-non-mr", help="Fuse a first input whose DICOM Modality is not MR."),
]
RegisterOpt = Annotated[
    str | None,
    typer.Option("--register", help="Register the other volume onto the MRI first: none "
                 "(default), rigid or affine (Mattes mutual information; needs SimpleITK: "
                 'pip install "medfuse[register]").'),
]
SaveTransformOpt = Annotated[
    Path | None,
    typer.Option("--save-transform", help="With --register: write the ITK transform (.tfm; "
                 "fixed = MRI, moving = other)."),
]
AnonymizeOpt = Annotated[
    bool,
    typer.Option("--anonymize", help="DICOM output: blank patient names, IDs and dates; new study UID."),
]


def fail(message: str, code: int = 1) -> None:
    """Print one error line on stderr and exit with ``code``."""
    console.print("error:", style="bold red", end=" ")
    console.print(" ".join(message.split()), soft_wrap=True, markup=False, emoji=False,
                  highlight=False)
    raise typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn library errors into one line and an exit code; tracebacks only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except MedfuseError as exc:
            if debug:
                raise
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # anything unexpected: still one line unless --debug
            if debug:
                raise
            fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)

    return wrapper  # type: ignore[return-value]


_injected: list[Callable[[], Any]] = []


@contextmanager
def injected_engine(factory: Callable[[], Any]) -> Iterator[None]:
    """Run commands with the engine ``factory`` makes instead of loading weights: for tests
    and applications that embed the CLI with an engine of their own (anything with the
    Engine's ``fuse_luminance``)."""
    _injected.append(factory)
    try:
        yield
    finally:
        _injected.remove(factory)


def resolve_device(text: str | None) -> Any:
    """``--device`` as a ``torch.device``, checked against this machine: every command calls
    it first, before any input is read, so a device that cannot be had is one usage line and
    nothing is written; below the entry point the device is a value, never text."""
    from medfuse.engine.device import select_device

    return select_device(text)


def engine_loader(weights: str | None, device: Any, verbose: bool,
                  batch_size: int = 8) -> Callable[[], Any]:
    """A function that loads the engine (importing torch) onto ``device`` (resolved by
    :func:`resolve_device`) when first called and, with -v, says which weights and device;
    the library calls it only once inputs have been checked."""
    loaded: list[Any] = []

    def load() -> Any:
        if not loaded and _injected:
            loaded.append(_injected[-1]())
        if not loaded:
            from medfuse.engine import load_model

            engine = load_model(weights, device, batch_size=batch_size)
            if verbose:
                console.print(f"device: {engine.device}; weights: {engine.weights_path}",
                              markup=False)
            loaded.append(engine)
        return loaded[0]

    return load


def show_warnings(messages: list[str]) -> None:
    """One ``warning:`` line per message."""
    for m in messages:
        console.print(f"[yellow]warning:[/] {escape(' '.join(m.split()))}", soft_wrap=True,
                      emoji=False)


def say(text: str, quiet: bool = False) -> None:
    """A result line on stdout (paths the user asked for), unless --quiet."""
    if not quiet:
        out.print(text, markup=False, emoji=False, soft_wrap=True)


@contextmanager
def progress_bar(label: str, total: int | None, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A transient progress bar on a terminal (nothing when piped); yields
    ``update(done, total)``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not enabled or not console.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=total, visible=total is not None)

        def update(done: int, total: int | None = None) -> None:
            bar.update(task, completed=done, total=total, visible=True)

        yield update
