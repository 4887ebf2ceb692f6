"""Inference engine: device choice, weights, padding, tiling, batching, precision.

Modules: ``engine`` (the :class:`Engine`, :func:`load_model`, :func:`build_model`),
``network`` (the protocol the engine drives), ``weights`` (resolving, reading and checking
weights files; the per-user models folder), ``device`` (:func:`select_device`), ``tiling``
(padding and exact tiles), ``precision`` (the reduced-precision check) and ``runtime``
(opt-in process tuning for entry points; nothing else here touches process state).

Names are imported lazily, so that ``import medfuse.engine.runtime`` from the CLI entry
point (before torch loads) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medfuse.engine.device import select_device
    from medfuse.engine.engine import (
        CPU_MICRO_BATCH,
        MIN_SIZE,
        Engine,
        build_model,
        load_model,
    )
    from medfuse.engine.network import FusionNetwork, FusionPass, FusionResult
    from medfuse.engine.precision import HALF_TOLERANCE, reduced_precision_check
    from medfuse.engine.runtime import ProcessTuning, tune_process
    from medfuse.engine.tiling import MARGIN, TILE, TILE_THRESHOLD
    from medfuse.engine.weights import (
        BUNDLED_NAME,
        MODELS_ENV,
        WEIGHTS_ENV,
        bundled_weights_path,
        check_keys,
        models_dir,
        read_state_dict,
        resolve_weights,
        sha256_of,
        user_models,
    )

_LAZY = {
    "Engine": "engine",
    "build_model": "engine",
    "load_model": "engine",
    "CPU_MICRO_BATCH": "engine",
    "MIN_SIZE": "engine",
    "FusionNetwork": "network",
    "FusionPass": "network",
    "FusionResult": "network",
    "select_device": "device",
    "HALF_TOLERANCE": "precision",
    "reduced_precision_check": "precision",
    "ProcessTuning": "runtime",
    "tune_process": "runtime",
    "MARGIN": "tiling",
    "TILE": "tiling",
    "TILE_THRESHOLD": "tiling",
    "BUNDLED_NAME": "weights",
    "MODELS_ENV": "weights",
    "WEIGHTS_ENV": "weights",
    "bundled_weights_path": "weights",
    "check_keys": "weights",
    "models_dir": "weights",
    "read_state_dict": "weights",
    "resolve_weights": "weights",
    "sha256_of": "weights",
    "user_models": "weights",
}

__all__ = [
    "BUNDLED_NAME",
    "CPU_MICRO_BATCH",
    "Engine",
    "FusionNetwork",
    "FusionPass",
    "FusionResult",
    "HALF_TOLERANCE",
    "MARGIN",
    "MIN_SIZE",
    "MODELS_ENV",
    "ProcessTuning",
    "TILE",
    "TILE_THRESHOLD",
    "WEIGHTS_ENV",
    "build_model",
    "bundled_weights_path",
    "check_keys",
    "load_model",
    "models_dir",
    "read_state_dict",
    "reduced_precision_check",
    "resolve_weights",
    "select_device",
    "sha256_of",
    "tune_process",
    "user_models",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medfuse.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"medfuse.engine.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
