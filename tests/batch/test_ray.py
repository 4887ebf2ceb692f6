"""batch --backend ray: actors placed by resources, failures and actor deaths isolated.
Ray runs (local instance, 2 CPUs) are slow (start-up) and skipped without the extra."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from helpers.cohort import ExitOnBlank, digest_tree
from helpers.engines import MeanEngine
from helpers.synth import image_task
from medfuse.batch import BatchRequest, fuse_batch
from medfuse.batch.ray import ACTOR_DIED, RAY_MISSING, import_ray, plan_actors
from medfuse.errors import UsageError
from medfuse.io.images import write_image

TESTS = Path(__file__).resolve().parents[1]


def test_actor_plan() -> None:
    assert plan_actors({"CPU": 8.0}, None, None) == (8, 0.0)
    assert plan_actors({"CPU": 64.0, "GPU": 4.0}, None, None) == (4, 1.0)
    assert plan_actors({"CPU": 64.0, "GPU": 4.0}, None, 0.5) == (8, 0.5)
    assert plan_actors({"CPU": 64.0, "GPU": 4.0}, 3, None) == (3, 1.0)
    assert plan_actors({"CPU": 64.0, "GPU": 4.0}, None, 0.0) == (64, 0.0)  # CPUs only
    with pytest.raises(UsageError, match="has no GPU"):
        plan_actors({"CPU": 8.0}, None, 1.0)


def test_missing_ray_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError) as err:
        import_ray()
    assert str(err.value) == RAY_MISSING
    src = image_task(tmp_path / "in", 1)
    with pytest.raises(UsageError, match="needs Ray"):
        fuse_batch(BatchRequest(src, tmp_path / "out", backend="ray"), MeanEngine)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ray_matches_serial_and_isolates_failures(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    src = image_task(tmp_path / "in", 5)
    write_image(src / "MRI" / "blank.png", np.zeros((32, 32), np.float32))
    pet = np.zeros((32, 32, 3), np.float32)
    pet[12:20, 12:20, 0] = 1.0  # not the MRI's pixels: one image twice is refused
    write_image(src / "PET" / "blank.png", pet)
    (src / "PET" / "p4.png").write_bytes(b"junk")
    fuse_batch(BatchRequest(src, tmp_path / "serial"), MeanEngine)
    path = os.pathsep.join([str(TESTS), str(TESTS.parent / "src")])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        report = fuse_batch(BatchRequest(src, tmp_path / "ray", backend="ray", workers=2),
                            ExitOnBlank)
        assert ray.is_initialized()  # an instance the caller started is left running
    finally:
        ray.shutdown()
    status = {it.name: (it.status, it.error) for it in report.items}
    assert status["blank"] == ("failed", ACTOR_DIED)
    assert status["p4"][0] == "failed" and "p4.png" in status["p4"][1]
    assert [status[f"p{i}"][0] for i in range(4)] == ["fused"] * 4
    want = {k: v for k, v in digest_tree(tmp_path / "serial").items() if k != "blank.png"}
    assert digest_tree(tmp_path / "ray") == want
