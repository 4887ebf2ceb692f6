"""Run folders and checkpoints: weights-only loading with one-line refusals, plain RNG
state, and the run-folder output policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.training import crafted_checkpoint
from medfuse.errors import UsageError, WeightsError
from medfuse.training.checkpoint import (
    RUN_OUTPUTS,
    _torch_reason,
    claim_run_folder,
    clear_outputs,
    load_checkpoint,
    plain_rng_state,
    save_checkpoint,
)


def test_crafted_checkpoint_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    """The payload the refusal tests use is live: a full unpickle creates the marker."""
    marker = tmp_path / "ran"
    path = crafted_checkpoint(tmp_path / "x.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_code_with_one_plain_line(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = crafted_checkpoint(tmp_path / "last.pt", marker)
    with pytest.raises(WeightsError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert msg.startswith(f"cannot read checkpoint {path}: ")
    assert "Unsupported global: GLOBAL io.open" in msg and "weights_only=True" in msg
    assert "\n" not in msg and "\x1b" not in msg and "weights_only=False" not in msg
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt"):
        load_checkpoint(junk)
    with pytest.raises(UsageError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_torch_reason_strips_colour_codes_and_advice() -> None:
    exc = RuntimeError("Weights only load failed. \x1b[1mdo those steps\x1b[0m.\n\t(1) re-run "
                       "with weights_only=False\n\tWeightsUnpickler error: Unsupported global: "
                       "GLOBAL io.open was not an allowed global by default. Please use "
                       "`add_safe_globals`.\n\nCheck the documentation")
    assert _torch_reason(exc) == ("Unsupported global: GLOBAL io.open was not an allowed "
                                  "global by default")
    assert _torch_reason(RuntimeError("\x1b[31mbad\x1b[0m zip\narchive.")) == "bad zip archive"


def test_plain_rng_state_round_trips_weights_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rng.random(3)
    state = plain_rng_state(rng.bit_generator.state)
    mixed = plain_rng_state({"a": np.int64(3), "b": np.arange(2, dtype=np.uint32), "c": (1, 2)})
    assert mixed == {"a": 3, "b": [0, 1], "c": [1, 2]} and type(mixed["a"]) is int
    with pytest.raises(TypeError):
        plain_rng_state({"a": object()})
    path = save_checkpoint(tmp_path / "s.pt", {"sampler": state})
    back = np.random.default_rng(0)
    back.bit_generator.state = torch.load(path, weights_only=True)["sampler"]
    assert np.array_equal(back.random(5), rng.random(5))


def test_claim_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(UsageError, match="--resume: no checkpoint"):
        claim_run_folder(run, resume=True, force=False, inputs=[])
    claim_run_folder(run, resume=False, force=False, inputs=[])  # a new folder
    run.mkdir()
    claim_run_folder(run, resume=False, force=False, inputs=[])  # an empty one
    (run / "log.csv").write_text("step\n")
    with pytest.raises(UsageError, match="log.csv exists"):
        claim_run_folder(run, resume=False, force=False, inputs=[])
    (run / "last.pt").write_bytes(b"")
    with pytest.raises(UsageError, match="already holds a run; use --resume"):
        claim_run_folder(run, resume=False, force=False, inputs=[])
    claim_run_folder(run, resume=True, force=False, inputs=[])
    claim_run_folder(run, resume=False, force=True, inputs=[])
    with pytest.raises(UsageError, match="overwrite input"):
        claim_run_folder(run, resume=False, force=True, inputs=[run / "last.pt"])
    (run / "tb").mkdir()
    (run / "tb" / "events").write_text("x")
    (run / "mine.txt").write_text("x")
    clear_outputs(run, RUN_OUTPUTS)
    assert sorted(p.name for p in run.iterdir()) == ["mine.txt"]


def test_csv_log_keeps_the_header_of_an_existing_file(tmp_path: Path) -> None:
    """Resuming a run logged with fewer columns keeps its table well-formed."""
    import csv

    from medfuse.training.checkpoint import CsvLog

    path = tmp_path / "log.csv"
    CsvLog(path, ["step", "total"]).write({"step": 1, "total": 0.5})
    CsvLog(path, ["step", "total", "peaks"]).write({"step": 2, "total": 0.4, "peaks": 0.1})
    rows = list(csv.reader(path.open()))
    assert rows == [["step", "total"], ["1", "0.5"], ["2", "0.4"]]
    fresh = tmp_path / "new.csv"
    CsvLog(fresh, ["step", "peaks"]).write({"step": 1, "peaks": 0.1})
    assert list(csv.reader(fresh.open())) == [["step", "peaks"], ["1", "0.1"]]
