"""False alarms and catches of the ordinary-image checks, on the atlas pairs and the samples.

    python benchmarks/pair_checks.py [--data ../shared/data/harvard]
        [--samples ../shared/reference/samples] [--split val] [--json out.json]
        [--no-mismatches]

For every registered pair of each task (MRI_CT, MRI_PET, MRI_SPECT) under
``DATA/<TASK>/<split>/`` and ``SAMPLES/<TASK>/``, plans the pair as ``medfuse fuse`` would
and counts the pairs that earn a warning (a false alarm: these pairs are registered and the
right way round). Then counts how often each mistake is caught:

* swapped: the CT given first and the MRI second (MRI_CT pairs);
* not one head: the MRI of pair i with the other image of pair j, every i != j within a
  task (a registration warning);
* the same image twice: refused (exit 2), for every MRI.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from medfuse.errors import UsageError
from medfuse.io.images import read_image
from medfuse.prepare.image_checks import ModalityWarning
from medfuse.prepare.plan import RegistrationWarning, plan_fusion

TASKS = ("MRI_CT", "MRI_PET", "MRI_SPECT")


def task_pairs(task_dir: Path, task: str) -> list[tuple[Path, Path]]:
    """(MRI, other) paths of one task folder, matched by name."""
    other = task.split("_")[1]
    mris = sorted((task_dir / "MRI").glob("*.png"))
    return [(m, task_dir / other / m.name) for m in mris if (task_dir / other / m.name).is_file()]


def warned(mri: Path, other: Path) -> tuple[set[str], bool]:
    """The warning kinds planning the pair raises, and whether it was refused."""
    kinds: set[str] = set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            plan_fusion(read_image(mri), read_image(other))
        except UsageError:
            return kinds, True
    for w in caught:
        if issubclass(w.category, RegistrationWarning):
            kinds.add("registration")
        elif issubclass(w.category, ModalityWarning):
            kinds.add("modality")
    return kinds, False


def measure(root: Path, label: str, split: str | None = None, mismatches: bool = True
            ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task in TASKS:
        pairs = task_pairs(root / task / split if split else root / task, task)
        if not pairs:
            continue
        alarms = [(m.name, sorted(k)) for m, o in pairs for k in [warned(m, o)[0]] if k]
        row: dict[str, Any] = {"pairs": len(pairs), "false_alarms": len(alarms),
                               "false_alarm_pairs": alarms}
        refused = sum(warned(m, m)[1] for m, _ in pairs)
        row["same_image_refused"] = f"{refused}/{len(pairs)}"
        if task == "MRI_CT":
            swapped = sum("modality" in warned(o, m)[0] for m, o in pairs)
            row["swapped_caught"] = f"{swapped}/{len(pairs)}"
        if not mismatches:
            out[task] = row
            print(label, task, {k: v for k, v in row.items() if k != "false_alarm_pairs"},
                  row["false_alarm_pairs"][:5], flush=True)
            continue
        caught = total = 0
        for i, (m, _) in enumerate(pairs):
            for j, (_, o) in enumerate(pairs):
                if i != j:
                    total += 1
                    caught += "registration" in warned(m, o)[0]
        row["other_head_caught"] = f"{caught}/{total} ({caught / total:.0%})"
        out[task] = row
        print(label, task, {k: v for k, v in row.items() if k != "false_alarm_pairs"},
              row["false_alarm_pairs"][:5], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/harvard"))
    ap.add_argument("--samples", type=Path, default=Path("../shared/reference/samples"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-mismatches", action="store_true",
                    help="skip the other-head count (it plans n^2 pairs per task)")
    args = ap.parse_args()
    result = {
        args.split: (measure(args.data, args.split, args.split, not args.no_mismatches)
                     if args.data.is_dir() else {}),
        "samples": measure(args.samples, "samples") if args.samples.is_dir() else {},
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
