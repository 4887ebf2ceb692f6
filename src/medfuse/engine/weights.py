"""Which weights file to load, and reading it safely.

Resolution (``--weights`` / :func:`resolve_weights`): an existing path, else a bare model
name from the per-user models folder, else ``$MEDFUSE_WEIGHTS`` when nothing was given,
else the weights bundled with medfuse. Reading never unpickles arbitrary objects, and a
file is accepted only if it is a complete, finite GeSeNet state dict: a wrong file is
refused here with one line that names it, not later with NaN images or a traceback.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medfuse.errors import UsageError, WeightsError

if TYPE_CHECKING:
    from torch import nn

WEIGHTS_ENV = "MEDFUSE_WEIGHTS"
#: Overrides the per-user models folder (tests and shared installs point it elsewhere).
MODELS_ENV = "MEDFUSE_MODELS_DIR"
BUNDLED_NAME = "gesenet-medfuse.pt"
MODEL_SUFFIX = ".pt"

#: Terminal escape sequences (colour codes and the like), which some torch errors carry.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def bundled_weights_path() -> Path | None:
    """The weights shipped with medfuse, or None if this build has none.

    Wheels carry them inside the package (``medfuse/weights``); an editable checkout reads
    the top-level ``weights/`` folder directly.
    """
    package = Path(__file__).resolve().parents[1]  # src/medfuse or site-packages/medfuse
    for candidate in (
        package / "weights" / BUNDLED_NAME,
        package.parents[1] / "weights" / BUNDLED_NAME,
    ):
        if candidate.is_file():
            return candidate
    return None


def models_dir() -> Path:
    """The per-user models folder: ``$MEDFUSE_MODELS_DIR``, else
    ``<platformdirs user data dir>/models`` (``~/.local/share/medfuse/models`` on Linux).

    Why a folder of names: retrained or fine-tuned weights are used again and again, and
    ``--weights NAME`` is shorter and less error-prone than a path. It need not exist.
    """
    override = os.environ.get(MODELS_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("medfuse", appauthor=False)) / "models"


def user_models() -> list[tuple[str, Path]]:
    """(name, path) of every ``NAME.pt`` in :func:`models_dir`, sorted by name; empty when
    the folder does not exist."""
    folder = models_dir()
    if not folder.is_dir():
        return []
    return sorted(
        (p.stem, p) for p in folder.iterdir() if p.suffix == MODEL_SUFFIX and p.is_file()
    )


def is_model_name(text: str) -> bool:
    """Whether ``text`` reads as a model name rather than a path: no path separator, not
    ``~``-prefixed, and no suffix other than ``.pt``."""
    if not text or text in (".", "..") or text.startswith("~"):
        return False
    if any(sep and sep in text for sep in ("/", "\\", os.sep, os.altsep)):
        return False
    return Path(text).suffix in ("", MODEL_SUFFIX)


def _model_path(name: str) -> Path:
    stem = name[: -len(MODEL_SUFFIX)] if name.endswith(MODEL_SUFFIX) else name
    folder = models_dir()
    path = folder / f"{stem}{MODEL_SUFFIX}"
    if path.is_file():
        return path
    names = [n for n, _ in user_models()]
    available = ", ".join(names) if names else f"none (put NAME{MODEL_SUFFIX} files there)"
    raise UsageError(
        f"weights {name!r} not found: no such file, and no model of that name in {folder} "
        f"(available: {available})"
    )


def resolve_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """Pick the weights file.

    ``path`` (else ``$MEDFUSE_WEIGHTS``) is taken as a path when it exists; otherwise a
    bare name (``NAME`` or ``NAME.pt``, no folder) means ``<models_dir()>/NAME.pt``. With
    neither given, the bundled weights. Errors say which names are available.
    """
    if path is None or str(path) == "":
        path = os.environ.get(WEIGHTS_ENV) or None
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        if p.exists():
            raise UsageError(f"weights {p} is not a file")
        if is_model_name(str(path)):
            return _model_path(str(path))
        raise UsageError(f"weights file not found: {p}")
    bundled = bundled_weights_path()
    if bundled is None:
        raise WeightsError(
            "no bundled weights in this build of medfuse; pass --weights PATH or NAME "
            f"or set {WEIGHTS_ENV}"
        )
    return bundled


def _one_line(message: str) -> str:
    """A torch error message as one plain line: colour codes stripped, and the most
    telling line kept (torch's pickle errors open with advice to turn safety off)."""
    lines = [ln.strip() for ln in _ANSI.sub("", message).splitlines() if ln.strip()]
    for ln in lines:
        if "unsupported" in ln.lower():
            return ln
    return lines[0] if lines else ""


def read_state_dict(path: Path) -> dict[str, Any]:
    """Load a plain state dict, or one held under ``state_dict`` / ``model`` of a
    checkpoint dict, and check that every floating value is finite.

    ``weights_only=True``: a file that holds pickled Python objects is refused, not run
    (unpickling can execute arbitrary code). NaN or inf weights are refused because they
    would turn every fused image to NaN without any error.
    """
    import torch

    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of files it is about to refuse anyway.
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _one_line(str(exc))
        raise WeightsError(
            f"cannot read weights {path}: it holds Python objects, not only tensors, and "
            f"medfuse never unpickles those (they could run code)"
            + (f"; {detail}" if detail else "")
        ) from exc
    except Exception as exc:  # torch raises many types for a bad file
        detail = _one_line(str(exc)) or type(exc).__name__
        raise WeightsError(f"cannot read weights {path}: {detail}") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state dict (expected tensors by name)")
    # Strip the prefix DataParallel adds, a common reason for a "wrong" file.
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    check_finite(obj, path)
    return obj


def _show(items: list[str]) -> str:
    return ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")


def check_finite(state: dict[str, Any], source: Path | str) -> None:
    """Raise a WeightsError naming ``source`` and the tensors holding NaN or inf."""
    import torch

    bad = [
        k for k, v in state.items()
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise WeightsError(
            f"{source} holds non-finite weights (NaN or inf) in {len(bad)} tensors: {_show(bad)}"
        )


def check_keys(model: nn.Module, state: dict[str, Any], path: Path | str) -> None:
    """Raise one readable error naming missing, unexpected and mis-shaped entries."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {_show(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {_show(unexpected)}")
        if shapes:
            parts.append(f"wrong shape {len(shapes)}: {_show(shapes)}")
        raise WeightsError(f"{path} is not a GeSeNet state dict: " + "; ".join(parts))


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks: recorded with every output so a
    result can be traced to the exact weights."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
