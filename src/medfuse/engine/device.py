"""Choosing the torch device from a user's ``--device`` text, checked before any work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medfuse.errors import UsageError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def select_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Validate ``auto|cpu|cuda|cuda:N`` up front and return the torch device; a
    ``torch.device`` (one an entry point resolved already) is returned as it is.

    Why up front: a bad device found after reading and preparing a volume wastes the
    user's time and leaves half-written outputs; a UsageError here costs nothing, so every
    command resolves ``--device`` before it reads any input. ``auto`` (or None/empty) is
    CUDA when available, else CPU.
    """
    import torch

    if isinstance(spec, torch.device):
        return spec
    if spec is not None and not isinstance(spec, str):
        raise UsageError(f"--device {spec!r}: expected text ({DEVICE_CHOICES}), got {type(spec).__name__}")
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: CUDA is not available on this machine (use cpu or auto)")
        index = spec.partition(":")[2]
        if spec.startswith("cuda:"):
            count = torch.cuda.device_count()
            if not index.isdigit() or int(index) >= count:
                raise UsageError(f"--device {spec}: no such GPU ({count} visible)")
        return torch.device(spec)
    raise UsageError(f"--device {spec!r}: expected {DEVICE_CHOICES}")
