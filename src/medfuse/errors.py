"""Typed errors. Library code raises these; only the CLI turns them into one line and an
exit code, so Python callers can catch precisely what went wrong."""

from __future__ import annotations


class MedfuseError(Exception):
    """Base class: a failure the user can act on. Exit code 1 in the CLI."""

    exit_code = 1


class UsageError(MedfuseError):
    """The command line itself is wrong: a missing path, a bad option value, an output that
    exists without ``--force``, an output suffix medfuse cannot write. Exit code 2."""

    exit_code = 2


class InputError(MedfuseError):
    """An input exists but cannot be used: corrupt or non-image file, colour MRI,
    mismatched sizes, NaN-only data."""


class WeightsError(MedfuseError):
    """No weights, an unreadable weights file, or one whose keys or shapes do not match."""


class OutputError(MedfuseError):
    """An output cannot be written (unwritable folder, disk full)."""


def one_line(value: object) -> str:
    """Text, or an exception, as one line: whitespace (newlines included) collapsed. An
    exception that is not medfuse's own is named by its type (``ValueError: ...``), since
    its message alone ("list index out of range") does not say what broke; one of ours is
    its message, already written for the user."""
    if isinstance(value, BaseException) and not isinstance(value, MedfuseError):
        text = " ".join(str(value).split()) or "no details"
        return f"{type(value).__name__}: {text}"
    return " ".join(str(value).split())
