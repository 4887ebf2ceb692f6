"""``--device`` is resolved at the entry point, before any input is read, for every command
and every batch backend: a device this machine does not have is one usage line (exit 2)
and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.checks import files_under
from helpers.cli import run
from helpers.synth import image_task

#: A GPU no test machine has (skipped where one does).
ABSENT = "cuda:7"

pytestmark = pytest.mark.skipif(torch.cuda.device_count() > 7,
                                reason=f"this machine has a GPU {ABSENT}")


def _one_device_line(r) -> None:  # type: ignore[no-untyped-def]
    assert r.code == 2, r.text
    assert r.err_lines() == [r.err_lines()[0]] and r.err.startswith("error: --device cuda:7")


@pytest.mark.parametrize("backend", [["--workers", "2"], ["--backend", "ray", "--workers", "2"],
                                     []])
def test_batch_with_an_absent_gpu_is_one_usage_line(tmp_path: Path, backend: list[str]) -> None:
    """Before: the device text travelled to every worker and failed each pair (exit 1,
    one ledger row per pair); now the batch is refused before it reads a pair."""
    src = image_task(tmp_path / "in", 3)
    before = files_under(src)
    out = tmp_path / "out"
    r = run("batch", src, out, "--device", ABSENT, *backend)
    _one_device_line(r)
    assert not out.exists()
    assert files_under(src) == before


@pytest.mark.parametrize("command", [
    ["fuse", "MISSING", "MISSING", "-o", "OUT/f.png"],
    ["masks", "MISSING", "MISSING", "-o", "OUT"],
    ["eval", "MISSING", "--method", "average"],
    ["train", "--data", "MISSING", "--out", "OUT", "--steps", "1"],
    ["train-semantic", "--data", "MISSING", "--out", "OUT", "--steps", "1"],
    ["demo", "-o", "OUT/demo.png"],
])
def test_the_device_is_checked_before_any_input(tmp_path: Path, command: list[str]) -> None:
    """A missing input and an absent GPU: the device is named (it is checked first), and
    nothing is written."""
    args = [a.replace("MISSING", str(tmp_path / "nope")).replace("OUT", str(tmp_path / "out"))
            for a in command]
    r = run(*args, "--device", ABSENT)
    _one_device_line(r)
    assert not (tmp_path / "out").exists()


def test_a_resolved_device_travels_to_workers_as_a_value() -> None:
    """The spec a worker receives holds a torch.device (picklable), not the text."""
    import pickle

    from medfuse.batch.task import EngineSpec
    from medfuse.cli.options import resolve_device

    spec = EngineSpec(None, resolve_device("cpu"))
    back = pickle.loads(pickle.dumps(spec))
    assert back.device == torch.device("cpu") and isinstance(back.device, torch.device)
