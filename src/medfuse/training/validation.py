"""Validation during training and the rule that picks the best checkpoint.

Validation scores each fused val image as ``medfuse eval`` scores it, so the numbers in a
run's ``val.csv`` are the numbers a user measures afterwards on the exported weights.
"""

from __future__ import annotations

import numpy as np
import torch

from medfuse.errors import UsageError
from medfuse.model import GeSeNet
from medfuse.training.data import PairSet, as_batch
from medfuse.training.losses import lattice_index, signal_support

#: Validation criterion for the best checkpoint (the default): mean Qabf (standard
#: profile) over val, the edge-transfer metric the bundled weights must win on in every
#: task, among validations whose hard principal fractions both lie in [0.1, 0.9]
#: (meaningful masks); any such validation ranks above every one outside that range.
#: ``val_qabf+ssim`` adds the mean standard SSIM, for runs that trade edges for structure;
#: ``val_v2`` (the weights-v2 recipe) adds 0.05 x the mean SCD on top, so a checkpoint that
#: gains contrast (SCD 0.2) at the cost of 0.01 SSIM or Qabf ties (docs/lab/training-v2.md).
#: ``last`` takes the latest validation with meaningful masks: for a fine-tune whose
#: atlas output an anchor holds (the atlas scores barely move) and whose study terms
#: keep improving to the end of the schedule, which an atlas-only score cannot see.
CRITERION = "val_qabf"
CRITERIA = ("val_qabf", "val_qabf+ssim", "val_v2", "last")
SCD_WEIGHT = 0.05
MASK_RANGE = (0.1, 0.9)
#: ... and whose masks are decided by the image: at most this share of the anatomy may sit
#: on a spatial margin within 1e-4 of 0 (a dead mask generator's tie, decided by rounding).
MAX_TIED = 0.05


#: A spatial margin this close to 0 counts as tied (decided by rounding, not the image).
TIE_TOLERANCE = 1e-4


def tied_pixels(model: GeSeNet, a: torch.Tensor, b: torch.Tensor) -> tuple[list[float], float]:
    """([MRI, functional] tied pixel counts, support pixel count) of a batch: pixels inside
    the signal support whose spatial margin is within :data:`TIE_TOLERANCE` of 0."""
    sup = signal_support(a, b) > 0
    tied = [float(((m.abs() < TIE_TOLERANCE) & sup).sum()) for m in model.spatial_margins(a, b)]
    return tied, float(sup.sum())


def check_criterion(criterion: str) -> None:
    """Refuse an unknown best-checkpoint rule (before a run starts, not at its first
    validation)."""
    if criterion not in CRITERIA:
        raise UsageError(f"unknown selection criterion {criterion!r}; use one of {', '.join(CRITERIA)}")


def selection_score(v: dict[str, float], criterion: str = CRITERION, step: int = 0) -> float:
    """The number the best checkpoint maximises (``step``: the validation's training step,
    which ``last`` ranks by); validations with degenerate masks (a principal fraction
    outside :data:`MASK_RANGE`, or more than :data:`MAX_TIED` of the anatomy tied) rank
    below every meaningful one."""
    lo, hi = MASK_RANGE
    ok = all(lo <= v[k] <= hi for k in ("principal_mri", "principal_functional"))
    ok = ok and all(v.get(k, 0.0) <= MAX_TIED for k in ("tied_mri", "tied_functional"))
    check_criterion(criterion)
    if criterion == "last":
        return float(step) if ok else float(step) - 1e12
    score = v["val_qabf"]
    if criterion in ("val_qabf+ssim", "val_v2"):
        score += v["val_ssim"]
    if criterion == "val_v2":
        score += SCD_WEIGHT * v["val_scd"]
    if not np.isfinite(score):  # ranks below everything, yet a run still keeps a best
        return -1e15
    return score if ok else score - 10.0


