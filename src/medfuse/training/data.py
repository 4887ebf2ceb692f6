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
    #: (N, H, W) uint8 tissue labels of generated-study slices (the study's label codes:
    #: 4 grey, 5 white matter, 10 + i lesion i; 0 where unknown, e.g. every atlas pair):
    #: what the tissue-step and lesion terms measure against. None: no such slices.
    tissue: np.ndarray | None = None

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
        return self.sample_with_tissue(batch)[:5]

    def sample_with_tissue(
        self, batch: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`sample_with_source` plus each patch's tissue labels (B, P, P), cut,
        rotated and flipped with its pair (None when the set has none); same random
        numbers, so a seed gives the same patches with or without tissue maps."""
        p = self.patch
        idx = self.rng.integers(0, len(self.data), batch)
        ys = self.rng.choice(self.ys, batch)
        xs = self.rng.choice(self.xs, batch)
        rot = self.rng.integers(0, 4, batch)
        flip = self.rng.integers(0, 2, batch)
        out = [np.empty((batch, p, p), a.dtype) for a in (self.data.mri, self.data.other, self.data.labels)]
        chroma = np.full((batch, 2, p, p), TAU, np.float32)
        tissue = None if self.data.tissue is None else np.empty((batch, p, p), np.uint8)
        for k in range(batch):
            for o, src in zip(out, (self.data.mri, self.data.other, self.data.labels)):
                tile = src[idx[k], ys[k] : ys[k] + p, xs[k] : xs[k] + p]
                tile = np.rot90(tile, rot[k])
                o[k] = tile[:, ::-1] if flip[k] else tile
            if self.data.chroma is not None:
                tile = self.data.chroma[idx[k], :, ys[k] : ys[k] + p, xs[k] : xs[k] + p]
                tile = np.rot90(tile, rot[k], axes=(1, 2))
                chroma[k] = tile[:, :, ::-1] if flip[k] else tile
            if tissue is not None:
                tile = np.rot90(self.data.tissue[idx[k], ys[k] : ys[k] + p, xs[k] : xs[k] + p], rot[k])
                tissue[k] = tile[:, ::-1] if flip[k] else tile
        return out[0], out[1], out[2], chroma, idx, tissue


#: Task names for pairs that come without one (a user's folders or pairs.csv), by the
#: other image's modality: the Harvard names, so per-task validation columns line up.
TASK_OF_MODALITY = {"ct": "MRI_CT", "pet": "MRI_PET", "spect": "MRI_SPECT"}
#: A slice whose MRI never reaches this (of 1) holds no anatomy and is not trained on.
SIGNAL_LEVEL = 8 / 255


def has_splits(root: str | Path) -> bool:
    """True when ``root`` is the dataset layout with ``train/`` and ``val/`` splits."""
    from medfuse.io.layout import find_tasks

    p = Path(root)
    if not p.is_dir():
        return False
    try:
        return bool(find_tasks(p, "train", images_only=True)) and bool(
            find_tasks(p, "val", images_only=True))
    except UsageError:
        return False


def _pairs_of(root: Path) -> list[Any]:
    """Every pair ``batch`` would fuse from ``root``: a pairs.csv file, a task folder, or a
    folder of task folders (PNG pairs or NIfTI/DICOM volume pairs)."""
    from medfuse.io.layout import dataset_pairs, read_pairs_csv

    if root.is_file() and root.suffix.lower() == ".csv":
        pairs, problems = read_pairs_csv(root, root.parent)
    else:
        found, problems, _ = dataset_pairs(root)
        pairs = sorted(found, key=lambda q: q.name)
    if problems:
        entry, why = problems[0]
        raise UsageError(f"{root}: {entry}: {why} (training needs every pair; "
                         f"{len(problems)} problem(s))")
    if not pairs:
        raise UsageError(f"no MRI/second-image pairs in {root}")
    return pairs


def _slices_of(pair: Any, max_slices: int) -> list[tuple[str, Any]]:
    """(name, prepared pair) of up to ``max_slices`` slices of one pair, evenly spaced over
    the slices that hold anatomy, prepared as inference prepares them (window, SUV,
    colour map: :func:`medfuse.fusion.read_pair_plan`)."""
    from medfuse.fusion import prepared_slices, read_pair_plan

    plan, _ = read_pair_plan(pair.mri, pair.other, modality=pair.modality)
    if plan.two_d:
        picks = [0]
    else:
        peak = plan.mri_slab(0, len(plan)).reshape(len(plan), -1).max(axis=1)
        signal = [i for i in range(len(plan)) if float(peak[i]) > SIGNAL_LEVEL]
        if not signal:
            raise UsageError(f"{pair.mri}: no slice holds MRI signal")
        step = max(1, len(signal) / max_slices)
        picks = sorted({signal[int(k * step)] for k in range(min(max_slices, len(signal)))})
    out = []
    for batch in prepared_slices(plan, picks):
        for index, prepared in batch:
            out.append((pair.name if plan.two_d else f"{pair.name}[{index}]", prepared))
    return out


def _pad_to(plane: np.ndarray, h: int, w: int) -> np.ndarray:
    """Centre ``plane`` on an ``h`` x ``w`` canvas, repeating its border (a colour map
    whose low end is not black must not end in a hard frame)."""
    dy, dx = h - plane.shape[0], w - plane.shape[1]
    return np.pad(plane, ((dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2)), mode="edge")


def _pair_set(items: list[tuple[str, str, Any]], h: int, w: int) -> PairSet:
    mri, other, labels, tasks, names, chroma = [], [], [], [], [], []
    for task, name, p in items:
        m, o = _pad_to(p.mri_y, h, w), _pad_to(p.other_y, h, w)
        ch = ((_pad_to(p.chroma[0][0], h, w), _pad_to(p.chroma[0][1], h, w))
              if p.chroma else None)
        neutral = np.full_like(m, TAU)
        mri.append(m)
        other.append(o)
        labels.append(pseudo_labels(m, o, p.modality, ch))
        chroma.append(np.stack(ch if ch else (neutral, neutral)))
        tasks.append(task)
        names.append(f"{task}/{name}")
    return PairSet(np.stack(mri).astype(np.float32), np.stack(other).astype(np.float32),
                   np.stack(labels), tasks, names, np.stack(chroma).astype(np.float32))


def load_studies(root: str | Path, holdout: float = 0.25, max_slices: int = 24,
                 split_seed: int = 0) -> tuple[PairSet, PairSet]:
    """(train, validation) from the layouts ``batch`` reads: PNG pairs, NIfTI/DICOM volume
    pairs in ``MRI/`` + ``CT|PET|SPECT/`` folders, or a pairs.csv.

    Volumes are sliced through inference's own preparation path, so the network trains
    on the luminance and chroma it will fuse. ``holdout`` of the *pairs* (whole studies,
    never slices of a study on both sides) is held out for validation, drawn with
    ``split_seed``. Slices of different sizes are centred on the largest size (rounded
    up to a multiple of 8), their borders repeated.
    """
    pairs = _pairs_of(Path(root))
    if len(pairs) < 2:
        raise UsageError(f"{root} holds {len(pairs)} pair; training needs at least 2 "
                         "(one to hold out for validation)")
    order = np.random.default_rng(split_seed).permutation(len(pairs))
    n_val = min(len(pairs) - 1, max(1, round(holdout * len(pairs))))
    held = {int(i) for i in order[:n_val]}
    parts: dict[bool, list[tuple[str, str, Any]]] = {True: [], False: []}
    for k, pair in enumerate(pairs):
        task = TASK_OF_MODALITY.get(pair.modality or "", "MRI_OTHER")
        for name, prepared in _slices_of(pair, max_slices):
            parts[k in held].append((task, name, prepared))
    shapes = [p.mri_y.shape for items in parts.values() for _, _, p in items]
    h = -(-max(s[0] for s in shapes) // 8) * 8
    w = -(-max(s[1] for s in shapes) // 8) * 8
    return _pair_set(parts[False], h, w), _pair_set(parts[True], h, w)


def load_training_data(root: str | Path, holdout: float = 0.25, max_slices: int = 24,
                       split_seed: int = 0) -> tuple[PairSet, PairSet]:
    """(train, validation) of ``root``: its own ``train/`` and ``val/`` splits when it has
    them (the atlas layout), else :func:`load_studies` with a held-out share."""
    if has_splits(root):
        return load_split(root, "train"), load_split(root, "val")
    return load_studies(root, holdout, max_slices, split_seed)
