"""Training loops: the semantic module (``train-semantic``) and GeSeNet (``train``).

Both loops are budget-aware (``max_minutes``), log to CSV, checkpoint every N steps with
everything needed to resume (weights, optimiser, step, both RNG states), and keep the best
checkpoint by a stated validation criterion.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medfuse.errors import UsageError
from medfuse.model import GeSeNet
from medfuse.model.semantic import SemanticNet
from medfuse.training.data import PairSet, PatchSampler, load_split
from medfuse.training.losses import (
    LossWeights,
    background_mask_penalty,
    content_loss,
    display_luminance,
    gradient_loss,
    mask_budget,
    mask_cost,
    mef_ssim_loss,
    qabf_loss,
    semantic_loss,
    signal_support,
    ssim_loss,
    support_mask_prior,
)

#: Validation criterion for the best checkpoint (the default): mean Qabf (standard
#: profile) over val, the edge-transfer metric the bundled weights must win on in every
#: task, among validations whose hard principal fractions both lie in [0.1, 0.9]
#: (meaningful masks); any such validation ranks above every one outside that range.
#: ``val_qabf+ssim`` adds the mean standard SSIM, for runs that trade edges for structure.
CRITERION = "val_qabf"
CRITERIA = ("val_qabf", "val_qabf+ssim")
MASK_RANGE = (0.1, 0.9)


def check_criterion(criterion: str) -> None:
    """Refuse an unknown best-checkpoint rule (before a run starts, not at its first
    validation)."""
    if criterion not in CRITERIA:
        raise UsageError(f"unknown selection criterion {criterion!r}; use one of {', '.join(CRITERIA)}")


def selection_score(v: dict[str, float], criterion: str = CRITERION) -> float:
    lo, hi = MASK_RANGE
    ok = all(lo <= v[k] <= hi for k in ("principal_mri", "principal_functional"))
    check_criterion(criterion)
    score = v["val_qabf"] + (v["val_ssim"] if criterion == "val_qabf+ssim" else 0.0)
    return score if ok else score - 10.0


@dataclass
class TrainConfig:
    data: str
    out: str
    steps: int = 20000
    batch: int = 4
    patch: int = 24
    stride: int = 8
    lr: float = 1e-3
    weight_decay: float = 2e-4
    tau: float = 0.5
    tau_start: float | None = None  # anneal from tau_start to tau over the run (None: fixed)
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500
    val_every: int = 2000
    max_minutes: float | None = None
    #: End this invocation at this step while keeping the schedule of ``steps`` (a run
    #: split over several sessions, continued with ``--resume``).
    stop_after: int | None = None
    semantic: str | None = None  # path to the frozen semantic net; None disables L_S
    weights: LossWeights = field(default_factory=LossWeights)
    threads: int | None = None
    straight_through: bool = False  # inference masks in training (stage 2)
    criterion: str = CRITERION  # best-checkpoint rule, see CRITERIA
    init: str | None = None  # start from these weights (a medfuse run's own checkpoint)
    #: Losses score the luminance of the RGB that is written (chroma rule, clip) instead
    #: of the network's luminance; see :func:`medfuse.training.losses.display_luminance`.
    display_luma: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights"] = self.weights.to_dict()
        return d


def _device(spec: str) -> torch.device:
    from medfuse.engine import select_device

    return select_device(spec)


def _tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).unsqueeze(1).to(device)


class CsvLog:
    """Append-only CSV with a fixed header (written once, also on resume)."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns = path, columns
        if not path.exists():
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerow(columns)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([row.get(c, "") for c in self.columns])