@torch.no_grad()
def validate(model: GeSeNet, val: PairSet, dev: torch.device) -> dict[str, float]:
    """Deterministic validation (hard masks): Qabf and SSIM (standard profile) per task and
    overall, and the principal-region fractions of both branches.

    Each fused image is scored as ``medfuse eval`` scores it: coloured by the chroma rule
    where the source has colour, written to 8 bits, reduced to luminance by the profile.
    (Scoring the network's own luminance instead read 0.004 Qabf high on MRI-SPECT,
    because the clip to the RGB gamut removes detail; measured on the stage-5 weights.)
    """
    from medfuse.colour import TAU
    from medfuse.io.images import to_uint
    from medfuse.metrics import compute_metrics_colour
    from medfuse.prepare.pair import PreparedPair, colourise

    was_training = model.training
    model.eval()
    rows: list[dict[str, float]] = []
    fr_m: list[float] = []
    fr_f: list[float] = []
    masks_m: list[torch.Tensor] = []
    masks_f: list[torch.Tensor] = []
    tied = [0.0, 0.0]
    support_px = 0.0
    for i in range(0, len(val), 8):
        a, b = as_batch(val.mri[i : i + 8], dev), as_batch(val.other[i : i + 8], dev)
        out = model.fuse(a, b)
        batch_tied, batch_support = tied_pixels(model, a, b)
        tied = [t + u for t, u in zip(tied, batch_tied)]
        support_px += batch_support
        fused = out.fused[:, 0].cpu().numpy()
        fr_m += out.mask_mri.mean(dim=(1, 2, 3)).cpu().tolist()
        fr_f += out.mask_functional.mean(dim=(1, 2, 3)).cpu().tolist()
        masks_m.append(out.mask_mri.cpu())
        masks_f.append(out.mask_functional.cpu())
        for j in range(fused.shape[0]):
            k = i + j
            colour = val.chroma is not None and not np.all(val.chroma[k] == TAU)
            # The paper's per-channel clip, not inference's default gamut map: the recipe's
            # checkpoint choices were made, and are documented, on these scores.
            pair = PreparedPair(val.mri[k], val.other[k],
                                [(val.chroma[k, 0], val.chroma[k, 1])] if colour else [], "pet",
                                gamut_map="clip")
            written = to_uint(colourise(fused[j], pair), 8).astype(np.float64)
            src_a, src_b = val.mri[k] * 255.0, val.other[k] * 255.0
            m = compute_metrics_colour(src_a, src_b, written, profile="standard",
                                       metrics=["Qabf", "SSIM", "SCD", "SD", "EN"])
            m["MEF"] = compute_metrics_colour(src_a, src_b, written, profile="toolbox2022",
                                              metrics=["SSIM"])["SSIM"]
            rows.append(m)
    model.train(was_training)
    res = {
        "val_qabf": float(_mean([r["Qabf"] for r in rows])),
        "val_ssim": float(_mean([r["SSIM"] for r in rows])),
        "val_mef_ssim": float(_mean([r["MEF"] for r in rows])),
        "principal_mri": float(np.mean(fr_m)),
        "principal_functional": float(np.mean(fr_f)),
        "val_scd": float(_mean([r["SCD"] for r in rows])),
        "lattice_mri": lattice_index(torch.cat(masks_m)),
        "lattice_functional": lattice_index(torch.cat(masks_f)),
        "tied_mri": tied[0] / max(support_px, 1.0),
        "tied_functional": tied[1] / max(support_px, 1.0),
    }
    counts = model.sparse_channel_counts()
    res["sparse_mri"] = float(min(counts["mri"]))
    res["sparse_functional"] = float(min(counts["functional"]))
    for task in sorted(set(val.tasks)):
        idx = [k for k, t in enumerate(val.tasks) if t == task]
        res[f"qabf_{task}"] = float(_mean([rows[k]["Qabf"] for k in idx]))
        res[f"mef_{task}"] = float(_mean([rows[k]["MEF"] for k in idx]))
        res[f"ssim_{task}"] = float(_mean([rows[k]["SSIM"] for k in idx]))
        for metric in ("SCD", "SD", "EN"):
            res[f"{metric.lower()}_{task}"] = float(_mean([rows[k][metric] for k in idx]))
    return res


def _mean(values: list[float]) -> float:
    """Mean over the slices where a metric is defined: SCD is a correlation, undefined
    (NaN) on a slice where a source is flat (the edge slices of a user's volume); such a
    slice is left out of that metric's mean rather than making the whole validation NaN."""
    arr = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(arr)
    return float(arr[ok].mean()) if ok.any() else float("nan")


def validation_columns(tasks: list[str]) -> list[str]:
    """``val.csv``'s header: the overall numbers, then Qabf, MEF-SSIM and SSIM of every
    Harvard task (``medfuse.vocabulary.TASKS``, so the header is the same whatever subset a
    dataset holds) and of any other task folder in ``tasks``."""
    from medfuse.vocabulary import TASKS

    names = list(TASKS) + sorted(set(tasks) - set(TASKS))
    per_task = [f"{m}_{t}" for m in ("qabf", "mef", "ssim", "scd", "sd", "en") for t in names]
    return ["step", "val_qabf", "val_ssim", "val_mef_ssim", "principal_mri",
            "principal_functional", "val_scd", "lattice_mri", "lattice_functional",
            "sparse_mri", "sparse_functional", "tied_mri", "tied_functional", *per_task, "best"]
