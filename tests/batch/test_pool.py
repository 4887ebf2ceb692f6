"""batch --workers: whole pairs in spawned worker processes, failures and deaths isolated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.cohort import ExitOnBlank, digest_tree, outputs_in
from helpers.engines import MeanEngine
from helpers.synth import image_task
from medfuse.batch import BatchRequest, fuse_batch
from medfuse.batch.pool import WORKER_DIED, check_picklable
from medfuse.batch.task import EngineSpec, available_cpus
from medfuse.errors import UsageError
from medfuse.io.images import write_image


def test_engine_spec_and_picklability() -> None:
    check_picklable(EngineSpec("w.pt", "cpu", 4), "--workers")
    check_picklable(MeanEngine, "--workers")
    with pytest.raises(UsageError, match="--workers needs an engine loader that can be pickled"):
        check_picklable(lambda: MeanEngine(), "--workers")
    assert available_cpus() >= 1


@pytest.mark.slow
def test_workers_match_serial_and_survive_a_dead_worker(tmp_path: Path) -> None:
    """Two workers write what the serial run writes; a pair whose worker process dies is
    that pair's failure alone, and a pair that fails normally is reported as usual."""
    src = image_task(tmp_path / "in", 5)
    write_image(src / "MRI" / "blank.png", np.zeros((32, 32), np.float32))
    pet = np.zeros((32, 32, 3), np.float32)
    pet[12:20, 12:20, 0] = 1.0  # not the MRI's pixels: one image twice is refused
    write_image(src / "PET" / "blank.png", pet)
    (src / "PET" / "p4.png").write_bytes(b"junk")
    serial = fuse_batch(BatchRequest(src, tmp_path / "serial"), MeanEngine)
    assert {it.name: it.status for it in serial.items}["blank"] == "fused"
    report = fuse_batch(BatchRequest(src, tmp_path / "pool", workers=2), ExitOnBlank)
    status = {it.name: (it.status, it.error) for it in report.items}
    assert status["blank"] == ("failed", WORKER_DIED)
    assert status["p4"][0] == "failed" and "p4.png" in status["p4"][1]
    assert [status[f"p{i}"][0] for i in range(4)] == ["fused"] * 4
    want = {k: v for k, v in digest_tree(tmp_path / "serial").items() if k != "blank.png"}
    assert digest_tree(tmp_path / "pool") == want
    assert "blank.png" not in outputs_in(tmp_path / "pool")
