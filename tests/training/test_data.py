"""Training data: pairs found by the one dataset layout, in a fixed order, and a seeded
patch sampler whose state survives a weights-only checkpoint."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.training import phantom_dataset
from medfuse.errors import UsageError
from medfuse.io.images import write_image
from medfuse.phantom import brain_phantom
from medfuse.training.data import PatchSampler, load_split


def test_sampler_is_seeded(tmp_path: Path) -> None:
    data = load_split(phantom_dataset(tmp_path), "train")
    x1 = PatchSampler(data, 16, 8, seed=3).sample(4)
    x2 = PatchSampler(data, 16, 8, seed=3).sample(4)
    x3 = PatchSampler(data, 16, 8, seed=4).sample(4)
    assert all(np.array_equal(p, q) for p, q in zip(x1, x2))
    assert not np.array_equal(x1[0], x3[0])


def test_sampler_cuts_chroma_with_its_pair(tmp_path: Path) -> None:
    """Chroma patches are rotated and flipped with the luminance they belong to, and the
    chroma-carrying sampler draws the same patches as the plain one."""
    data = load_split(phantom_dataset(tmp_path), "train")
    assert data.chroma is not None and data.chroma.shape == (len(data), 2, 32, 32)
    data.chroma[:, 0] = data.other  # a chroma plane we can recognise after the transforms
    data.chroma[:, 1] = data.mri
    a, b, lab = PatchSampler(data, 16, 8, seed=7).sample(6)
    a2, b2, lab2, chroma = PatchSampler(data, 16, 8, seed=7).sample_with_chroma(6)
    assert np.array_equal(a, a2) and np.array_equal(b, b2) and np.array_equal(lab, lab2)
    assert np.array_equal(chroma[:, 0], b2) and np.array_equal(chroma[:, 1], a2)
    *_, idx = PatchSampler(data, 16, 8, seed=7).sample_with_source(6)
    assert idx.shape == (6,) and all(0 <= i < len(data) for i in idx)
    for k, i in enumerate(idx):  # each patch comes from the pair its index names
        assert np.isin(b2[k], data.other[i]).all()


def test_sampler_cuts_tissue_labels_with_their_pair(tmp_path: Path) -> None:
    """Tissue labels are rotated and flipped with their pair and draw no random numbers."""
    data = load_split(phantom_dataset(tmp_path), "train")
    a, b, lab, chroma, idx, tissue = PatchSampler(data, 16, 8, seed=7).sample_with_tissue(6)
    assert tissue is None  # no labels in the set, none cut
    data.tissue = np.round(data.mri * 255).astype(np.uint8)  # labels we can recognise
    a2, b2, _, _, idx2, tissue2 = PatchSampler(data, 16, 8, seed=7).sample_with_tissue(6)
    assert np.array_equal(a, a2) and np.array_equal(idx, idx2)
    assert tissue2 is not None and np.array_equal(tissue2, np.round(a2 * 255).astype(np.uint8))


def test_sampler_state_round_trips_a_weights_only_checkpoint(tmp_path: Path) -> None:
    """The state is plain Python (no NumPy types), loads with weights_only=True, and the
    restored sampler continues with exactly the patches the original draws next."""
    data = load_split(phantom_dataset(tmp_path, 2, 1), "train")
    s = PatchSampler(data, 16, 8, seed=11)
    s.sample(3)
    buf = io.BytesIO()
    torch.save({"sampler": s.state()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["sampler"]
    t = PatchSampler(data, 16, 8, seed=0)
    t.set_state(state)
    assert all(np.array_equal(p, q) for p, q in zip(s.sample(4), t.sample(4)))


def test_load_split_orders_by_task_then_name_and_takes_modality_from_the_folder(tmp_path: Path) -> None:
    """Task folders in name order, pairs in file-name order (what makes a seeded run
    repeatable); CT read as CT (grey, neutral chroma) and unpaired files skipped."""
    mri, pet = brain_phantom(32, seed=1)
    grey = pet.mean(axis=-1)
    for task, folder, img in (("MRI_SPECT", "SPECT", pet), ("MRI_CT", "CT", grey)):
        for name in ("b.png", "a.png", "10.png"):
            write_image(tmp_path / task / "train" / "MRI" / name, mri)
            write_image(tmp_path / task / "train" / folder / name, img)
    write_image(tmp_path / "MRI_CT" / "train" / "MRI" / "lonely.png", mri)
    data = load_split(tmp_path, "train")
    assert data.names == ["MRI_CT/10.png", "MRI_CT/a.png", "MRI_CT/b.png",
                          "MRI_SPECT/10.png", "MRI_SPECT/a.png", "MRI_SPECT/b.png"]
    assert data.tasks == ["MRI_CT"] * 3 + ["MRI_SPECT"] * 3
    assert data.chroma is not None and np.all(data.chroma[:3] == 0.5)
    assert not np.all(data.chroma[3:] == 0.5)
    only = load_split(tmp_path, "train", tasks=["MRI_SPECT"])
    assert only.tasks == ["MRI_SPECT"] * 3
    with pytest.raises(UsageError):
        load_split(tmp_path, "val")


@pytest.mark.slow
def test_harvard_val_split_order(shared: Path) -> None:
    """The shared atlas' val split: 59 pairs, sorted by task then file name (the order the
    bundled weights were trained with)."""
    root = shared / "data" / "harvard"
    if not root.is_dir():
        pytest.skip("../shared/data/harvard not available")
    val = load_split(root, "val")
    assert len(val) == 59
    key = [(n.split("/")[0], n.split("/")[1]) for n in val.names]
    assert key == sorted(key)
    assert val.mri.shape[1:] == (256, 256)
