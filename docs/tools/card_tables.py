"""Tables of the model card from one `medfuse eval --json` file.

    python docs/tools/card_tables.py eval.json [--ours medfuse] [--ref ref]

Prints, per profile, the paper's six metrics for every method and task (bold: the better
of ``--ref`` and ``--ours``), then a check list of the bars the bundled weights were
trained to clear: ours beats ref on >= 4 of 6 metrics and on Qabf, and beats every
classical baseline on Qabf and SSIM.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SIX = ["SSIM", "SD", "MI", "VIF", "SCD", "Qabf"]
TASK_NAMES = {"MRI_CT": "MRI-CT", "MRI_PET": "MRI-PET", "MRI_SPECT": "MRI-SPECT"}


def fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}" if abs(x) < 10 else f"{x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("json", type=Path)
    ap.add_argument("--ours", default="medfuse")
    ap.add_argument("--ref", default="ref")
    a = ap.parse_args()
    doc = json.loads(a.json.read_text())
    mean = {(s["task"], s["method"], s["profile"], s["metric"]): s["mean"] for s in doc["summary"]}
    methods = [m["label"] for m in doc["methods"]]
    # Classical baselines only: other GeSeNet weights in the run (an older bundled file,
    # say) are shown in the tables but are not bars to clear.
    baselines = [m["label"] for m in doc["methods"]
                 if m["label"] not in (a.ours, a.ref) and m.get("kind") != "gesenet"]
    tasks = [t["name"] for t in doc["tasks"]]
    checks: list[str] = []
    for prof in doc["profiles"]:
        print(f"\n**{prof} profile**\n")
        print("| task | method | " + " | ".join(SIX) + " |")
        print("|---|---|" + "---|" * len(SIX))
        for task in tasks:
            for m in methods:
                cells = []
                for met in SIX:
                    v = mean.get((task, m, prof, met))
                    o, r = mean.get((task, a.ours, prof, met)), mean.get((task, a.ref, prof, met))
                    best = m in (a.ours, a.ref) and None not in (o, r) and v == max(o, r)
                    cells.append(f"**{fmt(v)}**" if best else fmt(v))
                print(f"| {TASK_NAMES.get(task, task)} | {m} | " + " | ".join(cells) + " |")
            wins = [met for met in SIX if mean[(task, a.ours, prof, met)] > mean[(task, a.ref, prof, met)]]
            checks.append(f"{prof} {task}: beats {a.ref} on {len(wins)}/6 ({', '.join(wins)}); "
                          f"Qabf {'yes' if 'Qabf' in wins else 'NO'}")
            for met in ("Qabf", "SSIM"):
                lose = [b for b in baselines
                        if mean[(task, b, prof, met)] >= mean[(task, a.ours, prof, met)]]
                checks.append(f"{prof} {task}: {met} above every baseline: "
                              + ("yes" if not lose else f"NO ({', '.join(lose)})"))
    print("\nChecks:\n" + "\n".join(f"- {c}" for c in checks))


if __name__ == "__main__":
    main()
