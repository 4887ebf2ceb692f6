"""The semantic module's training (``train-semantic``) and its frozen use in GeSeNet's loss.

The paper's semantic loss needs a segmentation network; the authors released none, so
medfuse pre-trains :class:`~medfuse.model.semantic.SemanticNet` on pseudo-labels
(:mod:`medfuse.training.labels`) and freezes it for the GeSeNet run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medfuse.errors import UsageError, WeightsError
from medfuse.model.semantic import SemanticNet
from medfuse.training.checkpoint import (
    SEMANTIC_OUTPUTS,
    CsvLog,
    claim_outputs,
    clear_outputs,
    load_checkpoint,
    save_checkpoint,
    write_json,
)
from medfuse.training.data import PairSet, PatchSampler, as_batch, load_split


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
    force: bool = False,
) -> dict[str, Any]:
    """Pre-train the two-head segmentation net on pseudo-labels (SGD, momentum 0.9,
    weight decay 5e-4, as the paper). Inputs are the sources and simple fusions of them
    (mean, max), so the frozen net later meets images like a fused one.

    ``out`` receives ``semantic.pt``, ``semantic.json`` and ``semantic_log.csv``; existing
    ones are replaced only with ``force``, and none may be an input. The returned summary
    names the weights file (``weights``).
    """
    from medfuse.training.checks import check_number

    check_number("--lr", lr, low=0.0, low_open=True)
    from medfuse.engine import select_device

    out = Path(out)
    claim_outputs(out, SEMANTIC_OUTPUTS, force, [data], "semantic output")
    dev = select_device(device)
    train, val = load_split(data, "train"), load_split(data, "val")
    torch.manual_seed(seed)
    sampler = PatchSampler(train, patch=patch, stride=8, seed=seed)
    net = SemanticNet().to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1 - s / max(1, steps)) ** 0.9)
    out.mkdir(parents=True, exist_ok=True)
    clear_outputs(out, SEMANTIC_OUTPUTS)  # claimed above: absent, or replaced with force
    log = CsvLog(out / "semantic_log.csv", ["step", "loss", "lr", "seconds"])
    rng = np.random.default_rng(seed + 1)
    start = time.monotonic()
    step = 0
    for step in range(1, steps + 1):
        a, b, lab = sampler.sample(batch)
        choice = rng.integers(0, 4, batch)[:, None, None]
        x = np.where(choice == 0, a, np.where(choice == 1, b, np.where(choice == 2, (a + b) / 2, np.maximum(a, b))))
        net.train()
        main, aux = net(as_batch(x, dev))
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
    weights = save_checkpoint(out / "semantic.pt", {k: v.cpu() for k, v in net.state_dict().items()})
    summary: dict[str, Any] = {"steps": step, "val_pixel_accuracy": acc,
                               "seconds": round(time.monotonic() - start, 1)}
    write_json(out / "semantic.json", summary)
    return {**summary, "weights": str(weights)}


@torch.no_grad()
def semantic_accuracy(net: SemanticNet, val: PairSet, dev: torch.device) -> float:
    """Pixel accuracy of the main head on val, input = mean of the sources."""
    net.eval()
    correct = total = 0
    for i in range(0, len(val), 8):
        x = (val.mri[i : i + 8] + val.other[i : i + 8]) / 2
        pred = net(as_batch(x, dev))[0].argmax(1).cpu().numpy()
        correct += int((pred == val.labels[i : i + 8]).sum())
        total += pred.size
    return correct / max(1, total)


def load_semantic(path: str | Path, device: torch.device) -> SemanticNet:
    """A frozen semantic net for the loss (eval mode, no gradients to its weights), read
    with ``weights_only=True`` like every file training loads."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"semantic weights not found: {p} (run `medfuse train-semantic` first)")
    state = load_checkpoint(p, "semantic weights")
    net = SemanticNet()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{p} holds no state dict (expected tensors by name)")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise WeightsError(f"{p} is not a semantic net state dict "
                           f"({' '.join(first[1:2] or first[:1]).strip()})") from None
    net.eval().to(device)
    for prm in net.parameters():
        prm.requires_grad_(False)
    return net
