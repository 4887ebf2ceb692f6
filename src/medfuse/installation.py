"""What this installation of medfuse is: versions, the torch build, the device a command
would use, the weights it would load, the models folder and the licence.

Why a library function: ``medfuse info`` prints it for a person and, with ``--json``, for
a script or a bug report, and both must say the same thing. It answers on any machine:
a device or weights that cannot be had are reported as such, not raised, because "what
would happen here" is the question it exists to answer.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from typing import Any

#: The licence of medfuse and of the weights it bundles, when the package metadata (the
#: one source, ``pyproject.toml``) cannot be read: a source checkout run without installing.
_LICENCE_FALLBACK = "MIT"


@dataclass
class Installation:
    """One answer of :func:`describe_installation`; ``None`` means "not there"."""

    medfuse: str
    python: str
    torch: str
    #: The CUDA version torch was built for; None for a CPU-only build.
    torch_cuda: str | None
    cuda_available: bool
    #: What ``--device`` resolves to, or None when it cannot be had here (see device_error).
    device: str | None
    device_name: str | None
    device_error: str | None
    threads: int
    weights: str | None
    weights_error: str | None
    sha256: str | None
    model_card: str | None
    licence: str
    models_dir: str
    models_dir_exists: bool
    #: name -> path of every model in the models folder, sorted by name.
    models: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def licence() -> str:
    """The licence medfuse is distributed under, from its package metadata."""
    from importlib import metadata

    try:
        meta = metadata.metadata("medfuse")
    except metadata.PackageNotFoundError:
        return _LICENCE_FALLBACK
    return (meta.get("License-Expression") or meta.get("License") or _LICENCE_FALLBACK).strip()


def describe_installation(weights: str | None = None, device: str | None = "auto") -> Installation:
    """Describe this installation as a command given ``--weights weights --device device``
    would find it. A malformed ``device`` (``gpu7``) is still a UsageError, as in every
    command; a well-formed one this machine lacks (``cuda`` without a GPU) is reported in
    ``device_error``."""
    import torch

    from medfuse import __version__
    from medfuse.engine import models_dir, resolve_weights, select_device, sha256_of, user_models
    from medfuse.errors import MedfuseError, UsageError

    spec = (device or "auto").strip().lower()
    dev_text = dev_name = dev_error = None
    try:
        dev = select_device(spec)
        dev_text = str(dev)
        if dev.type == "cuda":
            dev_name = torch.cuda.get_device_name(dev)
    except UsageError as exc:
        if not (spec == "cuda" or spec.startswith("cuda:")):
            raise
        dev_error = str(exc)

    path_text = weights_error = sha = card = None
    try:
        path = resolve_weights(weights)
        path_text, sha = str(path), sha256_of(path)
        if path.with_name("MODEL_CARD.md").is_file():
            card = str(path.with_name("MODEL_CARD.md"))
    except MedfuseError as exc:
        weights_error = str(exc)

    folder = models_dir()
    return Installation(
        medfuse=__version__,
        python=platform.python_version(),
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        cuda_available=bool(torch.cuda.is_available()),
        device=dev_text,
        device_name=dev_name,
        device_error=dev_error,
        threads=torch.get_num_threads(),
        weights=path_text,
        weights_error=weights_error,
        sha256=sha,
        model_card=card,
        licence=licence(),
        models_dir=str(folder),
        models_dir_exists=folder.is_dir(),
        models={name: str(p) for name, p in user_models()},
    )
