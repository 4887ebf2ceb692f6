"""Dataset layout: which files pair with which, for ``batch``, ``eval`` and ``train``.

Two ways to say it:

* **folders**: a task folder holds ``MRI/`` and exactly one of ``CT/``, ``PET/``, ``SPECT/``
  (any case); inputs pair by name stem (``MRI/7.png`` with ``PET/7.png``, ``MRI/s1/`` with
  ``PET/s1.nii.gz``). A dataset root holds task folders (``MRI_CT/``...), optionally split
  (``MRI_CT/val/``). ``batch``, ``eval`` and ``train`` all take a task folder or a root by
  this one rule (:func:`find_tasks`).
* **pairs.csv**: columns ``mri``, ``other`` and optionally ``out``, paths relative to a base
  folder. UTF-8 with or without a byte-order mark (as Excel saves it).

Problems with single entries (no partner, two files with one stem, an unreadable row) are
returned beside the pairs, never raised, so a batch can report them and go on.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from medfuse.errors import UsageError
from medfuse.vocabulary import MRI_FOLDER, OTHER_FOLDERS, modality_of_folder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: Folder names that are data splits, never task names.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
#: Largest pairs.csv medfuse reads (a list of paths, not data).
MAX_CSV_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Pair:
    """One registered pair: the MRI and the other image, named by the MRI's stem."""

    name: str
    mri: Path
    other: Path
    #: The other image's modality when the layout says it (its folder), else None.
    modality: str | None = None
    #: Output name from pairs.csv (relative to the output folder), if given.
    out: str | None = None


@dataclass
class Task:
    """A task folder: its pairs and the entries that could not be paired."""

    name: str
    folder: Path
    modality: str
    pairs: list[Pair]
    problems: list[tuple[str, str]] = field(default_factory=list)  # (entry, reason)


def path_stem(path: str | PurePath) -> str:
    """Name without its format suffix (``.nii.gz`` counts as one); folders keep their name."""
    name = PurePath(path).name
    low = name.lower()
    for suffix in (".nii.gz", ".nii", *IMAGE_SUFFIXES, *DICOM_SUFFIXES):
        if low.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def is_input_entry(path: Path, images_only: bool = False) -> bool:
    """Whether a folder entry is something medfuse reads: an image, NIfTI or DICOM file, or
    (a DICOM series) a folder. Hidden entries never are."""
    if path.name.startswith("."):
        return False
    low = path.name.lower()
    if images_only:
        return path.suffix.lower() in IMAGE_SUFFIXES and not path.is_dir()
    if path.is_dir():
        return True
    return path.suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES or low.endswith(NIFTI_SUFFIXES)


def inputs_by_stem(folder: Path, images_only: bool = False) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """Inputs of a folder keyed by stem, and problems: two entries sharing a stem
    (``a.png`` beside ``a.jpg``) are both refused rather than one silently ignored."""
    found: dict[str, list[Path]] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise UsageError(f"cannot list {folder}: {exc.strerror or exc}") from None
    for p in entries:
        if is_input_entry(p, images_only):
            found.setdefault(path_stem(p), []).append(p)
    unique = {s: ps[0] for s, ps in found.items() if len(ps) == 1}
    problems = [
        (f"{folder.name}/{s}", "several inputs share this name ("
         + ", ".join(p.name for p in ps) + "); rename all but one")
        for s, ps in found.items() if len(ps) > 1
    ]
    return unique, problems


def _subdir(root: Path, name: str) -> Path | None:
    """A child folder whose name matches ``name`` in any case."""
    try:
        children = sorted(root.iterdir())
    except OSError:
        return None
    for child in children:
        if child.is_dir() and child.name.upper() == name.upper():
            return child
    return None


def task_folders(folder: Path) -> tuple[Path, Path] | None:
    """(MRI folder, other folder) if ``folder`` is a task folder; UsageError if it holds
    several second-modality folders (which pair with the MRI would be a guess)."""
    mri = _subdir(folder, MRI_FOLDER)
    others = [d for d in (_subdir(folder, n) for n in OTHER_FOLDERS) if d is not None]
    if mri is None or not others:
        return None
    if len(others) > 1:
        raise UsageError(
            f"{folder} holds several second-modality folders "
            f"({', '.join(d.name for d in others)}); give one task per folder (or use --pairs)"
        )
    return mri, others[0]


