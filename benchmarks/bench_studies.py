"""Score fusion methods on generated MRI + PET/SPECT/CT studies (medfuse.studies.benchmark).

Generates one study per case (``--cases``: a kind, pet, spect or ct, then ``-t2`` for a
T2-like MRI and ``-stripped`` for a skull-stripped one; MNI152 anatomy when nilearn is
installed, at --resolution mm),
fuses about 24 slices through the head plus every slice through a lesion with each method
through medfuse's real fusion path (default windows and colour maps unless --window /
--colormap say otherwise), and writes:

* a Markdown table and a JSON record (``--json``; the table beside it as ``.md``);
* one picture per study into ``--pictures`` (rows: slices through the lesions; columns:
  MRI | functional | each method), and a montage per study into ``--montages``
  (``study-<case>.png``: MRI | composite | fused | functional);
* with ``--doc``, the table into the block between ``<!-- studies-table:start -->`` and
  ``<!-- studies-table:end -->`` of that Markdown page.

    PYTHONPATH=src python benchmarks/bench_studies.py --resolution 1 \\
        --label "defaults of <commit>" --doc docs/studies.md

Rerun after a change of defaults with a new --label (and --json) to compare. Research
variants of the colour path (``--variant NAME=JSON``, the options of
``medfuse.studies.benchmark.Method``) are scored beside the defaults, e.g.
``--variant 'clip={"gamut_map": "clip"}'``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK_START, MARK_END = "<!-- studies-table:start -->", "<!-- studies-table:end -->"
CASES = ("pet", "spect", "ct", "pet-t2", "spect-t2", "pet-stripped", "spect-stripped")


def _case(name: str) -> tuple[str, str, bool]:
    """``pet-t2-stripped`` -> (kind, MRI contrast, MRI with skull)."""
    kind, *rest = name.strip().lower().split("-")
    if kind not in ("pet", "spect", "ct") or any(r not in ("t2", "stripped") for r in rest):
        raise SystemExit(f"--cases {name!r}: a kind (pet, spect, ct) then -t2 and/or -stripped")
    return kind, "t2" if "t2" in rest else "t1", "stripped" not in rest


def _variants(items: list[str]) -> dict[str, dict[str, object]]:
    """``NAME=JSON`` -> {name: options}."""
    import json

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            options = json.loads(value) if sep else None
        except ValueError:
            options = None
        if not name.strip() or not isinstance(options, dict):
            raise SystemExit(f"--variant {item!r}: expected NAME={{JSON options}}")
        out[name.strip()] = options
    return out


def _pairs(items: list[str], option: str) -> dict[str, str]:
    """``KIND=VALUE`` options -> {kind: value}."""
    out = {}
    for item in items:
        kind, sep, value = item.partition("=")
        if not sep or kind.strip().lower() not in ("pet", "spect", "ct"):
            raise SystemExit(f"{option} {item!r}: expected KIND=VALUE with KIND pet, spect or ct")
        out[kind.strip().lower()] = value.strip()
    return out


def _options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` -> {key: JSON value, or the text when it is not JSON}."""
    import json

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise SystemExit(f"--plan-option {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", "--kinds", nargs="+", default=list(CASES), dest="cases",
                        help="studies: pet, spect or ct, with -t2 and/or -stripped")
    parser.add_argument("--resolution", type=float, default=1.0, help="MRI voxel size in mm")
    parser.add_argument("--anatomy", default="auto", help="auto, mni or phantom")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--studies", type=Path, default=None,
                        help="folder for the generated studies (reused when already there)")
    parser.add_argument("--source", default="dicom", choices=["dicom", "nifti"],
                        help="fuse the studies' DICOM or NIfTI files")
    parser.add_argument("--window", action="append", default=[], metavar="KIND=SPEC",
                        help="window of the functional image, e.g. pet=5,10 or ct=brain")
    parser.add_argument("--mri-window", default=None)
    parser.add_argument("--colormap", action="append", default=[], metavar="KIND=NAME")
    parser.add_argument("--gamut-map", default="fit", choices=["fit", "clip"],
                        help="how colours outside RGB come back, for every method")
    parser.add_argument("--plan-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a further read_pair_plan keyword (VALUE read as JSON when it "
                             "parses, else as text), for options newer planners add")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--alpha-threshold", type=float, default=0.25)
    parser.add_argument("--methods", default="medfuse,reference,composite,alpha",
                        help="comma list: medfuse, reference, composite, alpha, or a "
                             "medfuse.baselines rule (average, max, laplacian, gff)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help="a research variant of the colour path for medfuse's weights")
    parser.add_argument("--weights", type=Path, default=None, help="medfuse weights")
    parser.add_argument("--reference", type=Path,
                        default=ROOT.parent / "shared" / "reference" / "reference-checkpoint.pth")
    parser.add_argument("--count", type=int, default=24, help="slices through the head")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--label", default="defaults at the time of writing")
    parser.add_argument("--code-note", default=None,
                        help="what code ran, when not this checkout's working tree (e.g. a "
                             "clean export of a commit on PYTHONPATH)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "studies.json")
    parser.add_argument("--pictures", type=Path, default=ROOT / "docs" / "img" / "studies")
    parser.add_argument("--montages", type=Path, default=None,
                        help="folder for study-<case>.png: MRI | composite | fused | functional")
    parser.add_argument("--doc", type=Path, default=None,
                        help="Markdown page whose studies-table block gets the table")
    args = parser.parse_args()

    from medfuse.engine import load_model, tune_process

    tuning = tune_process(threads=args.threads)
    from medfuse.studies import Study, generate_study
    from medfuse.studies import benchmark as bench

    settings = bench.BenchSettings(
        label=args.label, windows=_pairs(args.window, "--window"), mri_window=args.mri_window,
        colormaps=_pairs(args.colormap, "--colormap"), source=args.source, alpha=args.alpha,
        alpha_threshold=args.alpha_threshold,
        plan_options={"gamut_map": args.gamut_map, **_options(args.plan_option)})
    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    methods = []
    for name in wanted:
        if name == "medfuse":
            methods.append(bench.default_methods(weights=args.weights)[0])
        elif name == "reference":
            if args.reference.is_file():
                methods.append(bench.Method("reference", "weights", args.reference))
            else:
                print(f"skipping reference: {args.reference} not found", file=sys.stderr)
        elif name in bench.REFERENCE_METHODS:
            methods.append(bench.Method(name, name))
        else:
            methods.append(bench.Method(name, "rule"))
    base = bench.default_methods(weights=args.weights)[0]
    for name, options in _variants(args.variant).items():
        methods.append(bench.Method(name, "weights", base.weights, options))

    folder = args.studies or Path(tempfile.mkdtemp(prefix="medfuse-studies-"))
    t0 = time.perf_counter()
    studies = []
    for case in args.cases:
        kind, contrast, skull = _case(case)
        where = folder / f"{case}-{args.resolution:g}mm-seed{args.seed}"
        if (where / "study.json").is_file():
            studies.append(Study.load(where))
        else:
            studies.append(generate_study(kind, where, resolution=args.resolution, seed=args.seed,
                                          anatomy=args.anatomy, formats=("nifti", "dicom"),
                                          mri_contrast=contrast, mri_skull=skull))
        print(f"{case}: study in {where}", flush=True)
    t_generate = time.perf_counter() - t0

    t1 = time.perf_counter()
    result = bench.run_benchmark(
        studies, methods, settings,
        engine_loader=lambda m: load_model(m.weights, args.device),
        picture_dir=args.pictures, progress=lambda s: print(s, flush=True),
        count=args.count, montage_dir=args.montages)
    t_score = time.perf_counter() - t1
    import torch

    result.meta = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.platform()}",
        "python": platform.python_version(), "torch": torch.__version__,
        "threads": tuning.threads, "device": args.device,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "working_tree_changed": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "code": args.code_note or "this checkout",
        "anatomy": studies[0].anatomy if studies else None, "resolution_mm": args.resolution,
        "seed": args.seed, "generate_s": round(t_generate, 1), "score_s": round(t_score, 1),
        "methods": {m.name: str(m.weights or m.kind) for m in methods},
        "variants": {m.name: m.options for m in methods if m.options},
    }
    shrink_pictures(args.pictures, args.cases)
    if args.montages is not None:
        shrink_pictures(args.montages, [f"study-{c}" for c in args.cases])
    result.write_json(args.json)
    table = result.markdown()
    args.json.with_suffix(".md").write_text(f"{args.label}\n\n{table}")
    print(table)
    print(f"generated in {t_generate:.1f} s, scored in {t_score:.1f} s; "
          f"JSON {args.json}; pictures in {args.pictures}")
    if args.doc is not None:
        _update_doc(args.doc, settings.label, table, result.meta)


