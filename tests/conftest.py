"""Shared fixtures: where ../shared is (tests needing it skip cleanly without it), seeded
random weights so CLI tests never need bundled or reference weights, and a stand-in engine
(``mean_engine``) for tests about files rather than the network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# tests/ on the path so test modules share `helpers` (pytest runs in importlib mode).
sys.path.insert(0, str(Path(__file__).resolve().parent))


def shared_dir() -> Path | None:
    env = os.environ.get("MEDFUSE_SHARED")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared"]:
        if (cand / "reference").is_dir():
            return cand
    return None


@pytest.fixture
def shared() -> Path:
    d = shared_dir()
    if d is None:
        pytest.skip("../shared (reference files) not available")
    return d


@pytest.fixture
def reference_checkpoint(shared: Path) -> Path:
    p = shared / "reference" / "reference-checkpoint.pth"
    if not p.is_file():
        pytest.skip("reference checkpoint not available")
    return p


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, randomly initialised GeSeNet state dict saved to a temporary file.

    Tests that run the network use one torch thread: the test machines share two cores
    between several pytest processes, and torch's default of one thread per core then
    spends most of its time spinning (10x slower on the small images tests use)."""
    import torch

    from medfuse.model import GeSeNet

    torch.set_num_threads(1)

    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("weights") / "random.pt"
    torch.save(GeSeNet().state_dict(), path)
    return path


@pytest.fixture
def engine(random_weights: Path):  # type: ignore[no-untyped-def]
    from medfuse.engine import load_model

    return load_model(random_weights, "cpu")


@pytest.fixture
def mean_engine():  # type: ignore[no-untyped-def]
    """Commands run in this test use helpers.engines.MeanEngine instead of loading weights."""
    from helpers.engines import MeanEngine
    from medfuse.cli.options import injected_engine

    with injected_engine(MeanEngine):
        yield


@pytest.fixture
def pair_files(tmp_path: Path) -> tuple[Path, Path]:
    """A small phantom MRI (grey) and PET (colour) written as PNG files."""
    from medfuse.io.images import write_image
    from medfuse.phantom import brain_phantom

    mri, pet = brain_phantom(64)
    a = write_image(tmp_path / "mri.png", mri)
    b = write_image(tmp_path / "pet.png", pet)
    return a, b