def read_task(folder: Path, name: str | None = None, images_only: bool = False) -> Task:
    """Pairs of one task folder, matched by stem."""
    layout = task_folders(folder)
    if layout is None:
        raise UsageError(f"{folder} must hold {MRI_FOLDER}/ and one of "
                         f"{', '.join(f + '/' for f in OTHER_FOLDERS)} (or use --pairs)")
    mri_dir, other_dir = layout
    modality = modality_of_folder(other_dir.name) or "ct"
    mris, p1 = inputs_by_stem(mri_dir, images_only)
    others, p2 = inputs_by_stem(other_dir, images_only)
    pairs = [Pair(s, mris[s], others[s], modality) for s in mris if s in others]
    problems = p1 + p2
    problems += [(f"{mri_dir.name}/{mris[s].name}", f"no matching input in {other_dir.name}/")
                 for s in mris if s not in others]
    problems += [(f"{other_dir.name}/{others[s].name}", "no matching MRI")
                 for s in others if s not in mris]
    return Task(name or folder.name, folder, modality, pairs, problems)


def _task_name(folder: Path, split: str | None) -> str:
    """A task folder named like a split (``MRI_CT/val``) takes its parent's name."""
    if folder.name.lower() in SPLIT_NAMES or (split and folder.name == split):
        return folder.resolve().parent.name
    return folder.name