def shrink_pictures(folder: Path, names: list[str]) -> None:
    """Re-save each study picture with a 256-colour palette (octree, no dithering): a third
    of the size, so the pictures can live in the repository; the scores come from the
    full-precision images, not from these."""
    from PIL import Image

    for name in names:
        path = folder / f"{name}.png"
        if path.is_file():
            with Image.open(path) as im:
                rgb = im.convert("RGB")
            rgb.quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                         dither=Image.Dither.NONE).save(path, optimize=True)


def _update_doc(doc: Path, label: str, table: str, meta: dict) -> None:
    text = doc.read_text()
    if MARK_START not in text or MARK_END not in text:
        raise SystemExit(f"{doc}: no {MARK_START} ... {MARK_END} block to replace")
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    code = (meta["code"] if meta["code"] != "this checkout" else
            f"commit {meta['commit']}{', working tree changed' if meta['working_tree_changed'] else ''}")
    note = (f"*{label}* ({code}; "
            f"{meta['anatomy']} at {meta['resolution_mm']:g} mm, seed {meta['seed']}; "
            f"{meta['machine']}, {meta['threads']} threads; generated in {meta['generate_s']} s, "
            f"scored in {meta['score_s']} s)\n\n`{meta['command']}`\n\n")
    doc.write_text(f"{head}{MARK_START}\n{note}{table}{MARK_END}{tail}")
    print(f"updated {doc}")


if __name__ == "__main__":
    main()
