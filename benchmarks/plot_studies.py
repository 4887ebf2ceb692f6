"""Where each method sits against the study goals: one panel per study, a point per method.

    PYTHONPATH=src python benchmarks/plot_studies.py benchmarks/results/studies.json \\
        --png docs/img/study-goals.png

x: the MRI's grey/white luminance step kept (1 = kept at its size, below 0 = inverted);
y: the weakest lesion's conspicuity ratio (fused over the coloured functional image; CT:
the haematoma). The shaded corner is the goal (step >= 0.75, lesion >= 1.0; CT lesion
>= 0.5); the composite is drawn as a square. Drawn with Pillow, so no plotting library is
needed.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

X_RANGE = (-0.5, 1.6)
Y_RANGE = (0.0, 1.4)
PANEL, PAD = 300, 34
PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
           (140, 86, 75), (227, 119, 194), (23, 190, 207), (188, 189, 34), (127, 127, 127)]


def points(data: dict) -> dict[str, dict[str, tuple[float, float]]]:
    """{study: {method: (step kept, weakest lesion ratio)}} from a bench_studies JSON."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for s in data["scores"]:
        ratios = [v for k, v in s["lesion_ratio"].items()
                  if v is not None and math.isfinite(v) and (not s["study"].startswith("ct")
                                                             or k == "hot")]
        y = min(ratios) if ratios else float("nan")
        out.setdefault(s["study"], {})[s["method"]] = (s.get("step_kept", float("nan")), y)
    return out


def draw(data: dict, path: Path, columns: int = 4) -> Path:
    from PIL import Image, ImageDraw

    pts = points(data)
    methods = list(dict.fromkeys(m for study in pts.values() for m in study))
    colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}
    rows = math.ceil(len(pts) / columns)
    legend_h = 18 * math.ceil(len(methods) / 4) + 10
    img = Image.new("RGB", (columns * PANEL, rows * PANEL + legend_h), "white")
    d = ImageDraw.Draw(img)
    for n, (study, by_method) in enumerate(pts.items()):
        ox, oy = (n % columns) * PANEL, (n // columns) * PANEL
        x0, y0, x1, y1 = ox + PAD, oy + 20, ox + PANEL - 10, oy + PANEL - PAD

        def to_px(x: float, y: float, box: tuple[float, ...] = (x0, y0, x1, y1)
                  ) -> tuple[float, float]:
            x0, y0, x1, y1 = box
            fx = (min(max(x, X_RANGE[0]), X_RANGE[1]) - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0])
            fy = (min(max(y, Y_RANGE[0]), Y_RANGE[1]) - Y_RANGE[0]) / (Y_RANGE[1] - Y_RANGE[0])
            return x0 + fx * (x1 - x0), y1 - fy * (y1 - y0)

        goal_y = 0.5 if study.startswith("ct") else 1.0
        gx, gy = to_px(0.75, goal_y)
        d.rectangle([gx, y0, x1, gy], fill=(225, 245, 225))
        d.rectangle([x0, y0, x1, y1], outline=(120, 120, 120))
        for v in (0.0, 1.0):
            px, _ = to_px(v, 0)
            d.line([px, y0, px, y1], fill=(200, 200, 200))
            d.text((px - 4, y1 + 3), f"{v:g}", fill="black")
        for v in (0.5, 1.0):
            _, py = to_px(0, v)
            d.line([x0, py, x1, py], fill=(200, 200, 200))
            d.text((ox + 8, py - 6), f"{v:g}", fill="black")
        d.text((x0, oy + 4), f"{study}   x: grey/white step kept, y: weakest lesion",
               fill="black")
        for m, (x, y) in by_method.items():
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            px, py = to_px(x, y)
            box = [px - 5, py - 5, px + 5, py + 5]
            if m == "composite":
                d.rectangle(box, outline="black", fill=colour[m])
            else:
                d.ellipse(box, outline="black", fill=colour[m])
    for i, m in enumerate(methods):
        lx, ly = 10 + (i % 4) * (columns * PANEL // 4), rows * PANEL + 6 + 18 * (i // 4)
        d.rectangle([lx, ly + 2, lx + 10, ly + 12], fill=colour[m], outline="black")
        d.text((lx + 16, ly), m, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", type=Path)
    ap.add_argument("--png", type=Path, default=Path("study-goals.png"))
    a = ap.parse_args()
    print(f"plot: {draw(json.loads(a.json.read_text()), a.png)}")


if __name__ == "__main__":
    main()
