"""Shared CLI plumbing: common options, console, and the one place errors become exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from medfuse.errors import MedfuseError

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)

WeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", "-w", help="GeSeNet weights (.pt/.pth); default: $MEDFUSE_WEIGHTS, else bundled."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs (never inputs).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Say what is being done.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
ModalityOpt = Annotated[
    str | None,
    typer.Option("--modality", "-m", help="Second image's modality: ct, pet or spect (default: inferred, grey=ct, colour=pet)."),
]


def fail(message: str, code: int = 1) -> None:
    """Print one error line on stderr and exit with ``code``."""
    console.print("error:", style="bold red", end=" ")
    console.print(message, soft_wrap=True, markup=False, emoji=False, highlight=False)
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


def load_engine(weights: Path | None, device: str, verbose: bool, batch_size: int = 8) -> Any:
    """Load the engine (imports torch) and, with -v, say which weights and device."""
    from medfuse.engine import load_model

    engine = load_model(weights, device, batch_size=batch_size)
    if verbose:
        console.print(f"device: {engine.device}; weights: {engine.weights_path}")
    return engine


def is_tty() -> bool:
    return sys.stderr.isatty()
