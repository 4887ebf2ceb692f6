"""Generated studies as training pairs (``medfuse train --studies N``).

The Harvard atlas PET and SPECT slices are mostly dark; real PET windowed for display is
bright over the whole brain, and a network that only met the atlas copies the brighter
source there. These pairs are axial slices of heads from :mod:`medfuse.studies` (the
MNI152 template with nilearn, the analytic phantom without), taken through the same
read -> plan -> prepare path as inference, each plan with a random window (its upper end
between 1 and 2.5 grey-matter levels) and a random colour map, so the network meets
bright, smooth functional images and the chroma of several maps. Deterministic by seed.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.colour import TAU
from medfuse.errors import UsageError
from medfuse.training.data import PairSet
from medfuse.training.labels import pseudo_labels

#: Kinds used for training: the functional modalities the atlas under-represents.
STUDY_KINDS = ("pet", "spect")
#: Colour maps drawn per plan (the atlas look, the common clinical maps, DICOM palettes).
STUDY_COLORMAPS = ("rainbow", "hot", "jet", "sunset", "pet", "hot-iron")
#: Task folder names the pairs are reported under (validation keeps the Harvard tasks).
STUDY_TASKS = {"pet": "STUDY_PET", "spect": "STUDY_SPECT"}
#: Upper window end, in grey-matter levels of each study's own truth.
WINDOW_RANGE = (1.0, 2.5)
#: Slices drawn per plan (one window and colour map), from the middle 60 % of the head.
SLICES_PER_PLAN = 4


def _fit(plane: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Scale a 2 mm slice by 2 (bilinear, about the atlas' 1 mm per pixel) and centre it on
    a ``size`` x ``size`` canvas, cropping what does not fit and repeating the border
    outwards (a colour map whose low end is not black must not end in a hard frame).
    ``nearest``: nearest-neighbour scaling, for label maps (codes must not be blended)."""
    import cv2

    up = cv2.resize(plane.astype(np.float32), (plane.shape[1] * 2, plane.shape[0] * 2),
                    interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)
    h, w = up.shape
    sy, sx = max(0, (h - size) // 2), max(0, (w - size) // 2)
    up = up[sy : sy + size, sx : sx + size]
    h, w = up.shape
    dy, dx = (size - h) // 2, (size - w) // 2
    return np.pad(up, ((dy, size - h - dy), (dx, size - w - dx)), mode="edge")


def _plan_slices(study: Any, kind: str, rng: np.random.Generator, size: int) -> tuple[str, list[tuple[Any, ...]]]:
    """One plan of ``study`` with a random window and colour map, and its slices drawn from
    the middle 60 % of the head: (colour map, [(index, mri, other, cb, cr, coloured,
    tissue)]), ``tissue`` the study's label map on the slice (grey and white matter,
    lesions: what the tissue-step and lesion terms score against)."""
    from medfuse.fusion import prepared_slices, read_pair_plan
    from medfuse.io.geometry import stack_view
    from medfuse.studies.generate import SPECT_COUNTS, VALUES

    # grey matter in the file's units (SPECT is stored as counts)
    grey = VALUES[kind]["gm"] * (SPECT_COUNTS if kind == "spect" else 1.0)
    high = grey * float(rng.uniform(*WINDOW_RANGE))
    cmap = str(rng.choice(STUDY_COLORMAPS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, _ = read_pair_plan(study.directory / study.files["mri"],
                                 study.directory / study.files["other"],
                                 modality=kind, colormap=cmap, window=f"{high / 2},{high}")
    n = len(plan)
    tissue = stack_view(study.label_map(), np.asarray(study.mri_affine), plan.axis)[0]
    if tissue.shape != (n, *plan.plane_shape):
        raise UsageError(f"{study.directory}: labels.nii.gz is not on the MRI grid the plan "
                         "fuses on")
    picks = sorted(set(int(i) for i in rng.integers(int(0.2 * n), int(0.8 * n), SLICES_PER_PLAN)))
    out = []
    for batch in prepared_slices(plan, picks):
        for index, pair in batch:
            m, o = _fit(pair.mri_y, size), _fit(pair.other_y, size)
            if pair.chroma:
                cb, cr = _fit(pair.chroma[0][0], size), _fit(pair.chroma[0][1], size)
            else:
                cb, cr = np.full_like(m, TAU), np.full_like(m, TAU)
            t = _fit(tissue[index], size, nearest=True).astype(np.uint8)
            out.append((index, m, o, cb, cr, bool(pair.chroma), t))
    return cmap, out


def study_pairs(count: int, seed: int = 0, size: int = 256, resolution: float = 2.0,
                kinds: tuple[str, ...] = STUDY_KINDS) -> PairSet:
    """``count`` training pairs from generated studies, shared equally between ``kinds``:
    luminance, chroma and pseudo-labels exactly as :func:`medfuse.training.data.load_split`
    makes them from files, and each slice's tissue labels (``PairSet.tissue``). The
    studies are written to a temporary folder and removed."""
    from medfuse.studies import generate_study

    if count < 1:
        raise UsageError(f"--studies {count}: expected at least 1 pair")
    rng = np.random.default_rng(seed)
    mri, other, labels, tasks, names, chroma, tissue = [], [], [], [], [], [], []
    per_kind = [count // len(kinds) + (i < count % len(kinds)) for i in range(len(kinds))]
    with tempfile.TemporaryDirectory(prefix="medfuse-train-studies-") as tmp:
        for kind, wanted in zip(kinds, per_kind):
            made = 0
            for s in range(math.ceil(wanted / (SLICES_PER_PLAN * 2)) if wanted else 0):
                study_seed = int(rng.integers(0, 2**31 - 1))
                study = generate_study(kind, Path(tmp) / f"{kind}-{s}", resolution=resolution,
                                       seed=study_seed)
                for _ in range(2):  # two windows and maps per study
                    if made >= wanted:
                        break
                    cmap, slices = _plan_slices(study, kind, rng, size)
                    for index, m, o, cb, cr, coloured, t in slices[: wanted - made]:
                        mri.append(m)
                        other.append(o)
                        chroma.append(np.stack([cb, cr]))
                        tissue.append(t)
                        labels.append(pseudo_labels(m, o, kind, (cb, cr) if coloured else None))
                        tasks.append(STUDY_TASKS[kind])
                        names.append(f"{STUDY_TASKS[kind]}/seed{study_seed}-{cmap}-{index}")
                        made += 1
    return PairSet(np.stack(mri), np.stack(other), np.stack(labels), tasks, names,
                   np.stack(chroma).astype(np.float32), np.stack(tissue))


def concat(a: PairSet, b: PairSet) -> PairSet:
    """Two pair sets as one (same image size), ``a`` first."""
    if a.mri.shape[1:] != b.mri.shape[1:]:
        raise UsageError(f"study pairs are {b.mri.shape[1:]}, the data {a.mri.shape[1:]}: "
                         "training needs one size")
    ca = a.chroma if a.chroma is not None else np.full((len(a), 2, *a.mri.shape[1:]), TAU, np.float32)
    cb = b.chroma if b.chroma is not None else np.full((len(b), 2, *b.mri.shape[1:]), TAU, np.float32)
    tissue = None
    if a.tissue is not None or b.tissue is not None:
        ta = a.tissue if a.tissue is not None else np.zeros(a.mri.shape, np.uint8)
        tb = b.tissue if b.tissue is not None else np.zeros(b.mri.shape, np.uint8)
        tissue = np.concatenate([ta, tb])
    return PairSet(np.concatenate([a.mri, b.mri]), np.concatenate([a.other, b.other]),
                   np.concatenate([a.labels, b.labels]), a.tasks + b.tasks, a.names + b.names,
                   np.concatenate([ca, cb]), tissue)


def write_study_folder(root: str | Path, count: int = 4, kind: str = "pet", seed: int = 0,
                       resolution: float = 2.0, anatomy: str = "auto") -> Path:
    """Write ``count`` generated MRI + ``kind`` NIfTI study pairs in the layout ``batch``
    and ``train --data`` read (``root/MRI/<name>.nii.gz`` beside ``root/PET/<name>.nii.gz``):
    a cohort of registered volume pairs to try a fine-tune on. Deterministic by seed."""
    import shutil

    from medfuse.studies import generate_study

    root = Path(root)
    folder = {"pet": "PET", "spect": "SPECT", "ct": "CT"}[kind]
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="medfuse-study-folder-") as tmp:
        for i in range(count):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study = generate_study(kind, Path(tmp) / f"s{i}", resolution=resolution,
                                       seed=int(rng.integers(0, 2**31 - 1)), anatomy=anatomy)
            for sub, key in (("MRI", "mri"), (folder, "other")):
                (root / sub).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(study.directory / study.files[key],
                                root / sub / f"study{i:02d}.nii.gz")
    return root
