"""The Typer application object and the one place usage errors become one line.

Nothing here imports torch, so ``medfuse --help`` stays instant.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from medfuse import __version__
from medfuse.cli.options import printable

# The option parser's exception classes, found through a public one (typer may vendor click).
_MRO = {c.__name__: c for c in typer.BadParameter.__mro__}
_UsageError: type[Exception] = _MRO["UsageError"]


def _one_line(text: str) -> str:
    return printable(" ".join(text.split()))


#: Options that name a file though they are typed ``str`` (a path or a model name).
_PATH_LIKE_OPTIONS = {"--weights"}


def _is_path(param: Any) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    return bool(getattr(descriptor, "is_path", False)) or bool(
        _PATH_LIKE_OPTIONS.intersection(getattr(param, "opts", ())))


def refuse_empty_paths(command: Any) -> None:
    """Make an empty value of every path argument or option of ``command`` a usage error.

    Typer turns ``""`` into ``Path("")``, which is ``Path(".")``: ``medfuse fuse "$MRI" ...``
    with the variable unset would read the working folder (as a DICOM series, recursively).
    The check runs on the raw value, before that conversion, for every command at once."""
    for param in getattr(command, "params", ()):
        if not _is_path(param) or getattr(param, "_medfuse_nonempty", False):
            continue
        convert = param.process_value

        def process_value(ctx: Any, value: Any, _param: Any = param,
                          _convert: Any = convert) -> Any:
            values = value if isinstance(value, (list, tuple)) else (value,)
            if any(isinstance(v, str) and v == "" for v in values):
                raise typer.BadParameter("an empty path names no file (an unset shell "
                                         "variable?)", ctx=ctx, param=_param)
            return _convert(ctx, value)

        param.process_value = process_value
        param._medfuse_nonempty = True


class OneLineErrors(TyperGroup):
    """Typer's group, except that a usage error from the option parser (an unknown option,
    a bad value, a missing ``-o``) is one ``error:`` line on stderr with exit code 2, the
    promise every other error keeps, instead of a framed box; and an empty path argument is
    such an error (:func:`refuse_empty_paths`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            refuse_empty_paths(command)

    def add_command(self, cmd: Any, name: str | None = None) -> None:
        super().add_command(cmd, name)
        refuse_empty_paths(cmd)

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `medfuse`: show the help
                message = exc.format_message()  # type: ignore[attr-defined]
                if message.strip():  # typer prints the help itself; no stray blank line
                    print(message, file=sys.stderr)
                code = 2
            else:
                ctx = getattr(exc, "ctx", None)
                where = f"{ctx.command_path}: " if ctx is not None else ""
                message = exc.format_message()  # type: ignore[attr-defined]
                print(f"error: {_one_line(where + message)}", file=sys.stderr)
                code = 2
            if standalone_mode:
                sys.exit(code)
            raise SystemExit(code) from None
        except typer.Abort:
            print("interrupted", file=sys.stderr)
            if standalone_mode:
                sys.exit(130)
            raise SystemExit(130) from None
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return rv


app = typer.Typer(
    name="medfuse",
    cls=OneLineErrors,
    help="Fuse registered multimodal medical images (MRI with CT, PET or SPECT) with GeSeNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"medfuse {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Fuse registered multimodal medical images (MRI with CT, PET or SPECT) with GeSeNet."""
