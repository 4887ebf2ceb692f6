"""Training option values checked before any data is read (one usage line naming the
option). A module of its own so that the trainer and the semantic pre-training both use it
without importing each other."""

from __future__ import annotations

import math

from medfuse.errors import UsageError


def check_number(option: str, value: float | None, *, low: float | None = None,
                 low_open: bool = False, allow_none: bool = True) -> None:
    """One setting's value: finite and at or above ``low`` (above it with ``low_open``);
    a usage error naming the setting otherwise, before any data is read."""
    if value is None:
        if allow_none:
            return
        raise UsageError(f"{option}: a value is needed")
    if not math.isfinite(value):
        raise UsageError(f"{option} {value}: must be a finite number")
    if low is not None and (value <= low if low_open else value < low):
        raise UsageError(f"{option} {value:g}: must be {'above' if low_open else 'at least'} {low:g}")


__all__ = ["check_number"]