def _save(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    torch.save(obj, tmp)
    tmp.replace(path)


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tb"))


# --------------------------------------------------------------------------- semantic ---
def train_semantic(
    data: str | Path,
    out: str | Path,
    steps: int = 3000,
    batch: int = 8,
    patch: int = 64,
    lr: float = 0.01,
    seed: int = 0,
    device: str = "auto",
    max_minutes: float | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Pre-train the two-head segmentation net on pseudo-labels (SGD, momentum 0.9,
    weight decay 5e-4, as the paper). Inputs are the sources and simple fusions of them
    (mean, max), so the frozen net later meets images like a fused one."""
    torch.manual_seed(seed)
    dev = _device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = load_split(data, "train"), load_split(data, "val")
    sampler = PatchSampler(train, patch=patch, stride=8, seed=seed)
    net = SemanticNet().to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1 - s / max(1, steps)) ** 0.9)
    log = CsvLog(out / "semantic_log.csv", ["step", "loss", "lr", "seconds"])
    rng = np.random.default_rng(seed + 1)
    start = time.monotonic()
    step = 0
    for step in range(1, steps + 1):
        a, b, lab = sampler.sample(batch)
        choice = rng.integers(0, 4, batch)[:, None, None]
        x = np.where(choice == 0, a, np.where(choice == 1, b, np.where(choice == 2, (a + b) / 2, np.maximum(a, b))))
        net.train()
        main, aux = net(_tensor(x, dev))
        target = torch.from_numpy(lab.astype(np.int64)).to(dev)
        loss = F.cross_entropy(main, target) + 0.5 * F.cross_entropy(aux, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            row = {"step": step, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0],
                   "seconds": round(time.monotonic() - start, 1)}
            log.write(row)
            if progress:
                progress(step, {"loss": float(loss.detach())})
        if max_minutes is not None and time.monotonic() - start > max_minutes * 60:
            break
    acc = semantic_accuracy(net, val, dev)
    state = {k: v.cpu() for k, v in net.state_dict().items()}
    _save(out / "semantic.pt", state)
    summary = {"steps": step, "val_pixel_accuracy": acc, "seconds": round(time.monotonic() - start, 1)}
    (out / "semantic.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@torch.no_grad()
def semantic_accuracy(net: SemanticNet, val: PairSet, dev: torch.device) -> float:
    """Pixel accuracy of the main head on val, input = mean of the sources."""
    net.eval()
    correct = total = 0
    for i in range(0, len(val), 8):
        x = (val.mri[i : i + 8] + val.other[i : i + 8]) / 2
        pred = net(_tensor(x, dev))[0].argmax(1).cpu().numpy()
        correct += int((pred == val.labels[i : i + 8]).sum())
        total += pred.size
    return correct / max(1, total)


def load_semantic(path: str | Path, device: torch.device) -> SemanticNet:
    """A frozen semantic net for the loss (eval mode, no gradients to its weights)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"semantic weights not found: {p} (run `medfuse train-semantic` first)")
    net = SemanticNet()
    net.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
    net.eval().to(device)
    for prm in net.parameters():
        prm.requires_grad_(False)
    return net


# ---------------------------------------------------------------------------- GeSeNet ---
def loss_terms(
    model: GeSeNet,
    a: torch.Tensor,
    b: torch.Tensor,
    labels: torch.Tensor | None,
    w: LossWeights,
    seg: SemanticNet | None,
    chroma: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Every loss term for one batch and their weighted total. With ``chroma`` (B, 2, H, W)
    the terms score the luminance of the written RGB (:func:`display_luminance`)."""
    out = model.fuse(a, b)
    f = out.fused if chroma is None else display_luminance(out.fused, chroma)
    terms: dict[str, torch.Tensor] = {
        "content": content_loss(f, a, b),
        "gradient": gradient_loss(f, a, b),
        "ssim": ssim_loss(f, a, b),
    }
    if w.mef_ssim > 0:
        terms["mef_ssim"] = mef_ssim_loss(f, a, b)
    if w.qabf > 0:
        terms["qabf"] = qabf_loss(f, a, b)
    if seg is not None and labels is not None and w.semantic > 0:
        terms["semantic"] = semantic_loss(seg, f, labels, w.semantic_aux)
    budget = torch.zeros((), device=f.device)
    if w.mask_support == 0:  # the support prior replaces the plain budget
        budget = mask_budget(out.mask_mri, w.mask_target) + mask_budget(out.mask_functional, w.mask_target)
    if w.compute_target is not None:
        # Without it the channel masks can go all-dense, the spatial mask then changes
        # nothing, and its logits drift to an arbitrary pattern (seen in the first run).
        for spa, rmm in ((out.mask_mri, model.inf_rmm), (out.mask_functional, model.vis_rmm)):
            cost = mask_cost(spa, rmm.body.ch_mask, model.tau, hard=not model.training)
            budget = budget + (cost - w.compute_target).abs()
    if w.mask_support > 0 and model.inf_rmm.last_margin is not None:
        sup = signal_support(a, b)
        terms["mask_support"] = sum(
            support_mask_prior(rmm.last_margin, sup, w.support_band)
            for rmm in (model.inf_rmm, model.vis_rmm)
        ) / 2
        terms["mask_bg"] = (background_mask_penalty(out.mask_mri, sup)
                            + background_mask_penalty(out.mask_functional, sup)).detach() / 2
    terms["mask"] = budget / 2
    total = (
        w.content * terms["content"]
        + w.gradient * terms["gradient"]
        + w.ssim * terms["ssim"]
        + w.semantic * terms.get("semantic", torch.zeros((), device=f.device))
        + w.mask * terms["mask"]
    )
    if "mef_ssim" in terms:
        total = total + w.mef_ssim * terms["mef_ssim"]
    if "qabf" in terms:
        total = total + w.qabf * terms["qabf"]
    if "mask_support" in terms:
        total = total + w.mask_support * terms["mask_support"]
    terms["total"] = total
    terms["principal_mri"] = out.mask_mri.mean().detach()
    terms["principal_functional"] = out.mask_functional.mean().detach()
    return terms


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
    fr_m, fr_f = [], []
    for i in range(0, len(val), 8):
        a, b = _tensor(val.mri[i : i + 8], dev), _tensor(val.other[i : i + 8], dev)
        out = model.fuse(a, b)
        fused = out.fused[:, 0].cpu().numpy()
        fr_m += out.mask_mri.mean(dim=(1, 2, 3)).cpu().tolist()
        fr_f += out.mask_functional.mean(dim=(1, 2, 3)).cpu().tolist()
        for j in range(fused.shape[0]):
            k = i + j
            colour = val.chroma is not None and not np.all(val.chroma[k] == TAU)
            pair = PreparedPair(val.mri[k], val.other[k],
                                [(val.chroma[k, 0], val.chroma[k, 1])] if colour else [], "pet")
            written = to_uint(colourise(fused[j], pair), 8).astype(np.float64)  # inference's path
            src_a, src_b = val.mri[k] * 255.0, val.other[k] * 255.0
            m = compute_metrics_colour(src_a, src_b, written, profile="standard", metrics=["Qabf", "SSIM"])
            m["MEF"] = compute_metrics_colour(src_a, src_b, written, profile="toolbox2022",
                                              metrics=["SSIM"])["SSIM"]
            rows.append(m)
    model.train(was_training)
    res = {
        "val_qabf": float(np.mean([r["Qabf"] for r in rows])),
        "val_ssim": float(np.mean([r["SSIM"] for r in rows])),
        "val_mef_ssim": float(np.mean([r["MEF"] for r in rows])),
        "principal_mri": float(np.mean(fr_m)),
        "principal_functional": float(np.mean(fr_f)),
    }
    for task in sorted(set(val.tasks)):
        idx = [k for k, t in enumerate(val.tasks) if t == task]
        res[f"qabf_{task}"] = float(np.mean([rows[k]["Qabf"] for k in idx]))
        res[f"mef_{task}"] = float(np.mean([rows[k]["MEF"] for k in idx]))
        res[f"ssim_{task}"] = float(np.mean([rows[k]["SSIM"] for k in idx]))
    return res


def _tau_at(cfg: TrainConfig, step: int) -> float:
    if cfg.tau_start is None:
        return cfg.tau
    t = min(1.0, step / max(1, cfg.steps))
    return cfg.tau_start * (cfg.tau / cfg.tau_start) ** t  # geometric annealing


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train GeSeNet from scratch (never from the reference checkpoint) on ``cfg.data``."""
    check_criterion(cfg.criterion)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = _device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    train_set, val_set = load_split(cfg.data, "train"), load_split(cfg.data, "val")
    sampler = PatchSampler(train_set, cfg.patch, cfg.stride, cfg.seed)
    model = GeSeNet(tau=cfg.tau)
    if cfg.init and not resume:
        from medfuse.engine import read_state_dict

        model.load_state_dict(read_state_dict(Path(cfg.init)), strict=True)
    model.set_straight_through(cfg.straight_through)
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, cfg.steps)))) * 0.95 + 0.05
    )
    seg = load_semantic(cfg.semantic, dev) if cfg.semantic and cfg.weights.semantic > 0 else None
    step, best, best_step = 0, -math.inf, 0
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            raise UsageError(f"--resume: no checkpoint at {last}")
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        sampler.set_state(ck["sampler"])
        torch.set_rng_state(ck["torch_rng"])
        step, best, best_step = ck["step"], ck["best"], ck["best_step"]
    elif last.exists():
        raise UsageError(f"{out} already holds a run; use --resume or another --out")
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    cols = ["step", "seconds", "lr", "tau", "total", "content", "gradient", "ssim", "mef_ssim",
            "qabf", "semantic", "mask", "mask_support", "mask_bg", "principal_mri", "principal_functional"]
    log = CsvLog(out / "log.csv", cols)
    vcols = ["step", "val_qabf", "val_ssim", "val_mef_ssim", "principal_mri", "principal_functional",
             "qabf_MRI_CT", "qabf_MRI_PET", "qabf_MRI_SPECT", "mef_MRI_CT", "mef_MRI_PET",
             "mef_MRI_SPECT", "ssim_MRI_CT", "ssim_MRI_PET", "ssim_MRI_SPECT", "best"]
    vlog = CsvLog(out / "val.csv", vcols)
    tb = _tensorboard(out)

    def checkpoint() -> None:
        _save(last, {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "sampler": sampler.state(),
            "torch_rng": torch.get_rng_state(), "step": step, "best": best,
            "best_step": best_step, "config": cfg.to_dict(),
        })

    def run_validation() -> None:
        nonlocal best, best_step
        v = validate(model, val_set, dev)
        score = selection_score(v, cfg.criterion)
        improved = score > best
        if improved:
            best, best_step = score, step
            _save(out / "best.pt", {k: t.detach().cpu() for k, t in model.state_dict().items()})
        vlog.write({"step": step, **v, "best": int(improved)})
        if tb:
            for k, val in v.items():
                tb.add_scalar(f"val/{k}", val, step)

    start = time.monotonic()
    model.train()
    acc: dict[str, list[float]] = {}

    def write_row() -> None:
        """Mean of each loss term since the last row: CSV, TensorBoard, progress bar."""
        row = {k: float(np.mean(v)) for k, v in acc.items()}
        row.update(step=step, seconds=round(time.monotonic() - start, 1),
                   lr=sched.get_last_lr()[0], tau=model.tau)
        log.write(row)
        if tb:
            for k, v in row.items():
                if k != "step":
                    tb.add_scalar(f"train/{k}", v, step)
        if progress:
            progress(step, row)
        acc.clear()

    stopped_by_budget = False
    end = min(cfg.steps, cfg.stop_after) if cfg.stop_after else cfg.steps
    while step < end:
        if cfg.max_minutes is not None and time.monotonic() - start > cfg.max_minutes * 60:
            stopped_by_budget = True
            break
        a, b, lab, chroma = sampler.sample_with_chroma(cfg.batch)
        model.tau = _tau_at(cfg, step)
        at, bt = _tensor(a, dev), _tensor(b, dev)
        lt = torch.from_numpy(lab.astype(np.int64)).to(dev)
        ct = torch.from_numpy(chroma).to(dev) if cfg.display_luma else None
        terms = loss_terms(model, at, bt, lt, cfg.weights, seg, ct)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        sched.step()
        step += 1
        for k, v in terms.items():
            acc.setdefault(k, []).append(float(v.detach()))
        if step % 50 == 0:
            write_row()
        if step % cfg.checkpoint_every == 0:
            checkpoint()
        if step % cfg.val_every == 0:
            run_validation()
    if acc:  # the last partial window of steps
        write_row()
    model.tau = cfg.tau
    if step % cfg.val_every != 0 or best_step == 0:
        run_validation()
    checkpoint()
    summary = {"steps": step, "best_step": best_step, "best_score": best,
               "seconds": round(time.monotonic() - start, 1), "stopped_by_budget": stopped_by_budget}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if tb:
        tb.close()
    return summary


def export_best(run_dir: str | Path, dest: str | Path) -> Path:
    """Copy a run's best weights to ``dest`` as a plain state dict (the checkpoint's layout),
    checked against the network so the bundled loader accepts it."""
    from medfuse.engine import build_model

    src = Path(run_dir) / "best.pt"
    if not src.is_file():
        raise UsageError(f"no best.pt in {run_dir}")
    state = torch.load(src, map_location="cpu", weights_only=True)
    build_model(state)  # raises on any key or shape mismatch
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _save(dest, {k: v.contiguous() for k, v in state.items()})
    return dest
