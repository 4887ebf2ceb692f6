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
