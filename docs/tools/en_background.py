"""Where the entropy (EN) of a fused image comes from: the anatomy or the empty air.

    python docs/tools/en_background.py --data ../shared/data/harvard \\
        --weights ref=../shared/reference/reference-checkpoint.pth \\
        --weights medfuse=weights/gesenet-medfuse.pt [--split val]

For every val pair, EN of the written luminance (the score ``medfuse eval`` reports),
EN of the same image with the background set to 0 (background: both sources at most
2/255, about half of an atlas slice), and the mean fused grey level over that
background. A fused image that puts a faint haze over the air gains up to the entropy of
that haze, which no source has and no reader wants; this separates the two.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medfuse.vocabulary import TABLE, TASKS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("../shared/data/harvard"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", action="append", required=True, metavar="LABEL=PATH")
    a = ap.parse_args()

    from medfuse.engine import load_model
    from medfuse.fusion import fuse
    from medfuse.io.images import read_image
    from medfuse.metrics.basic import en

    engines = {}
    for spec in a.weights:
        label, _, path = spec.partition("=")
        engines[label] = load_model(path, "cpu")
    print("| task | weights | EN | EN, background set to 0 | background mean /255 | background share |")
    print("|---|---|---|---|---|---|")
    for task in TASKS:
        folder = TABLE[TASKS[task]].folder
        mris = sorted((a.data / task / a.split / "MRI").glob("*.png"))
        for label, eng in engines.items():
            rows = []
            for m in mris:
                o = m.parent.parent / folder / m.name
                r = fuse(m, o, eng)
                f = np.clip(np.rint(r.fused_y * 255), 0, 255).astype(np.uint8)
                ga = np.asarray(read_image(m).pixels, np.float64)
                gb = np.asarray(read_image(o).pixels, np.float64)
                ga = ga.mean(-1) if ga.ndim == 3 else ga
                gb = gb.mean(-1) if gb.ndim == 3 else gb
                scale = 255.0 if max(ga.max(), gb.max()) <= 1.0 else 1.0
                bg = (ga * scale <= 2) & (gb * scale <= 2)
                g = f.copy()
                g[bg] = 0
                rows.append((en(f), en(g), float(f[bg].mean()) if bg.any() else 0.0, bg.mean()))
            v = np.mean(rows, axis=0)
            print(f"| {task} | {label} | {v[0]:.3f} | {v[1]:.3f} | {v[2]:.2f} | {v[3]:.0%} |")


if __name__ == "__main__":
    main()
