"""The registration score against known misalignments, on generated studies.

    python benchmarks/registration_sweep.py [--resolution 2] [--anatomy auto] [--seed 1]
        [--kinds pet,spect,ct] [--register] [--json out.json] [--work DIR]

For every second image (PET, SPECT, CT) and both MRI kinds (with skull, skull-stripped),
generates (``medfuse.studies``) the aligned study, the same study shifted 5, 10, 15 and 20 mm
along x (left-right), y (posterior-anterior) and z (inferior-superior), rotated 2.5, 5 and
10 degrees about each axis, and a 10 degree + 15 mm misalignment; plans each pair as
``medfuse fuse`` does and records its registration score, whether it was warned and the
seconds the score took. With ``--register`` (SimpleITK) the misaligned 10 degree + 15 mm
pair is also planned under ``--register rigid``: its score after registration.

Prints the table of score against shift and rotation (the lowest and highest over the
three axes, the six study kinds), the registered pairs' scores, and the rates at the
threshold: false alarms (aligned pairs warned), misses (10 mm or more, 5 degrees or more,
not warned), and the share warned in between (5 mm, 2.5 degrees: no promise either way).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from medfuse.io.volume import read
from medfuse.prepare.plan import RegistrationWarning, plan_fusion
from medfuse.studies import Rigid, generate_study

SHIFTS_MM = (5.0, 10.0, 15.0, 20.0)
ROTATIONS_DEG = (2.5, 5.0, 10.0)
#: At or beyond these the pair must warn; below them (and above 0) no promise is made.
MUST_WARN_MM, MUST_WARN_DEG = 10.0, 5.0


def cases() -> list[tuple[str, Rigid | None, float, float]]:
    """(name, misalignment, shift mm, rotation deg) of every pair of one study kind."""
    out: list[tuple[str, Rigid | None, float, float]] = [("aligned", None, 0.0, 0.0)]
    for axis, name in enumerate("xyz"):
        for mm in SHIFTS_MM:
            t = [0.0, 0.0, 0.0]
            t[axis] = mm
            out.append((f"shift {name} {mm:g} mm", Rigid(translation_mm=tuple(t)), mm, 0.0))
        for deg in ROTATIONS_DEG:
            r = [0.0, 0.0, 0.0]
            r[axis] = deg
            out.append((f"rotate {name} {deg:g} deg", Rigid(rotation_deg=tuple(r)), 0.0, deg))
    out.append(("10 deg + 15 mm", Rigid(rotation_deg=(10.0, 0.0, 0.0),
                                        translation_mm=(15.0, 0.0, 0.0)), 15.0, 10.0))
    return out


def plan_one(study: Any, kind: str, register: str | None = None) -> dict[str, Any]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        plan = plan_fusion(read(study.mri_path), read(study.other_path), modality=kind,
                           register=register)
        seconds = time.perf_counter() - start
    m = plan.registration_score
    assert m is not None
    start = time.perf_counter()
    from medfuse.prepare.plan import score_pair

    score_pair(plan)
    score_s = time.perf_counter() - start
    return {"score": m.score, "threshold": m.threshold, "warned": m.low,
            "registered_by": m.registered_by, "misalignment_mm": m.misalignment_mm,
            "plan_s": round(seconds, 3), "score_s": round(score_s, 3), "detail": m.detail,
            "warnings": [str(w.message) for w in caught
                         if issubclass(w.category, RegistrationWarning)]}


def sweep(work: Path, resolution: float, anatomy: str, seed: int, kinds: list[str],
          register: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        for skull in (True, False):
            mri = "with skull" if skull else "skull-stripped"
            for name, mis, mm, deg in cases():
                folder = work / f"{kind}-{'skull' if skull else 'stripped'}-{len(rows)}"
                study = generate_study(kind, folder, resolution=resolution, anatomy=anatomy,
                                       seed=seed, misalign=mis, mri_skull=skull, force=True)
                row = {"kind": kind, "mri": mri, "case": name, "shift_mm": mm,
                       "rotation_deg": deg} | plan_one(study, kind)
                rows.append(row)
                print(f"{kind:5s} {mri:14s} {name:18s} score {row['score']:.2f} "
                      f"({row['misalignment_mm'] if row['misalignment_mm'] is not None else 'n/a'}"
                      f" mm) warned {row['warned']}  {row['score_s']:.2f} s", flush=True)
                if register and name == "10 deg + 15 mm":
                    reg = {"kind": kind, "mri": mri, "case": name + ", --register rigid",
                           "shift_mm": mm, "rotation_deg": deg} | plan_one(study, kind, "rigid")
                    rows.append(reg)
                    print(f"{kind:5s} {mri:14s} registered rigid    score {reg['score']:.2f} "
                          f"warned {reg['warned']} ({len(reg['warnings'])} warnings)", flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> str:
    def span(sel: list[dict[str, Any]]) -> str:
        s = [r["score"] for r in sel if r["score"] is not None]
        if not s:
            return ""
        lo, hi = min(s), max(s)
        warned = sum(r["warned"] for r in sel)
        cell = f"{lo:.2f}" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}"
        return f"{cell} ({warned}/{len(sel)})"

    plain = [r for r in rows if "--register" not in r["case"]]
    combos = sorted({(r["kind"], r["mri"]) for r in plain}, key=lambda c: (c[0], c[1] != "with skull"))
    head = "| misalignment | " + " | ".join(f"{k.upper()}, MRI {m}" for k, m in combos) + " |"
    lines = [head, "|---" * (len(combos) + 1) + "|"]
    labels: list[tuple[str, Any]] = [("aligned", lambda r: r["case"] == "aligned")]
    labels += [(f"shift {mm:g} mm (x, y or z)", lambda r, mm=mm: r["case"].startswith("shift")
                and r["shift_mm"] == mm) for mm in SHIFTS_MM]
    labels += [(f"rotation {d:g} deg (about x, y or z)", lambda r, d=d: r["case"].startswith(
        "rotate") and r["rotation_deg"] == d) for d in ROTATIONS_DEG]
    labels.append(("10 deg + 15 mm", lambda r: r["case"] == "10 deg + 15 mm"))
    labels.append(("10 deg + 15 mm, then --register rigid",
                   lambda r: r["case"] == "10 deg + 15 mm, --register rigid"))
    for label, pick in labels:
        cells = [span([r for r in rows if (r["kind"], r["mri"]) == c and pick(r)]) for c in combos]
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    aligned = [r for r in plain if r["case"] == "aligned"]
    must = [r for r in plain if r["shift_mm"] >= MUST_WARN_MM or r["rotation_deg"] >= MUST_WARN_DEG]
    between = [r for r in plain if r not in aligned and r not in must]
    registered = [r for r in rows if "--register" in r["case"]]
    times = sorted(r["score_s"] for r in plain)
    threshold = rows[0]["threshold"]
    lines += ["", f"cells: lowest-highest score (warned / pairs); warn below {threshold:g}",
              f"false alarms (aligned pairs warned): {sum(r['warned'] for r in aligned)}/{len(aligned)}",
              f"misses (>= {MUST_WARN_MM:g} mm or >= {MUST_WARN_DEG:g} deg, not warned): "
              f"{sum(not r['warned'] for r in must)}/{len(must)}",
              f"warned in between (5 mm, 2.5 deg): {sum(r['warned'] for r in between)}/{len(between)}"]
    if registered:
        lines.append("registered by --register rigid: scores "
                     + ", ".join(f"{r['score']:.2f}" for r in registered)
                     + f"; registration warnings {sum(bool(r['warnings']) for r in registered)}"
                     f"/{len(registered)}")
    lines.append(f"score cost per volume: median {times[len(times) // 2]:.2f} s, "
                 f"max {times[-1]:.2f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resolution", type=float, default=2.0)
    p.add_argument("--anatomy", default="auto")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kinds", default="pet,spect,ct")
    p.add_argument("--register", action="store_true", help="also plan under --register rigid")
    p.add_argument("--json", type=Path)
    p.add_argument("--work", type=Path, help="folder for the studies (default: a temporary one)")
    a = p.parse_args(argv)
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    with tempfile.TemporaryDirectory(prefix="medfuse-regsweep-") as tmp:
        rows = sweep(a.work or Path(tmp), a.resolution, a.anatomy, a.seed, kinds, a.register)
    text = summary(rows)
    print(text)
    if a.json:
        a.json.write_text(json.dumps({"resolution": a.resolution, "anatomy": a.anatomy,
                                      "seed": a.seed, "rows": rows, "summary": text}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
