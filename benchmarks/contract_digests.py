"""Digests of everything medfuse writes for a fixed small corpus, so a refactoring can be
shown to change no output byte.

    PYTHONPATH=src python benchmarks/contract_digests.py > before.txt
    ... change the code ...
    PYTHONPATH=src python benchmarks/contract_digests.py > after.txt
    diff before.txt after.txt

The corpus is generated (no atlas images): the mixed batch cohort of the tests (PNG pairs,
NIfTI volumes, DICOM MRI series with NIfTI PET), one generated phantom PET study written as
NIfTI and as DICOM, and grey PNG pairs. It is fused with the bundled weights on the CPU
through the command line (a fresh process per command, as a user runs it): ``fuse`` on PNG,
NIfTI and DICOM inputs (NIfTI, DICOM and PNG outputs), ``batch`` serial, ``--workers 2`` and
``--backend ray`` (when Ray is installed), and ``masks``, with non-default windows, colour
map, gamut map, floor and preview options.

Every file written is printed with its sha256. Provenance records (``*.json``) and ledgers
are printed as their content with times, durations and the run's folder removed (ledger rows
in name order: parallel backends append them as pairs finish), so two
runs compare equal when they decided and wrote the same things. gzip headers carry the
staging file's random name; that field is dropped before hashing (see tests/helpers/cohort).
DICOM files are hashed without their UIDs, dates, times and group lengths (new UIDs every
run, by design), and a record's sha256 of a DICOM output is left out for the same reason.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the cohort builder and gzip rule the tests use

#: Record and ledger keys that hold a time or a duration (never equal between two runs).
TIME_KEYS = ("created", "timings", "time", "started", "finished", "seconds", "duration", "elapsed", "date", "when")


def _is_time_key(key: str) -> bool:
    k = key.lower()
    return any(t in k for t in TIME_KEYS)


def _scrub(value: Any, root: str) -> Any:
    if isinstance(value, dict) and value.get("format") == "dicom" and "sha256" in value:
        value = {k: v for k, v in value.items() if k != "sha256"}  # a DICOM output's UIDs
    if isinstance(value, dict):
        return {k: _scrub(v, root) for k, v in value.items() if not _is_time_key(k)}
    if isinstance(value, list):
        return [_scrub(v, root) for v in value]
    if isinstance(value, str):  # the run's folder and the checkout (the bundled weights)
        return value.replace(root, "<ROOT>").replace(str(ROOT), "<CHECKOUT>")
    return value


def _corpus(src: Path) -> None:
    from helpers.cohort import mixed_cohort
    from medfuse.io.images import write_image
    from medfuse.phantom import brain_phantom
    from medfuse.studies import Grid, generate_study

    mixed_cohort(src / "cohort", n=6, size=32)
    study = generate_study("pet", src / "study", resolution=6, anatomy="phantom",
                           formats=("nifti", "dicom"), grid=Grid((8.0, 8.0, 8.0), "LPS"))
    grey = src / "grey"
    for i in range(2):
        mri, pet = brain_phantom(48, seed=10 + i)
        write_image(grey / "MRI" / f"g{i}.png", mri)
        write_image(grey / "PET" / f"g{i}.png", pet.mean(axis=-1) if pet.ndim == 3 else pet)
    del study


def _corpus_paths(src: Path) -> dict[str, Path]:
    import json as _json

    d = src / "study"
    files = _json.loads((d / "study.json").read_text())["files"]
    grey = src / "grey"
    return {
        "png_mri": grey / "MRI" / "g0.png", "png_pet": grey / "PET" / "g0.png",
        "rgb_mri": src / "cohort" / "MRI" / "s00.png", "rgb_pet": src / "cohort" / "PET" / "s00.png",
        "nii_mri": d / files["mri"], "nii_pet": d / files["other"],
        "dcm_mri": d / files["mri_dicom"], "dcm_pet": d / files["other_dicom"],
        "cohort": src / "cohort", "grey": grey,
    }


def _commands(c: dict[str, Path], out: Path, ray: bool) -> list[tuple[str, list[str]]]:
    cmds = [
        ("fuse-png", ["fuse", c["png_mri"], c["png_pet"], "-o", out / "fuse-png" / "g0.png",
                      "--colormap", "hot", "--gamut-map", "clip", "--modality", "pet"]),
        ("fuse-rgb", ["fuse", c["rgb_mri"], c["rgb_pet"], "-o", out / "fuse-rgb" / "s00.png"]),
        ("fuse-nifti", ["fuse", c["nii_mri"], c["nii_pet"], "-o", out / "fuse-nifti" / "f.nii.gz",
                        "--window", "3,6", "--colormap", "jet", "--gamut-map", "clip",
                        "--floor", "0.5", "--preview", out / "fuse-nifti" / "preview.png",
                        "--preview-style", "triptych"]),
        ("fuse-nifti-png", ["fuse", c["nii_mri"], c["nii_pet"], "-o",
                            out / "fuse-nifti-png" / "f.png", "--slices", "10:14",
                            "--colormap", "pet", "--floor", "none", "--axis", "coronal"]),
        ("fuse-dicom", ["fuse", c["dcm_mri"], c["dcm_pet"], "-o", out / "fuse-dicom" / "series",
                        "--format", "dicom", "--colormap", "hot-iron", "--floor", "2",
                        "--window", "0,8", "--preview", out / "fuse-dicom" / "preview.png"]),
        ("fuse-dicom-nifti", ["fuse", c["dcm_mri"], c["dcm_pet"], "-o",
                              out / "fuse-dicom-nifti" / "f.nii.gz", "--mri-window", "300,500"]),
        ("batch-serial", ["batch", c["cohort"], out / "batch-serial", "--colormap", "jet",
                          "--gamut-map", "clip"]),
        ("batch-workers", ["batch", c["cohort"], out / "batch-workers", "--workers", "2",
                           "--colormap", "jet", "--gamut-map", "clip"]),
        ("batch-grey", ["batch", c["grey"], out / "batch-grey", "--workers", "2",
                        "--colormap", "sunset", "-m", "spect"]),
        ("masks-png", ["masks", c["png_mri"], c["png_pet"], "-o", out / "masks-png",
                       "--colormap", "hot", "-m", "pet"]),
        ("masks-nifti", ["masks", c["nii_mri"], c["nii_pet"], "-o", out / "masks-nifti",
                         "--slice", "12", "--window", "3,6"]),
    ]
    if ray:
        cmds.append(("batch-ray", ["batch", c["cohort"], out / "batch-ray", "--backend", "ray",
                                   "--workers", "2", "--colormap", "jet", "--gamut-map", "clip"]))
    return [(name, [str(a) for a in args]) for name, args in cmds]


def _digest_file(path: Path, root: str) -> str:
    from helpers.cohort import _gzip_without_staging_name

    data = path.read_bytes()
    if path.name.endswith(".json"):
        try:
            return json.dumps(_scrub(json.loads(data), root), sort_keys=True)
        except ValueError:
            pass
    if path.name.startswith("medfuse-ledger"):
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        # rows in name order: parallel backends append them in the order pairs finish
        rows.sort(key=lambda r: (r.get("name", ""), r.get("output", "")))
        return json.dumps([_scrub(r, root) for r in rows], sort_keys=True)
    if path.name.endswith(".gz"):
        data = _gzip_without_staging_name(data)
    if path.suffix == ".dcm":
        data = _dicom_without_uids_and_times(path)
    return hashlib.sha256(data).hexdigest()


def _dicom_without_uids_and_times(path: Path) -> bytes:
    """A DICOM output with every UID, date and time left out: each run mints new instance,
    series and study UIDs and stamps its creation time (as it must); the rest (pixels,
    geometry, window, every other attribute, nested sequences) is compared as written."""
    import pydicom

    ds = pydicom.dcmread(path)
    lines: list[str] = []

    def walk(d: Any, depth: int) -> None:
        for elem in d:
            if elem.VR in ("UI", "DA", "TM", "DT") or elem.tag.element == 0:
                continue  # group lengths: they follow the UIDs' lengths
            if elem.VR == "SQ":
                lines.append(f"{depth} {elem.tag} SQ {len(elem.value)}")
                for item in elem.value:
                    walk(item, depth + 1)
            else:
                value = elem.value
                if isinstance(value, bytes):
                    value = hashlib.sha256(value).hexdigest()
                lines.append(f"{depth} {elem.tag} {elem.VR} {value!r}")

    walk(ds.file_meta, 0)
    walk(ds, 0)
    return "\n".join(lines).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="write into this folder and keep it")
    parser.add_argument("--inputs", type=Path,
                        help="the corpus folder: generated there when absent, reused when "
                             "present (the DICOM test series get new UIDs each time they are "
                             "made, so compare two runs on one corpus)")
    parser.add_argument("--no-ray", action="store_true", help="leave the Ray backend out")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="medfuse-digests-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        inputs = args.inputs or work / "in"
        if not (inputs / "done").exists():
            shutil.rmtree(inputs, ignore_errors=True)
            _corpus(inputs)
            (inputs / "done").write_text("")
        corpus = _corpus_paths(inputs)
        ray = not args.no_ray
        if ray:
            try:
                import ray as _ray  # noqa: F401
            except ImportError:
                ray = False
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), CUDA_VISIBLE_DEVICES="")
        exe = [sys.executable, "-c", "from medfuse.cli import main; main()"]
        failed = 0
        for name, cmd in _commands(corpus, work / "out", ray):
            res = subprocess.run([*exe, *cmd, "-q"], env=env, capture_output=True, text=True)
            print(f"## {name}: exit {res.returncode}")
            if res.returncode != 0:
                failed += 1
                print("   " + (res.stderr.strip().splitlines() or [""])[-1])
        root = str(work)
        if args.inputs is not None:
            print(f"inputs {args.inputs.resolve()}")
        for path in sorted(p for p in (work / "out").rglob("*") if p.is_file()):
            print(f"{path.relative_to(work / 'out').as_posix()}  {_digest_file(path, root)}")
        return 1 if failed else 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
