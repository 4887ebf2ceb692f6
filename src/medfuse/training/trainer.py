"""GeSeNet's training loop (``medfuse train``): losses per batch, checkpoints, resume, export.

The loop is budget-aware (``max_minutes``), logs to CSV, checkpoints every N steps with
everything needed to continue bit-exactly (weights, optimiser, scheduler, step, the
sampler's and torch's RNG states) and keeps the best checkpoint by a stated validation
criterion (:mod:`medfuse.training.validation`). Run folders, checkpoints and exports follow
the one output policy and are read back without running code
(:mod:`medfuse.training.checkpoint`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfuse.errors import UsageError, WeightsError
from medfuse.io.outputs import atomic_output, check_output
from medfuse.model import GeSeNet
from medfuse.model.semantic import SemanticNet
from medfuse.training.checkpoint import (
    RUN_OUTPUTS,
    CsvLog,
    claim_run_folder,
    clear_outputs,
    load_checkpoint,
    save_checkpoint,
    trim_log,
    write_json,
)
from medfuse.training.checks import check_number
from medfuse.training.data import PatchSampler, as_batch, load_training_data
from medfuse.training.losses import LossWeights, display_luminance
from medfuse.training.semantic import load_semantic
from medfuse.training.terms import TERMS, Batch, compute_terms, log_columns
from medfuse.training.validation import (
    CRITERION,
    check_criterion,
    selection_score,
    validate,
    validation_columns,
)

#: What ``last.pt`` holds; a file without one of these is not a checkpoint to resume.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "sampler", "torch_rng", "step", "best",
                   "best_step")
#: ``log.csv``'s header: the schedule, then every loss term's columns (the registry's).
LOG_COLUMNS = ["step", "seconds", "lr", "tau", *log_columns()]


@dataclass
class TrainConfig:
    """Everything that defines a GeSeNet run; written to the run's ``config.json`` and into
    every checkpoint, so a run's numbers can be traced to the settings that made them."""

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
    #: split over several invocations, continued with ``--resume``).
    stop_after: int | None = None
    #: With ``max_minutes``: after :data:`FIT_WARMUP` steps, set ``steps`` (and validation
    #: and checkpoint intervals) from the measured speed, so the learning-rate schedule
    #: ends inside the budget on any machine (a GPU run of fixed minutes). The fitted
    #: values are written to config.json and the checkpoints; ``--resume`` keeps them.
    fit_steps: bool = False
    #: Learning-rate factor of the channel-mask logits (see :func:`_param_groups`).
    mask_lr_scale: float = 1.0
    semantic: str | None = None  # path to the frozen semantic net; None disables L_S
    weights: LossWeights = field(default_factory=LossWeights)
    threads: int | None = None
    straight_through: bool = False  # inference masks in training (stage 2)
    criterion: str = CRITERION  # best-checkpoint rule, see CRITERIA
    init: str | None = None  # start from these weights (a medfuse run's own checkpoint)
    #: Losses score the luminance of the RGB that is written (chroma rule, clip) instead
    #: of the network's luminance; see :func:`medfuse.training.losses.display_luminance`.
    display_luma: bool = False
    #: The ``--recipe`` preset the options came from (None: options only); a record.
    recipe: str | None = None
    #: Generated-study pairs added to the training split (0: none); see
    #: :mod:`medfuse.training.studies`. Drawn with ``seed``, so a resumed run gets the same.
    studies: int = 0
    #: The model the anchor term holds the atlas output to (a previous medfuse weights
    #: file, never the authors' checkpoint); needed when ``weights.anchor`` > 0.
    anchor_weights: str | None = None
    #: Data without ``train/`` and ``val/`` splits (a user's studies): the share of pairs
    #: held out for validation, the slices taken per volume pair, the split's seed.
    holdout: float = 0.25
    max_slices: int = 24
    split_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights"] = self.weights.to_dict()
        return d


#: ``fit_steps``: steps timed before the schedule is fitted (the first few are skipped as
#: warm-up), and how many validations the fitted run holds (their time is reserved).
FIT_WARMUP = 40
FIT_SKIP = 10
FIT_VALIDATIONS = 4


