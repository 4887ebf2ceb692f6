"""medfuse: fuse registered multimodal medical images (MRI with CT, PET or SPECT) with GeSeNet.

The public API is imported lazily so that ``import medfuse`` (and ``medfuse --help``) does
not pay for importing torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "fuse": ("medfuse.prepare.pair", "fuse"),
    "prepare_pair": ("medfuse.prepare.pair", "prepare_pair"),
    "FusionResult": ("medfuse.prepare.pair", "FusionResult"),
    "load_model": ("medfuse.engine", "load_model"),
    "Engine": ("medfuse.engine", "Engine"),
    "read_image": ("medfuse.io.images", "read_image"),
    "write_image": ("medfuse.io.images", "write_image"),
    "GeSeNet": ("medfuse.model", "GeSeNet"),
    "MedfuseError": ("medfuse.errors", "MedfuseError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'medfuse' has no attribute {name!r}")
