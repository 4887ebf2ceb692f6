"""The Typer application object and the one place usage errors become one line.

Nothing here imports torch, so ``medfuse --help`` stays instant.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from medfuse import __version__
from medfuse.cli.options import printable, tidy_help
from medfuse.errors import one_line

# The option parser's exception classes, found through a public one (typer may vendor click).
_MRO = {c.__name__: c for c in typer.BadParameter.__mro__}
_UsageError: type[Exception] = _MRO["UsageError"]


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


#: The order ``medfuse --help`` lists the commands in: the everyday ones first, in the order
#: a user meets them; any command not named here follows, in the order it was added.
COMMAND_ORDER = ("fuse", "batch", "masks", "eval", "train", "train-semantic", "demo", "info")

#: Words a user may put after a switch, meaning "on" or "off" (``--force true``).
_BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _switch_given_a_value(command: Any, args: list[str]) -> str | None:
    """The one-line explanation when ``args`` put a word like ``true`` after one of
    ``command``'s switches (``--force true``), which the parser reports only as an
    unexpected extra argument; None when that is not what happened."""
    switches = {opt: param for param in getattr(command, "params", ())
                if getattr(param, "is_flag", False) for opt in param.opts}
    for flag, word in zip(args, args[1:]):
        if flag in switches and word.lower() in _BOOLEAN_WORDS:
            off = switches[flag].secondary_opts
            hint = f" (and {off[0]} to turn it off)" if off else ", or leave it out"
            return (f"{flag} is a switch and takes no value (got {flag} {word}): write "
                    f"{flag} alone{hint}")
    return None


class OneLineErrors(TyperGroup):
    """Typer's group, except that a usage error from the option parser (an unknown option,
    a bad value, a missing ``-o``) is one ``error:`` line on stderr with exit code 2, the
    promise every other error keeps, instead of a framed box; an empty path argument is
    such an error (:func:`refuse_empty_paths`); help texts are tidied (:func:`tidy_help`);
    and the commands are listed in :data:`COMMAND_ORDER`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tidy_help(self)
        for command in self.commands.values():
            refuse_empty_paths(command)
            tidy_help(command)

    def add_command(self, cmd: Any, name: str | None = None) -> None:
        super().add_command(cmd, name)
        refuse_empty_paths(cmd)
        tidy_help(cmd)

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))

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
                if ctx is not None:
                    raw = list(sys.argv[1:] if args is None else args)
                    message = _switch_given_a_value(ctx.command, raw) or message
                print(f"error: {printable(one_line(where + message))}", file=sys.stderr)
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