def fitted_schedule(step: int, rate: float, remaining_s: float, val_s: float,
                    validations: int = FIT_VALIDATIONS) -> tuple[int, int]:
    """(steps, validation interval) for a run at ``step`` that trains ``rate`` steps per
    second with ``remaining_s`` seconds left, reserving ``validations`` + 1 validations of
    ``val_s`` seconds each (and 5 % slack). Never fewer than ``step + 1`` steps."""
    train_s = max(0.0, remaining_s - (validations + 1) * val_s) * 0.95
    steps = max(step + 1, step + int(train_s * rate))
    return steps, max(1, steps // max(1, validations))


def _device(spec: str) -> torch.device:
    """The torch device for ``--device`` (the engine's rule, so train and fuse agree)."""
    from medfuse.engine import select_device

    return select_device(spec)


def _tensorboard(out: Path) -> Any:
    """A TensorBoard writer in ``out/tb`` when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tb"))


def mask_upsampler(model: GeSeNet, branch: str) -> torch.Tensor:
    """The weight of one branch's spatial-mask upsampler (the last ConvTranspose2d), by
    its state-dict key: the authors' checkpoint layout, which is stable by contract."""
    prefix = {"mri": "inf", "functional": "vis"}[branch]
    return model.get_parameter(f"{prefix}_rmm.spa_mask.5.weight")


def _param_groups(model: GeSeNet, lr: float, mask_lr_scale: float) -> list[dict[str, Any]]:
    """Adam parameter groups: the channel-mask logits at ``mask_lr_scale`` x ``lr``. Adam
    moves every parameter by about lr per step whatever its gradient, so logits that sit
    0.3 on the dense side (the first bundled weights') need ~1000 steps at lr 3e-4 to flip
    to sparse; a fine-tune that must make channels sparse scales their rate."""
    masks = [model.channel_mask_logits(br) for br in model.BRANCHES]
    ids = {id(p) for p in masks}
    rest = [p for p in model.parameters() if id(p) not in ids]
    if mask_lr_scale == 1.0:
        return [{"params": list(model.parameters())}]  # the order older checkpoints hold
    return [{"params": rest}, {"params": masks, "lr": lr * mask_lr_scale}]


def loss_terms(
    model: GeSeNet,
    a: torch.Tensor,
    b: torch.Tensor,
    labels: torch.Tensor | None,
    w: LossWeights,
    seg: SemanticNet | None,
    chroma: torch.Tensor | None = None,
    studies: torch.Tensor | None = None,
    anchor: torch.Tensor | None = None,
    tissue: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Every loss term for one batch and their weighted total. With ``chroma`` (B, 2, H, W)
    the terms score the luminance of the written RGB (:func:`display_luminance`);
    ``studies`` (B,) is 1 for generated-study pairs, 0 for atlas pairs (the anatomy term
    and the ``*_studies_only`` switches act on the study pairs alone); ``anchor`` (B, 1, H, W)
    is the anchor model's fused luminance of the same batch, held on the atlas pairs;
    ``tissue`` (B, 1, H, W) int64 the generated studies' tissue labels (0 on atlas pairs),
    what the tissue-step and lesion terms measure against."""
    out = model.fuse(a, b)
    f = out.fused if chroma is None else display_luminance(out.fused, chroma)
    margins = [model.spatial_margin(branch) for branch in model.BRANCHES]
    terms = compute_terms(Batch(model, out, f, a, b, w, labels, seg, chroma, studies, anchor,
                                margins, tissue))
    terms["principal_mri"] = out.mask_mri.mean().detach()
    terms["principal_functional"] = out.mask_functional.mean().detach()
    return terms


def _tau_at(cfg: TrainConfig, step: int) -> float:
    """Gumbel temperature at ``step``: fixed, or annealed from ``tau_start`` over the run."""
    if cfg.tau_start is None:
        return cfg.tau
    t = min(1.0, step / max(1, cfg.steps))
    return cfg.tau_start * (cfg.tau / cfg.tau_start) ** t  # geometric annealing



def export_inputs(run_dir: str | Path, inputs: Iterable[str | Path | None] = ()) -> list[Path]:
    """What an export must never overwrite: the run's inputs and every file of the run."""
    return [Path(p) for p in inputs if p] + [Path(run_dir) / n for n in RUN_OUTPUTS]


def _run_inputs(cfg: TrainConfig, resume: bool) -> list[str]:
    """The files a run reads (``--init`` is not read on resume)."""
    return [p for p in (cfg.data, cfg.semantic, None if resume else cfg.init, cfg.anchor_weights) if p]


def _load_weights(model: GeSeNet, path: str) -> None:
    """Load a previous medfuse run's weights (``--init``, ``--anchor-weights``; their
    existence is checked up front by :func:`check_config`), read without running code."""
    from medfuse.engine import read_state_dict

    try:
        model.load_state_dict(read_state_dict(Path(path)), strict=True)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise WeightsError(f"{path} does not fit GeSeNet ({' '.join(lines[1:2] or lines[:1]).strip()})") from None


def _restore(path: Path, model: GeSeNet, opt: torch.optim.Optimizer, sched: Any,
             sampler: PatchSampler, dev: torch.device) -> dict[str, Any]:
    """Load ``last.pt`` (weights_only) into the run's objects; its step and best score."""
    ck = load_checkpoint(path, "checkpoint")
    missing = [k for k in CHECKPOINT_KEYS if k not in ck] if isinstance(ck, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise WeightsError(f"{path} is not a training checkpoint (missing {', '.join(missing)})")
    try:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        sampler.set_state(ck["sampler"])
        torch.set_rng_state(ck["torch_rng"])
        if dev.type == "cuda" and ck.get("cuda_rng"):
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise WeightsError(f"{path} does not fit this run ({lines[0].strip()})") from None
    return ck


def check_config(cfg: TrainConfig, made_by_run: Path | None = None) -> None:
    """Range checks and the needs of each loss term (:data:`~medfuse.training.terms.TERMS`),
    so a NaN learning rate or a term without its inputs is one usage error naming the
    recipe key, instead of a run that trains to NaN or fails half way. Files under
    ``made_by_run`` (a recipe's stage folders, written by an earlier stage) need not
    exist yet."""

    def missing(path: str) -> bool:
        if made_by_run is not None and Path(path).is_relative_to(made_by_run):
            return False
        return not Path(path).is_file()

    check_number("train.lr", cfg.lr, low=0.0, low_open=True)
    check_number("train.tau", cfg.tau, low=0.0, low_open=True)
    check_number("train.tau_start", cfg.tau_start, low=0.0, low_open=True)
    check_number("max_minutes", cfg.max_minutes, low=0.0, low_open=True)
    check_number("train.stop_after", cfg.stop_after, low=1)
    check_number("threads", cfg.threads, low=1)
    w = cfg.weights
    for t in TERMS:
        check_number(f"losses.{t.name}", float(getattr(w, t.name)), low=0.0)
        for p in t.params:
            value = getattr(w, p.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                check_number(f"losses.{p.name}", float(value), low=p.low)
    have = {"display_luma": cfg.display_luma, "studies": bool(cfg.studies),
            "anchor_weights": cfg.anchor_weights is not None}
    key_of = {"display_luma": "train.display_luma", "studies": "data.studies",
              "anchor_weights": "train.anchor_weights"}
    for t in TERMS:
        for need in t.needs:
            if getattr(w, t.name) > 0 and not have[need]:
                raise UsageError(f"losses.{t.name} needs {key_of[need]} (what the term acts on)")
    for name, need in (("peaks_coloured_only", "display_luma"),
                       ("peaks_studies_only", "studies"), ("gamut_studies_only", "studies")):
        if getattr(w, name) and not have[need]:
            raise UsageError(f"losses.{name} needs {key_of[need]} (what the term acts on)")
    if cfg.init is not None and missing(cfg.init):
        raise UsageError(f"train.init {cfg.init}: no such weights file")
    if cfg.anchor_weights is not None and missing(cfg.anchor_weights):
        raise UsageError(f"train.anchor_weights {cfg.anchor_weights}: no such weights file")
    band = w.support_band
    if isinstance(band, (tuple, list)) and len(band) == 2:
        lo, hi = (float(b) for b in band)
        for b in (lo, hi):
            check_number("losses.support_band", b, low=0.0)
        if not lo < hi <= 1.0:
            raise UsageError(f"losses.support_band {lo:g} {hi:g}: needs LOW < HIGH <= 1")


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    *,
    force: bool = False,
    export: str | Path | None = None,
    data: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Train GeSeNet from scratch (never from the reference checkpoint) on ``cfg.data``.

    ``cfg.out`` is the run folder: one that holds a run is continued with ``resume`` or
    started over with ``force`` (its run files removed first), never both by accident.
    ``export`` receives the best weights at the end (refused up front if it exists
    without ``force`` or is an input). ``data``: the (train, validation) pair sets of
    ``cfg.data`` when the caller has read them already (the stages of a recipe share
    them). Everything is checked before anything is written.
    """
    check_criterion(cfg.criterion)
    check_config(cfg)
    out = Path(cfg.out)
    inputs = _run_inputs(cfg, resume)
    claim_run_folder(out, resume, force, inputs)
    if export is not None:
        check_output(export, force, export_inputs(out, inputs), label="export")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    train_set, val_set = data or load_training_data(cfg.data, cfg.holdout, cfg.max_slices,
                                                    cfg.split_seed)
    is_study = None  # (N,) 1.0 for generated-study pairs: what the study terms tell apart
    if cfg.studies:
        from medfuse.training.studies import STUDY_TASKS, concat, study_pairs

        train_set = concat(train_set, study_pairs(cfg.studies, seed=cfg.seed,
                                                  size=int(train_set.mri.shape[1])))
        is_study = np.isin(train_set.tasks, list(STUDY_TASKS.values())).astype(np.float32)
    sampler = PatchSampler(train_set, cfg.patch, cfg.stride, cfg.seed)
    model = GeSeNet(tau=cfg.tau)
    if cfg.init and not resume:
        _load_weights(model, cfg.init)
    model.set_straight_through(cfg.straight_through)
    model.to(dev)
    anchor_model = None  # the frozen model the anchor term holds the atlas output to
    if cfg.anchor_weights and cfg.weights.anchor > 0:
        anchor_model = GeSeNet(tau=cfg.tau)
        _load_weights(anchor_model, cfg.anchor_weights)
        anchor_model.to(dev).eval().requires_grad_(False)
    opt = torch.optim.Adam(_param_groups(model, cfg.lr, cfg.mask_lr_scale), lr=cfg.lr,
                           weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, cfg.steps)))) * 0.95 + 0.05
    )
    seg = load_semantic(cfg.semantic, dev) if cfg.semantic and cfg.weights.semantic > 0 else None
    step, best, best_step = 0, -math.inf, 0
    last = out / "last.pt"
    if resume:
        ck = _restore(last, model, opt, sched, sampler, dev)
        step, best, best_step = int(ck["step"]), float(ck["best"]), int(ck["best_step"])
        for name in ("log.csv", "val.csv"):  # rows written after the checkpoint are redone
            trim_log(out / name, step)
        saved = ck.get("config") or {}
        if cfg.fit_steps and saved.get("fit_steps") and step >= FIT_WARMUP:
            for k in ("steps", "val_every", "checkpoint_every"):  # the fitted schedule
                setattr(cfg, k, int(saved[k]))
    else:
        out.mkdir(parents=True, exist_ok=True)
        clear_outputs(out, RUN_OUTPUTS)  # claimed above: absent, or replaced with force
    write_json(out / "config.json", cfg.to_dict())
    log = CsvLog(out / "log.csv", LOG_COLUMNS)
    vlog = CsvLog(out / "val.csv", validation_columns(val_set.tasks))
    tb = _tensorboard(out)

    def checkpoint() -> None:
        save_checkpoint(last, {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "sampler": sampler.state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if dev.type == "cuda" else [],
            "step": step, "best": best, "best_step": best_step, "config": cfg.to_dict(),
        })

    def run_validation() -> None:
        nonlocal best, best_step
        v = validate(model, val_set, dev)
        score = selection_score(v, cfg.criterion, step)
        improved = score > best
        if improved:
            best, best_step = score, step
            save_checkpoint(out / "best.pt", {k: t.detach().cpu() for k, t in model.state_dict().items()})
        vlog.write({"step": step, **v, "best": int(improved)})
        if tb:
            for k, val in v.items():
                tb.add_scalar(f"val/{k}", val, step)

    start = time.monotonic()
    model.train()
    acc: dict[str, list[torch.Tensor]] = {}

    def write_row() -> None:
        """Mean of each loss term since the last row: CSV, TensorBoard, progress bar."""
        row = {k: float(torch.stack(v).double().mean()) for k, v in acc.items()}
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
    fit = cfg.fit_steps and cfg.max_minutes is not None and step < FIT_WARMUP
    fit_t0 = time.monotonic()
    while step < end:
        if cfg.max_minutes is not None and time.monotonic() - start > cfg.max_minutes * 60:
            stopped_by_budget = True
            break
        a, b, lab, chroma, idx, tis = sampler.sample_with_tissue(cfg.batch)
        model.tau = _tau_at(cfg, step)
        at, bt = as_batch(a, dev), as_batch(b, dev)
        lt = torch.from_numpy(lab.astype(np.int64)).to(dev)
        ct = torch.from_numpy(chroma).to(dev) if cfg.display_luma else None
        st = torch.from_numpy(is_study[idx]).to(dev) if is_study is not None else None
        tt = None if tis is None else torch.from_numpy(tis.astype(np.int64)).unsqueeze(1).to(dev)
        ref = None
        if anchor_model is not None:
            with torch.no_grad():
                ref = anchor_model.fuse(at, bt).fused
                ref = ref if ct is None else display_luminance(ref, ct)
        terms = loss_terms(model, at, bt, lt, cfg.weights, seg, ct, st, ref, tt)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        sched.step()
        step += 1
        for k, v in terms.items():  # tensors: one device sync per log row, not per term
            acc.setdefault(k, []).append(v.detach())
        if fit and step == FIT_SKIP:
            fit_t0 = time.monotonic()
        if fit and step == FIT_WARMUP:
            fit = False
            rate = (step - FIT_SKIP) / max(1e-6, time.monotonic() - fit_t0)
            t_val = time.monotonic()
            run_validation()
            t_val = time.monotonic() - t_val
            remaining = cfg.max_minutes * 60 - (time.monotonic() - start)  # type: ignore[operator]
            cfg.steps, cfg.val_every = fitted_schedule(step, rate, remaining, t_val)
            cfg.checkpoint_every = cfg.val_every
            end = min(cfg.steps, cfg.stop_after) if cfg.stop_after else cfg.steps
            write_json(out / "config.json", cfg.to_dict())
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
    summary: dict[str, Any] = {"steps": step, "best_step": best_step, "best_score": best,
                               "seconds": round(time.monotonic() - start, 1),
                               "stopped_by_budget": stopped_by_budget,
                               "complete": step >= end and not stopped_by_budget,
                               "loss_terms": {t: getattr(cfg.weights, t) for t in cfg.weights.active()}}
    write_json(out / "summary.json", summary)
    if tb:
        tb.close()
    if export is not None:
        summary["export"] = str(export_best(out, export, force, inputs))
    return summary


def export_best(run_dir: str | Path, dest: str | Path, force: bool = False,
                inputs: Iterable[str | Path | None] = (),
                metadata: dict[str, Any] | None = None) -> Path:
    """Copy a run's best weights to ``dest``, checked against the network so the bundled
    loader accepts it: a plain state dict (the checkpoint's layout), or with ``metadata``
    (the recipe used, where it came from) ``{"state_dict": ..., "metadata": ...}``, a
    layout every medfuse weights reader accepts and that loads with ``weights_only``.

    ``dest`` is replaced only with ``force`` and is never one of ``inputs`` nor a file of
    the run; it appears complete or not at all.
    """
    from medfuse.engine import build_model

    src = Path(run_dir) / "best.pt"
    if not src.is_file():
        raise UsageError(f"no best.pt in {run_dir}")
    state = load_checkpoint(src, "best checkpoint")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{src} holds no state dict (expected tensors by name)")
    build_model(state)  # raises on any key or shape mismatch
    tensors = {k: v.contiguous() for k, v in state.items()}
    obj: dict[str, Any] = tensors if metadata is None else {"state_dict": tensors,
                                                           "metadata": dict(metadata)}
    with atomic_output(dest, force, export_inputs(run_dir, inputs)) as tmp:
        torch.save(obj, tmp)
    return Path(dest)
