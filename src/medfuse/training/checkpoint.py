"""What a training run folder holds, and how it is claimed, written and read back.

Three promises, the same as every other medfuse output (``medfuse.io.outputs``):

* **nothing runs on load**: checkpoints, semantic weights and exported weights are read with
  ``torch.load(weights_only=True)``, which accepts tensors and plain containers only. A file
  whose unpickling would call a function (the classic ``__reduce__`` payload) is refused
  with one line naming it, before anything in it runs. Checkpoints therefore store only
  tensors, numbers, strings, lists, tuples and dicts: optimiser and scheduler state as
  torch gives them, the torch RNG state as its ByteTensor, the NumPy sampler state as
  :func:`plain_rng_state` makes it;
* **no silent overwrite**: a run folder that already holds a run is continued only with
  ``--resume`` and started over only with ``--force``; every file a run writes goes
  through :func:`medfuse.io.outputs.check_output`, so it can never be one of the run's
  inputs (data, semantic net, initial weights);
* **nothing half-written**: checkpoints, exports and summaries are written to a temporary
  beside the target and renamed (:func:`medfuse.io.outputs.atomic_output`), so a run
  killed while saving keeps its previous ``last.pt``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from medfuse.errors import UsageError, WeightsError
from medfuse.io.outputs import atomic_output, check_output

PathLike = str | os.PathLike[str]

#: Everything ``train`` writes in its run folder (name -> file or folder). ``--force``
#: removes exactly these before a new run; nothing else in the folder is touched.
RUN_OUTPUTS: dict[str, Literal["file", "folder"]] = {
    "last.pt": "file", "best.pt": "file", "config.json": "file", "log.csv": "file",
    "val.csv": "file", "summary.json": "file", "tb": "folder",
}
#: Everything ``train-semantic`` writes in its output folder.
SEMANTIC_OUTPUTS: dict[str, Literal["file", "folder"]] = {
    "semantic.pt": "file", "semantic.json": "file", "semantic_log.csv": "file",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _torch_reason(exc: BaseException) -> str:
    """The one informative clause of a torch.load failure, without terminal colour codes.

    torch's weights-only refusal is a paragraph (advice to reload with weights_only=False
    among it, which medfuse never takes); the useful part follows "WeightsUnpickler error:".
    """
    text = _ANSI.sub("", str(exc)).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
        text = re.split(r"\.\s+(?:Please|Check)\b", text, maxsplit=1)[0]
    text = " ".join(text.split())
    return text.rstrip(".") or type(exc).__name__


def load_checkpoint(path: PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, failures as one WeightsError line.

    Every file training reads goes through here (or the engine's ``read_state_dict``), so
    a crafted checkpoint cannot run code: the weights-only unpickler refuses any global it
    does not know before calling it.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} not found: {p}")
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of files it is about to refuse anyway.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        reason = _torch_reason(exc)
        if "Unsupported global" in reason:
            raise WeightsError(
                f"cannot read {what} {p}: it holds Python objects, not only tensors and plain "
                f"values, and medfuse never unpickles those (weights_only=True; they could run "
                f"code): {reason}"
            ) from None
        raise WeightsError(f"cannot read {what} {p}: {reason}") from None


def save_checkpoint(path: PathLike, obj: Mapping[str, Any]) -> Path:
    """Write ``obj`` atomically (temporary + rename); the caller has claimed ``path``."""
    import torch

    target = Path(path)
    with atomic_output(target, force=True) as tmp:
        torch.save(dict(obj), tmp)
    return target


def write_json(path: PathLike, obj: Mapping[str, Any]) -> Path:
    """A small JSON record (config, summary), written atomically like the checkpoints."""
    target = Path(path)
    with atomic_output(target, force=True) as tmp:
        tmp.write_text(json.dumps(dict(obj), indent=2) + "\n")
    return target


def plain_rng_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A NumPy bit-generator state as Python ints, strings, lists and dicts only.

    ``weights_only`` loading accepts those (big ints included) but no NumPy scalar or array,
    so a state with a NumPy integer in it could be saved but never resumed.
    """
    def plain(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if hasattr(x, "tolist"):  # NumPy scalar or array
            return x.tolist()
        if isinstance(x, (bool, int, float, str)) or x is None:
            return x
        raise TypeError(f"RNG state holds a {type(x).__name__}; expected numbers and strings")

    return plain(state)


def claim_outputs(
    folder: Path,
    outputs: Mapping[str, Literal["file", "folder"]],
    force: bool,
    inputs: Iterable[PathLike],
    label: str,
) -> None:
    """Refuse, through the one output policy, any of ``outputs`` in ``folder`` that exists
    without ``force`` or is (or would land inside) one of ``inputs``."""
    ins = tuple(inputs)
    for name, kind in outputs.items():
        check_output(folder / name, force, ins, kind=kind, label=label)


def clear_outputs(folder: Path, outputs: Mapping[str, Literal["file", "folder"]]) -> None:
    """Remove the named outputs of an earlier run (``--force``, after :func:`claim_outputs`),
    so that logs start fresh and no stale best checkpoint outlives the run it came from."""
    for name, kind in outputs.items():
        p = folder / name
        if kind == "folder" and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def claim_run_folder(out: Path, resume: bool, force: bool, inputs: Iterable[PathLike]) -> None:
    """The run folder policy of ``train``: continue a run only with ``resume``, start over
    an existing one only with ``force``, never write onto or into an input."""
    ins = tuple(p for p in inputs if p)
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            raise UsageError(f"--resume: no checkpoint at {last}")
        claim_outputs(out, RUN_OUTPUTS, True, ins, "run file")
        return
    if (last.exists() or last.is_symlink()) and not force:
        raise UsageError(f"{out} already holds a run; use --resume to continue it, "
                         "--force to start it over, or another --out")
    claim_outputs(out, RUN_OUTPUTS, force, ins, "run file")


class CsvLog:
    """Append-only CSV with a fixed header, written once. On resume the file's own header
    wins, so a run started by an older version (fewer loss columns) stays a well-formed
    table; values for columns it lacks are not logged."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns = path, columns
        if path.exists():
            with open(path, newline="") as fh:
                header = next(csv.reader(fh), None)
            if header:
                self.columns = header
                return
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerow(columns)

    def write(self, row: Mapping[str, Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([row.get(c, "") for c in self.columns])


def trim_log(path: Path, step: int) -> None:
    """Drop the rows of a run log past ``step`` (a resume from the checkpoint at ``step``
    redoes them), so an interrupted and resumed run logs each step once."""
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    col = rows[0].index("step") if "step" in rows[0] else None
    if col is None:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and r[col] and int(float(r[col])) <= step]
    if len(kept) == len(rows):
        return
    with atomic_output(path, force=True) as tmp, open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(kept)


__all__ = [
    "RUN_OUTPUTS",
    "SEMANTIC_OUTPUTS",
    "CsvLog",
    "claim_outputs",
    "claim_run_folder",
    "clear_outputs",
    "load_checkpoint",
    "plain_rng_state",
    "save_checkpoint",
    "trim_log",
    "write_json",
]
