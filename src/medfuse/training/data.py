"""Training data: dataset-layout pairs, luminance conversion, and a seeded patch sampler.

Pairs are found by the one dataset layout (:func:`medfuse.io.layout.find_tasks`), the same
rules ``batch`` and ``eval`` use, so a folder that evaluates also trains. Colour sources go
through the same YCbCr split as inference (:func:`medfuse.prepare.pair.prepare_pair`), so
the network is trained on exactly the luminance it will see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medfuse.colour import TAU
from medfuse.errors import UsageError
from medfuse.training.labels import pseudo_labels

if TYPE_CHECKING:
    import torch


@dataclass
class PairSet:
    """Stacked pairs of one split: luminance images, pseudo-labels and where they came from."""

    mri: np.ndarray  # (N, H, W) float32
    other: np.ndarray  # (N, H, W) float32
    labels: np.ndarray  # (N, H, W) uint8
    tasks: list[str]
    names: list[str]
    #: (N, 2, H, W) float32 Cb, Cr of the second image (neutral 0.5 for grey ones): what
    #: the chroma rule will colour the fused luminance with, so losses and validation can
    #: score the RGB a user gets rather than the network's luminance.
    chroma: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)


def load_split(root: str | Path, split: str, tasks: Iterable[str] | None = None) -> PairSet:
    """Every image pair of ``split`` under ``root`` (``<TASK>/<split>/{MRI,CT|PET|SPECT}``,
    or one task folder), in task-name then file-name order.

    The order is part of a run's reproducibility: the seeded sampler draws pairs by index.
    ``tasks`` keeps only the named task folders (default: all of them); each pair's modality
    is its folder's (``medfuse.vocabulary``), never guessed from the pixels.
    """
    from medfuse.io.layout import find_tasks
    from medfuse.prepare.pair import prepare_pair

    wanted = None if tasks is None else set(tasks)
    found = sorted((t for t in find_tasks(root, split, images_only=True)
                    if wanted is None or t.name in wanted), key=lambda t: t.name)
    mri, other, labels, task_of, names, chroma_of = [], [], [], [], [], []
    for task in found:
        for pair in sorted(task.pairs, key=lambda p: p.mri.name):
            prepared = prepare_pair(pair.mri, pair.other, modality=task.modality, name=pair.name)
            chroma = prepared.chroma[0] if prepared.chroma else None
            neutral = np.full_like(prepared.other_y, TAU)
            mri.append(prepared.mri_y)
            other.append(prepared.other_y)
            labels.append(pseudo_labels(prepared.mri_y, prepared.other_y, task.modality, chroma))
            chroma_of.append(np.stack(chroma if chroma else (neutral, neutral)))
            task_of.append(task.name)
            names.append(f"{task.name}/{pair.mri.name}")
    if not names:
        raise UsageError(f"no {split} pairs under {root} (expected <TASK>/{split}/MRI and "
                         "CT|PET|SPECT)")
    shapes = {m.shape for m in mri}
    if len(shapes) != 1:
        raise UsageError(f"{split} images differ in size ({sorted(shapes)}); training needs one size")
    return PairSet(np.stack(mri), np.stack(other), np.stack(labels), task_of, names,
                   np.stack(chroma_of).astype(np.float32))


def as_batch(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, H, W) planes -> the network's (B, 1, H, W) float32 input on ``device``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).unsqueeze(1).to(device)


class PatchSampler:
    """Random patches on the paper's grid (``patch`` x ``patch`` at ``stride``), with random
    flips and 90-degree rotations; one seeded generator makes a run repeatable."""

    def __init__(self, data: PairSet, patch: int = 24, stride: int = 8, seed: int = 0) -> None:
        h, w = data.mri.shape[1:]
        if patch > min(h, w) or patch % 2:
            raise UsageError(f"patch size must be even and at most {min(h, w)}, got {patch}")
        self.data = data
        self.patch = patch
        self.ys = np.arange(0, h - patch + 1, stride)
        self.xs = np.arange(0, w - patch + 1, stride)
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict[str, Any]:
        """The generator's state as plain ints, strings and dicts, so a checkpoint holding it
        loads with ``weights_only=True`` (see :mod:`medfuse.training.checkpoint`)."""
        from medfuse.training.checkpoint import plain_rng_state

        return plain_rng_state(self.rng.bit_generator.state)

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue exactly where :meth:`state` was taken (``--resume``)."""
        self.rng.bit_generator.state = state

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mri, other, labels) batches of shape (B, P, P)."""
        a, b, lab, _ = self.sample_with_chroma(batch)
        return a, b, lab

    def sample_with_chroma(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(mri, other, labels, chroma): chroma (B, 2, P, P) is cut, rotated and flipped
        with its pair (neutral when the set has none). Draws exactly the random numbers
        :meth:`sample` draws, so a seed gives the same patches either way."""
        return self.sample_with_source(batch)[:4]

    def sample_with_source(
        self, batch: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`sample_with_chroma` plus the index of each patch's pair in the set, so a
        loss can tell generated-study pairs from atlas pairs (same random numbers)."""
        p = self.patch
        idx = self.rng.integers(0, len(self.data), batch)
        ys = self.rng.choice(self.ys, batch)
        xs = self.rng.choice(self.xs, batch)
        rot = self.rng.integers(0, 4, batch)
        flip = self.rng.integers(0, 2, batch)
        out = [np.empty((batch, p, p), a.dtype) for a in (self.data.mri, self.data.other, self.data.labels)]
        chroma = np.full((batch, 2, p, p), TAU, np.float32)
        for k in range(batch):
            for o, src in zip(out, (self.data.mri, self.data.other, self.data.labels)):
                tile = src[idx[k], ys[k] : ys[k] + p, xs[k] : xs[k] + p]
                tile = np.rot90(tile, rot[k])
                o[k] = tile[:, ::-1] if flip[k] else tile
            if self.data.chroma is not None:
                tile = self.data.chroma[idx[k], :, ys[k] : ys[k] + p, xs[k] : xs[k] + p]
                tile = np.rot90(tile, rot[k], axes=(1, 2))
                chroma[k] = tile[:, :, ::-1] if flip[k] else tile
        return out[0], out[1], out[2], chroma, idx
