"""Weights-v2 ablations: short fine-tunes of the bundled weights (medfuse's own, never the
authors' checkpoint), one v2 term at a time, two seeds each; all runs in one process so
the pairs are read once.

    python docs/training-logs/v2/ablation.py OUTROOT [--steps 120] [--seeds 11 12] [variant ...]

Each run: `medfuse train` with the flags of the bundled weights' last stage
(--straight-through --mask-weight 1 --mask-support 2 --display-luma --mef-ssim 2 --alpha 7
--qabf-loss 10, no compute budget), batch 8 of 64x64, lr 3e-4, CPU, 2 threads, plus the
variant's terms; one validation at the end (val.csv, scored as `medfuse eval` scores).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from pathlib import Path

import medfuse.training.trainer as trainer
from medfuse.training.losses import LossWeights

BASE = LossWeights(ssim=7.0, mask=1.0, mask_support=2.0, mef_ssim=2.0, qabf=10.0)
VARIANTS: dict[str, dict[str, float]] = {
    "base": {},
    # the channel-mask logits at 30x the rate (mask_lr_scale), or 120 steps could not flip
    # them: the first try at 1x left 0 sparse channels, every number equal to base
    "channels": {"channel_sparsity": 1.0, "sparse_target": 0.3, "mask_lr_scale": 30.0},
    "lattice": {"lattice": 100.0},
    "lattice_logits": {"lattice_logits": 1.0},
    "scd": {"scd": 2.0},
    "intensity": {"intensity": 5.0},
    "contrast": {"contrast": 2.0},
    "all": {"channel_sparsity": 1.0, "sparse_target": 0.3, "mask_lr_scale": 30.0, "lattice": 100.0,
            "scd": 2.0, "intensity": 5.0},
}
CONFIG_KEYS = ("mask_lr_scale",)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("variants", nargs="*",
                    default=["base", "channels", "lattice", "lattice_logits", "scd", "intensity", "all"])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    ap.add_argument("--data", default="../shared/data/harvard")
    ap.add_argument("--init", default="weights/gesenet-medfuse.pt")
    ap.add_argument("--lr", type=float, default=3e-4)
    a = ap.parse_args()
    trainer.load_split = functools.lru_cache(maxsize=4)(trainer.load_split)  # read once
    for seed in a.seeds:
        for v in a.variants:
            run = a.out / f"{v}-s{seed}"
            if (run / "summary.json").exists():
                continue
            terms = {k: x for k, x in VARIANTS[v].items() if k not in CONFIG_KEYS}
            extra = {k: x for k, x in VARIANTS[v].items() if k in CONFIG_KEYS}
            cfg = trainer.TrainConfig(
                data=a.data, out=str(run), steps=a.steps, batch=8, patch=64, stride=8, lr=a.lr,
                seed=seed, device="cpu", checkpoint_every=a.steps, val_every=a.steps,
                semantic="weights/semantic-medfuse.pt", threads=2, straight_through=True,
                criterion="val_v2", init=a.init, display_luma=True,
                weights=dataclasses.replace(BASE, **terms), **extra)
            summary = trainer.train(cfg, force=True)
            print(v, seed, json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
