"""The weights-v2 goals, checked on one ``medfuse eval --json`` file.

    python benchmarks/v2_goals.py eval.json [--ours medfuse] [--ref ref] [--ours other ...]

For each profile and task: ours minus the reference checkpoint on the paper's six metrics
and EN (a goal is met when ours is higher), SSIM and Qabf against every classical baseline,
and Qabf against the absolute bars (0.68 / 0.71 / 0.78 for MRI-CT / PET / SPECT). Prints
one line per profile and task and a count of goals met, so candidate weights can be ranked
by the same rule (docs/training.md, "weights v2").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = ["SSIM", "SD", "MI", "VIF", "SCD", "Qabf", "EN"]
QABF_BAR = {"MRI_CT": 0.68, "MRI_PET": 0.71, "MRI_SPECT": 0.78}
BASELINES = ("average", "max", "laplacian", "gff")


def goals(doc: dict, ours: str, ref: str) -> tuple[list[str], int, int]:
    """(report lines, goals met, goals in all) for method label ``ours``."""
    mean = {(s["task"], s["method"], s["profile"], s["metric"]): s["mean"] for s in doc["summary"]}
    labels = {m["label"] for m in doc["methods"]}
    base = [b for b in BASELINES if b in labels]
    lines, met, total = [], 0, 0
    for prof in doc["profiles"]:
        for task in [t["name"] for t in doc["tasks"]]:
            cells = []
            for m in METRICS:
                o, r = mean.get((task, ours, prof, m)), mean.get((task, ref, prof, m))
                if o is None or r is None:
                    continue
                ok = o > r
                met, total = met + ok, total + 1
                cells.append(f"{m} {o:.4g}{'>' if ok else '<='}{r:.4g}")
            for m in ("SSIM", "Qabf"):
                o = mean.get((task, ours, prof, m))
                worst = [b for b in base if mean[(task, b, prof, m)] >= o]
                met, total = met + (not worst), total + 1
                cells.append(f"{m}>base {'ok' if not worst else 'NO ' + ','.join(worst)}")
            q = mean.get((task, ours, prof, "Qabf"))
            bar = QABF_BAR.get(task)
            if bar is not None and q is not None:
                met, total = met + (q > bar), total + 1
                cells.append(f"Qabf>{bar} {'ok' if q > bar else 'NO'}")
            lines.append(f"{prof:11s} {task:9s} " + " | ".join(cells))
    return lines, met, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("json", type=Path)
    ap.add_argument("--ours", action="append")
    ap.add_argument("--ref", default="ref")
    a = ap.parse_args()
    doc = json.loads(a.json.read_text())
    labels = {m["label"] for m in doc["methods"]}
    missing = [k for k in (a.ours or ["medfuse"]) + [a.ref] if k not in labels]
    if missing:
        raise SystemExit(f"error: no method {', '.join(missing)} in {a.json} (it has {', '.join(sorted(labels))})")
    for ours in a.ours or ["medfuse"]:
        lines, met, total = goals(doc, ours, a.ref)
        print(f"## {ours}: {met}/{total} goals met")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
