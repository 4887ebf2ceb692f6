"""The SSIM / contrast trade-off over candidate weights, from one `medfuse eval --json`.

    python docs/tools/pareto.py eval.json --candidates v1,C,D,v2 [--ship v2]
        [--ref ref] [--svg docs/img/pareto.svg] [--study v2=studies.json ...]

For every candidate (and the reference checkpoint and classical baselines as fixed
points) the task means of SSIM, SCD, SD and Qabf (standard profile) and how many of the
weights-v2 goals it meets (``benchmarks/v2_goals.py``). A candidate is on the front when no
other candidate has SSIM and SCD both at least as high and one of them higher: the two
metrics that pull hardest against each other (a darker or flatter fused image scores
better SSIM against both sources and worse SCD and SD). Prints a markdown table; with
``--svg`` draws SSIM against SCD as a plain SVG (no plotting library needed).

``--study LABEL=studies.json`` (one per candidate, from ``benchmarks/bench_studies.py``)
adds the PET study's anatomy r and hot-lesion ratio as columns. When every candidate has
one, the front is taken over all four (SSIM, SCD, anatomy r, hot lesion): a candidate
that gives up atlas contrast for the realistic study is then on the front only if no
other candidate is at least as good on the study too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from v2_goals import goals  # noqa: E402

TASKS = ("MRI_CT", "MRI_PET", "MRI_SPECT")
BASELINES = ("average", "max", "laplacian", "gff")


def task_mean(mean: dict, label: str, metric: str, profile: str = "standard") -> float:
    """Mean over the three tasks (each task weighs the same, whatever its pair count)."""
    return sum(mean[(t, label, profile, metric)] for t in TASKS) / len(TASKS)


def front(points: dict[str, tuple[float, ...]]) -> set[str]:
    """Labels not dominated: no other point at least as high on every axis and not equal."""
    out = set()
    for k, p in points.items():
        if not any(all(b >= a for a, b in zip(p, q)) and q != p
                   for k2, q in points.items() if k2 != k):
            out.add(k)
    return out


def pet_study(path: Path) -> tuple[float, float]:
    """(anatomy r, hot-lesion ratio) of medfuse on the PET study of a bench_studies JSON."""
    doc = json.loads(path.read_text())
    for row in doc["scores"]:
        if row["study"] == "pet" and row["method"] == "medfuse":
            return row["anatomy_r"], row["lesion_ratio"]["hot"]
    raise SystemExit(f"error: {path} has no medfuse score on a PET study")


def svg(points: dict[str, tuple[float, float]], kinds: dict[str, str], ship: str | None,
        note: str = "") -> str:
    """SSIM (x) against SCD (y), one labelled point per method."""
    w, h, pad = 640, 420, 60
    xs = [p[0] for p in points.values()]
    ys = [p[1] for p in points.values()]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    dx, dy = (x1 - x0) or 1e-3, (y1 - y0) or 1e-3
    x0, x1, y0, y1 = x0 - 0.08 * dx, x1 + 0.45 * dx, y0 - 0.08 * dy, y1 + 0.15 * dy

    def px(x: float, y: float) -> tuple[float, float]:
        return (pad + (x - x0) / (x1 - x0) * (w - 2 * pad),
                h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
             f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">SSIM (standard, mean of 3 tasks)</text>',
             f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">'
             'SCD (mean of 3 tasks)</text>']
    for i in range(5):
        xv = x0 + (x1 - x0) * i / 4
        yv = y0 + (y1 - y0) * i / 4
        gx, _ = px(xv, y0)
        _, gy = px(x0, yv)
        parts.append(f'<text x="{gx}" y="{h - pad + 16}" text-anchor="middle">{xv:.4f}</text>')
        parts.append(f'<text x="{pad - 6}" y="{gy + 4}" text-anchor="end">{yv:.3f}</text>')
    colours = {"candidate": "#1f77b4", "reference": "#d62728", "baseline": "#7f7f7f"}
    label_y: dict[str, float] = {}
    last = -1e9
    for k in sorted(points, key=lambda k: px(*points[k])[1]):  # top to bottom, 13 px apart
        last = max(px(*points[k])[1] - 6, last + 13)
        label_y[k] = last
    for k, (x, y) in points.items():
        cx, cy = px(x, y)
        r = 7 if k == ship else 4
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r}" fill="{colours[kinds[k]]}"/>')
        label = f"{k} (shipped)" if k == ship else k
        ly = label_y[k]
        if abs(ly - (cy - 6)) > 1:  # moved: a leader line back to its point
            parts.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{cx + 30:.1f}" y2="{ly - 4:.1f}" stroke="#bbb"/>')
            parts.append(f'<text x="{cx + 32:.1f}" y="{ly:.1f}">{label}</text>')
        else:
            parts.append(f'<text x="{cx + 8:.1f}" y="{ly:.1f}">{label}</text>')
    if note:
        parts.append(f'<text x="{pad + 6}" y="{pad - 20}">{note}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("json", type=Path)
    ap.add_argument("--candidates", required=True, help="comma-separated method labels")
    ap.add_argument("--ref", default="ref")
    ap.add_argument("--ship", default=None)
    ap.add_argument("--svg", type=Path, default=None)
    ap.add_argument("--study", action="append", default=[], metavar="LABEL=JSON",
                    help="bench_studies JSON of a candidate: adds PET anatomy r and hot lesion")
    a = ap.parse_args()
    doc = json.loads(a.json.read_text())
    mean = {(s["task"], s["method"], s["profile"], s["metric"]): s["mean"] for s in doc["summary"]}
    labels = {m["label"] for m in doc["methods"]}
    cands = [c for c in a.candidates.split(",") if c]
    missing = [c for c in cands + [a.ref] if c not in labels]
    if missing:
        raise SystemExit(f"error: not in {a.json}: {', '.join(missing)}")
    kinds = {c: "candidate" for c in cands}
    kinds[a.ref] = "reference"
    kinds.update({b: "baseline" for b in BASELINES if b in labels})
    studies = {}
    for item in a.study:
        label, sep, path = item.partition("=")
        if not sep or label not in cands:
            raise SystemExit(f"error: --study {item!r}: expected CANDIDATE=studies.json")
        studies[label] = pet_study(Path(path))
    points = {k: (task_mean(mean, k, "SSIM"), task_mean(mean, k, "SCD")) for k in kinds}
    with_study = bool(studies) and all(k in studies for k in cands)
    on_front = front({k: points[k] + (studies[k] if with_study else ()) for k in cands})
    head = "| weights | SSIM | SCD | SD | Qabf | goals met |"
    if studies:
        head += " PET study r | PET hot lesion |"
    print(head + " on the front |")
    print("|---" * (head.count("|")) + "|")
    for k in kinds:
        met = goals(doc, k, a.ref) if kinds[k] == "candidate" else None
        g = f"{met[1]}/{met[2]}" if met else "-"
        name = f"**{k}**" if k == a.ship else k
        flag = "yes" if k in on_front else ("no" if kinds[k] == "candidate" else "-")
        row = (f"| {name} ({kinds[k]}) | {points[k][0]:.4f} | {points[k][1]:.3f} | "
               f"{task_mean(mean, k, 'SD'):.1f} | {task_mean(mean, k, 'Qabf'):.4f} | {g} |")
        if studies:
            r, lesion = studies.get(k, (None, None))
            row += f" {r:.4f} | {lesion:.3f} |" if r is not None else " - | - |"
        print(f"{row} {flag} |")
    if a.svg:
        # the reference's standard SSIM (~0.49) would squeeze every other point together:
        # it is left off the plot and named in a note
        shown = {k: v for k, v in points.items() if kinds[k] != "reference"}
        note = (f"{a.ref} (off the plot): SSIM {points[a.ref][0]:.4f}, SCD {points[a.ref][1]:.3f}")
        a.svg.write_text(svg(shown, kinds, a.ship, note))
        print(f"\nplot: {a.svg}")


if __name__ == "__main__":
    main()