def find_tasks(root: str | Path, split: str | None = None, images_only: bool = False,
               require_pairs: bool = True) -> list[Task]:
    """The task folders under ``root``: the one layout rule of ``batch``, ``eval`` and
    ``train``.

    ``root`` is a task folder itself, or holds ``<split>/`` (with ``split``), or holds task
    folders ``<TASK>/`` (without ``split``) or ``<TASK>/<split>/`` (with it). A root of splits
    without ``split`` (``MRI_CT/{train,val}``) is refused rather than read as two tasks
    called "train" and "val". ``require_pairs``: refuse a root where no task has a pair
    (``batch`` instead reports the unpaired entries as failures).
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"data folder not found: {root}")
    if task_folders(root) is not None:
        if split and root.name != split:
            raise UsageError(
                f"--split {split}: {root} is already a task folder (MRI/ + second "
                "modality); drop --split or give its parent"
            )
        tasks = [read_task(root, _task_name(root, split), images_only)]
    elif split and (root / split).is_dir() and task_folders(root / split) is not None:
        tasks = [read_task(root / split, root.name, images_only)]
    else:
        children = sorted(c for c in root.iterdir() if c.is_dir() and not c.name.startswith("."))
        tasks = []
        for child in children:
            folder = child / split if split else child
            if folder.is_dir() and task_folders(folder) is not None:
                tasks.append(read_task(folder, child.name, images_only))
        if not tasks:
            splits = sorted({g.name for c in children for g in c.iterdir()
                             if g.is_dir() and task_folders(g) is not None}) if children else []
            hint = f" (found splits {', '.join(splits)}: pick one with --split)" if splits and not split else ""
            where = f"<TASK>/{split}/" if split else "<TASK>/"
            raise UsageError(
                f"{root} holds no task folder: expected MRI/ + CT/|PET/|SPECT/ in it or "
                f"in {where}{hint}"
            )
        if not split and all(t.name.lower() in SPLIT_NAMES for t in tasks):
            raise UsageError(
                f"{root} holds the splits {', '.join(t.name for t in tasks)}, not tasks: "
                "pick one with --split"
            )
    if require_pairs and not any(t.pairs for t in tasks):
        raise UsageError(f"no matching MRI/second-image pairs under {root}")
    return tasks


def dataset_pairs(root: str | Path, split: str | None = None, images_only: bool = False
                  ) -> tuple[list[Pair], list[tuple[str, str]], list[Path]]:
    """Every pair under ``root`` by :func:`find_tasks`'s rule, as one list: the pairs, the
    entries that could not be paired, and the folders the inputs were found in (``MRI/``,
    ``PET/``..., where no output may go).

    A single task folder's pairs keep their names. Under a root of several task folders
    each pair is named ``TASK/NAME`` (``MRI_CT/7`` and ``MRI_PET/7`` are two pairs), so its
    output lands in ``OUT/TASK/``: the layout ``eval --fused`` reads back.
    """
    tasks = find_tasks(root, split, images_only, require_pairs=False)
    several = len(tasks) > 1
    pairs: list[Pair] = []
    problems: list[tuple[str, str]] = []
    folders: list[Path] = []
    for task in tasks:
        prefix = f"{task.name}/" if several else ""
        pairs += [Pair(prefix + p.name, p.mri, p.other, p.modality, p.out) for p in task.pairs]
        problems += [(prefix + entry, reason) for entry, reason in task.problems]
        folders += list(task_folders(task.folder) or ())
    return pairs, problems, folders


def _csv_text(csv_path: Path) -> str:
    if not csv_path.is_file():
        if csv_path.exists():
            raise UsageError(f"pairs file {csv_path} is not a regular file (a folder, pipe "
                             "or device)")
        raise UsageError(f"pairs file not found: {csv_path}")
    if csv_path.stat().st_size > MAX_CSV_BYTES:
        raise UsageError(f"{csv_path} is larger than {MAX_CSV_BYTES // 2**20} MiB; "
                         "a pairs file lists paths")
    try:
        return csv_path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{csv_path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"cannot read {csv_path}: {exc.strerror or exc}") from None


def safe_output_name(name: str) -> str | None:
    """``name`` if it is a relative path that stays inside the output folder, else None.
    Control characters (NUL, newline, ESC...) are refused too: a file name holding them
    breaks every listing that prints it and can carry terminal escape sequences."""
    if not name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return None
    p = PurePath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or name.startswith(("/", "~")):
        return None
    return p.as_posix()


def read_pairs_csv(csv_path: Path, base: Path) -> tuple[list[Pair], list[tuple[str, str]]]:
    """Rows of ``mri, other[, out]`` (relative paths from ``base``), and a problem for every
    row that cannot be used (empty cells, NUL bytes, an ``out`` outside the output folder)."""
    text = _csv_text(csv_path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        cols = {(c or "").strip().lower() for c in (reader.fieldnames or [])}
        if not {"mri", "other"} <= cols:
            raise UsageError(f"{csv_path} needs columns mri, other[, out]; found {sorted(cols)}")
        rows = list(reader)
    except csv.Error as exc:
        raise UsageError(f"{csv_path}: not a CSV file ({exc})") from None
    pairs: list[Pair] = []
    problems: list[tuple[str, str]] = []
    seen_out: dict[str, int] = {}
    for n, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() if isinstance(v, str) else ""
               for k, v in raw.items() if k}
        entry = f"{csv_path.name} line {n}"
        mri, other, out = row.get("mri", ""), row.get("other", ""), row.get("out", "")
        if not mri or not other:
            problems.append((entry, "needs both an mri and an other path"))
            continue
        if "\x00" in mri + other + out:
            problems.append((entry, "a path holds a NUL byte"))
            continue
        if out:
            safe = safe_output_name(out)
            if safe is None:
                problems.append((entry, f"out {out!r} must be a relative path inside the "
                                 "output folder, without control characters"))
                continue
            out = safe
            if out in seen_out:
                problems.append((entry, f"out {out!r} is also line {seen_out[out]}'s output"))
                continue
            seen_out[out] = n
        pairs.append(Pair(path_stem(mri), base / mri, base / other, None, out or None))
    if not pairs and not problems:
        raise UsageError(f"{csv_path} lists no pairs")
    return pairs, problems


__all__ = [
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "NIFTI_SUFFIXES",
    "SPLIT_NAMES",
    "Pair",
    "Task",
    "dataset_pairs",
    "find_tasks",
    "inputs_by_stem",
    "is_input_entry",
    "path_stem",
    "read_pairs_csv",
    "read_task",
    "safe_output_name",
    "task_folders",
]
