"""medfuse: fuse registered multimodal medical images (MRI with CT, PET or SPECT) with GeSeNet.

The public API is imported lazily so that ``import medfuse`` (and ``medfuse --help``) does
not pay for importing torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "1.0.0"

_LAZY = {
    "fuse": ("medfuse.fusion", "fuse"),
    "fuse_files": ("medfuse.fusion", "fuse_files"),
    "fuse_volume": ("medfuse.volume_fusion", "fuse_volume"),
    "fuse_batch": ("medfuse.batch", "fuse_batch"),
    "FuseRequest": ("medfuse.fusion", "FuseRequest"),
    "BatchRequest": ("medfuse.batch", "BatchRequest"),
    "FusionResult": ("medfuse.fusion", "FusionResult"),
    "prepare_pair": ("medfuse.prepare.pair", "prepare_pair"),
    "region_masks": ("medfuse.masks", "region_masks"),
    "load_engine": ("medfuse.engine", "load_model"),
    "Engine": ("medfuse.engine", "Engine"),
    "read": ("medfuse.io.read", "read"),
    "read_image": ("medfuse.io.images", "read_image"),
    "write_image": ("medfuse.io.images", "write_image"),
    "Volume": ("medfuse.io.volume", "Volume"),
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
