"""Process tuning is opt-in: what tune_process applies, that the user's environment wins,
that it loads no torch before the CLI needs it, and the allocator opt-out. (That library
calls apply none of it is tested in test_engine.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from medfuse.engine import runtime

PROBE = """
import json, sys
from medfuse.engine.runtime import tune_process
t = tune_process()
print(json.dumps({"omp": t.omp_wait_policy, "allocator": t.allocator_tuned,
                  "threads": t.threads, "torch": "torch" in sys.modules,
                  "numpy": "numpy" in sys.modules}))
"""


def probe(**env: str) -> dict:  # type: ignore[type-arg]
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", runtime.MALLOC_TUNING_ENV)}
    res = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True,
                         text=True, check=True, timeout=60)
    return json.loads(res.stdout)


def test_tune_process_in_a_fresh_process() -> None:
    got = probe()
    assert got["omp"] == "PASSIVE" and got["threads"] is None
    assert got["torch"] is False and got["numpy"] is False  # safe before torch loads
    assert got["allocator"] is sys.platform.startswith("linux")


def test_user_environment_wins_and_allocator_opt_out() -> None:
    got = probe(OMP_WAIT_POLICY="ACTIVE", MEDFUSE_MALLOC_TUNING="0")
    assert got["omp"] == "ACTIVE" and got["allocator"] is False


def test_allocator_opt_out_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_ALLOCATOR_TUNED", None)
    monkeypatch.setenv(runtime.MALLOC_TUNING_ENV, "0")
    assert runtime.tune_allocator() is False and runtime.allocator_tuned() is False


def test_threads_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(runtime, "_ALLOCATOR_TUNED", None)
    before = torch.get_num_threads()
    try:
        got = runtime.tune_process(threads=1, omp_wait_policy=None, allocator=False)
        assert got == runtime.ProcessTuning(None, False, 1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert "OMP_WAIT_POLICY" not in os.environ and runtime._ALLOCATOR_TUNED is None
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        runtime.tune_process(threads=0, omp_wait_policy=None, allocator=False)
