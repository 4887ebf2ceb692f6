"""Opt-in process tuning for entry points (the ``medfuse`` CLI, the benchmarks).

Why opt-in: these settings are process-wide (environment, the C allocator, torch's thread
pool), so a library call such as :func:`~medfuse.engine.load_model` must not make them
behind its caller's back; an entry point owns its process and can. Measured effects are in
docs/lab/performance.md: passive OpenMP waiting kept inference 1.6-2.5x faster on a machine
shared with other work, and the allocator tuning up to 1.8x faster for 1024x1024 pairs.

This module imports neither torch nor NumPy unless ``threads`` is given, so the CLI can
call :func:`tune_process` before torch loads (which OpenMP settings require).
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

#: Set to ``0`` to leave glibc malloc at its defaults even when tuning is asked for.
MALLOC_TUNING_ENV = "MEDFUSE_MALLOC_TUNING"
OMP_WAIT_ENV = "OMP_WAIT_POLICY"

_ALLOCATOR_TUNED: bool | None = None


@dataclass(frozen=True)
class ProcessTuning:
    """What :func:`tune_process` left in effect, for logs and benchmark records."""

    omp_wait_policy: str | None
    allocator_tuned: bool
    threads: int | None


def tune_allocator() -> bool:
    """Keep large freed blocks inside the process (glibc only); True if in effect.

    Why: glibc serves every allocation of 32 MiB or more (a 128-channel 256x256 float
    tensor, every 32-channel tensor from 512x512 up) with a fresh ``mmap`` and returns it
    on free, so each forward pass page-faults through all its large activations again.
    Measured on the 2-core benchmark machine under load, that doubled the time of a
    512x512 pair. With ``mmap`` off for the heap and a high trim threshold, freed
    activations are reused by the next pass. The cost is that the process keeps up to
    its peak heap (not more), which the peak-RSS figures already include.

    Process-wide and idempotent; ``MEDFUSE_MALLOC_TUNING=0`` leaves malloc alone.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is not None:
        return _ALLOCATOR_TUNED
    _ALLOCATOR_TUNED = False
    if os.environ.get(MALLOC_TUNING_ENV, "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (not musl)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    _ALLOCATOR_TUNED = bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))
    return _ALLOCATOR_TUNED


def allocator_tuned() -> bool:
    """Whether :func:`tune_allocator` has put the tuning in effect in this process."""
    return bool(_ALLOCATOR_TUNED)


def tune_process(
    threads: int | None = None,
    *,
    omp_wait_policy: str | None = "PASSIVE",
    allocator: bool = True,
) -> ProcessTuning:
    """Apply medfuse's measured process settings; call once, early, from an entry point.

    ``omp_wait_policy``: set as ``OMP_WAIT_POLICY`` unless the environment already has
    one (the user's choice wins); it only takes effect if torch has not been imported
    yet, since OpenMP reads it when it loads. None leaves it alone. ``allocator``: apply
    :func:`tune_allocator`. ``threads``: torch's intra-op thread count (imports torch).
    """
    if omp_wait_policy is not None:
        os.environ.setdefault(OMP_WAIT_ENV, omp_wait_policy.upper())
    tuned = tune_allocator() if allocator else allocator_tuned()
    set_threads = None
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
        set_threads = torch.get_num_threads()
    return ProcessTuning(os.environ.get(OMP_WAIT_ENV), tuned, set_threads)
