"""Family 8: output hazards: an existing output, an output that is an input or lies inside
an input folder, an unwritable place, a disk that fills mid-file (RLIMIT_FSIZE in a child
process), termination mid-write (SIGTERM), and the permissions of what is written.

Decisions (docs/reliability.md): an existing output without --force, an output that is an
input (also through a link, also with --force), an output inside an input folder, and
``--preview`` equal to ``-o`` are usage errors (exit 2) found before anything is written;
a place that cannot be written and a full disk are failures (exit 1); nothing partial or
staged is ever left; ``masks`` writes all five files or none.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from helpers import hostile_files as hf
from helpers import hostile_run
from helpers.hostile_cli import (
    Box,
    Outcome,
    from_process,
    invoke,
    leftovers,
    valid_output,
    written,
)

MASK_FILES = ("mask_mri.png", "mask_other.png", "overlay_mri.png", "overlay_other.png",
              "masks.json")


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _pair(box: Box) -> tuple[Path, Path]:
    return box.png("mri.png"), box.png("pet.png", colour=True)


def _volumes(box: Box, slices: int = 6) -> tuple[Path, Path]:
    vol = hf.nifti_volume((32, 32, slices))
    return (box.put("mri.nii.gz", hf.nifti_bytes(vol, gz=True)),
            box.put("ct.nii.gz", hf.nifti_bytes(vol, gz=True)))


# -- existing outputs -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["png", "png-slices", "nifti", "dicom-folder", "dicom-file",
                                  "preview"])
def test_existing_output_needs_force(box: Box, kind: str) -> None:
    box.out.mkdir()
    if kind in ("png", "dicom-file", "preview"):
        mri, other = _pair(box)
    else:
        mri, other = _volumes(box)
    args: list[object] = []
    if kind == "png":
        existing = box.out / "f.png"
        args = ["-o", existing]
    elif kind == "png-slices":
        existing = box.out / "f_0003.png"
        args = ["-o", box.out / "f.png"]
    elif kind == "nifti":
        existing = box.out / "f.nii.gz"
        args = ["-o", existing]
    elif kind == "dicom-folder":
        existing = box.out / "series"
        args = ["-o", existing, "--format", "dicom"]
    elif kind == "dicom-file":
        existing = box.out / "f.dcm"
        args = ["-o", existing]
    else:
        existing = box.out / "preview.png"
        args = ["-o", box.out / "f.png", "--preview", existing]
    if kind == "dicom-folder":
        existing.mkdir()
        (existing / "keep.txt").write_text("keep")
        marker = existing / "keep.txt"
    else:
        existing.write_bytes(b"precious")
        marker = existing
    before = _digest(marker)
    box.snap()
    res = invoke("fuse", mri, other, *args, "--modality", "ct")
    box.refused(res, 2, "exists (use --force", absent=())
    assert _digest(marker) == before
    assert sorted(p.name for p in box.out.iterdir()) == [existing.name]


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("which", ["mri", "other"])
def test_output_that_is_an_input(box: Box, which: str, force: bool) -> None:
    mri, other = _pair(box)
    target = mri if which == "mri" else other
    box.snap()
    res = invoke("fuse", mri, other, "-o", target, *(["--force"] if force else []))
    box.refused(res, 2, "input" if force else None)


@pytest.mark.parametrize("fmt", ["nifti", "dicom-file"])
def test_output_that_is_an_input_of_another_format(box: Box, fmt: str) -> None:
    if fmt == "nifti":
        mri, other = _volumes(box)
    else:
        mri = box.put("mri.dcm", hf.dicom_bytes())
        other = box.put("ct.dcm", hf.dicom_bytes())
    box.snap()
    box.refused(invoke("fuse", mri, other, "-o", other, "--force", "--modality", "ct"), 2,
                "refusing to overwrite input")


def test_output_through_a_link_to_an_input(box: Box) -> None:
    mri, other = _pair(box)
    link = box.root / "link.png"
    link.symlink_to(mri)
    box.snap()
    box.refused(invoke("fuse", mri, other, "-o", link, "--force"), 2, "refusing to overwrite input")
    assert link.is_symlink()


@pytest.mark.parametrize("dest", ["fused.png", "sub/fused.png", "fused.nii.gz", "dicom-out",
                                  "preview"])
def test_output_inside_an_input_series_folder(box: Box, dest: str) -> None:
    series = hf.dicom_series(box.inp / "mri", 4)
    other = hf.dicom_series(box.inp / "ct", 4)
    args: list[object]
    if dest == "dicom-out":
        args = ["-o", series / "out", "--format", "dicom"]
    elif dest == "preview":
        args = ["-o", box.out / "f.nii.gz", "--preview", series / "preview.png"]
    else:
        args = ["-o", series / dest]
    box.snap()
    box.refused(invoke("fuse", series, other, *args, "--modality", "ct"), 2, "inside input folder",
                absent=(box.out,))


def test_dicom_output_folder_that_holds_an_input(box: Box) -> None:
    series = hf.dicom_series(box.inp / "mri", 4)
    box.snap()
    box.refused(invoke("fuse", series, series, "-o", box.inp, "--format", "dicom", "--force",
                       "--modality", "ct"), 2, "holds input")


def test_masks_inside_an_input_series_folder(box: Box) -> None:
    series = hf.dicom_series(box.inp / "mri", 4)
    box.snap()
    box.refused(invoke("masks", series, series, "-o", series / "masks", "--modality", "ct"), 2,
                "inside input folder")


@pytest.mark.parametrize("where", ["MRI", "MRI/sub", "PET"])
def test_batch_output_inside_an_input_folder(box: Box, where: str) -> None:
    for i in range(2):
        box.png(f"task/MRI/{i}.png", seed=i)
        box.png(f"task/PET/{i}.png", colour=True, seed=i)
    box.snap()
    res = invoke("batch", box.inp / "task", box.inp / "task" / where)
    box.refused(res, 2, "inside input folder")


def test_preview_equal_to_output_is_refused_before_writing(box: Box) -> None:
    mri, other = _pair(box)
    out = box.out / "f.png"
    box.snap()
    box.refused(invoke("fuse", mri, other, "-o", out, "--preview", out), 2, "output itself",
                absent=(box.out,))


def test_preview_equal_to_an_input_is_refused(box: Box) -> None:
    mri, other = _pair(box)
    box.snap()
    box.refused(invoke("fuse", mri, other, "-o", box.out / "f.png", "--preview", mri, "--force"),
                2, "input", absent=(box.out,))


def test_output_that_is_a_folder(box: Box) -> None:
    mri, other = _pair(box)
    (box.out / "f.png").mkdir(parents=True)
    box.snap()
    box.refused(invoke("fuse", mri, other, "-o", box.out / "f.png", "--force"), 2, "is a folder")


# -- places that cannot be written ------------------------------------------------------------


def test_output_under_a_regular_file(box: Box) -> None:
    mri, other = _pair(box)
    box.out.mkdir()
    (box.out / "file").write_text("x")
    box.snap()
    box.refused(invoke("fuse", mri, other, "-o", box.out / "file" / "f.png"), 1, "cannot write")


def test_output_in_proc(box: Box) -> None:
    mri, other = _pair(box)
    box.snap()
    box.refused(invoke("fuse", mri, other, "-o", "/proc/medfuse-hostile/f.png"), 1, "cannot write")


def test_output_name_too_long(box: Box) -> None:
    """A name the file system cannot hold is a usage error (the command line is wrong),
    found before anything is written."""
    mri, other = _pair(box)
    box.snap()
    box.refused(invoke("fuse", mri, other, "-o", box.out / ("x" * 300 + ".png")), 2,
                "too long", absent=(box.out,))


def test_special_file_as_output_is_not_replaced(box: Box) -> None:
    mri, other = _pair(box)
    box.out.mkdir()
    fifo = box.out / "f.png"
    os.mkfifo(fifo)
    box.snap()
    box.refused(invoke("fuse", mri, other, "-o", fifo, "--force"), 2)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as root: a read-only folder is writable")
def test_read_only_output_folder(box: Box) -> None:
    mri, other = _pair(box)
    box.out.mkdir()
    box.out.chmod(0o555)
    box.snap()
    try:
        box.refused(invoke("fuse", mri, other, "-o", box.out / "f.png"), 1, "cannot write")
    finally:
        box.out.chmod(0o755)


# -- a disk that fills up (RLIMIT_FSIZE in a child) ----------------------------------------

FSIZE = str(48 * 1024)

def _noise_png(path: Path, shape: tuple[int, ...], seed: int) -> Path:
    """An image far larger than FSIZE once fused (noise does not compress)."""
    import numpy as np

    from medfuse.io.images import write_image

    return write_image(path, np.random.default_rng(seed).random(shape).astype("float32"))


def _disk_full_case(box: Box, kind: str) -> list[object]:
    """Inputs for one disk-full case in ``box``; returns the command."""
    import numpy as np

    if kind in ("png", "png-16bit", "masks"):
        size = 512 if kind == "masks" else 384
        mri = _noise_png(box.inp / "mri.png", (size, size), 1)
        other = _noise_png(box.inp / "pet.png", (size, size, 3), 2)
        if kind == "masks":
            return ["masks", mri, other, "-o", box.out / "masks"]
        return ["fuse", mri, other, "-o", box.out / "f.png",
                *(["--bit-depth", "16"] if kind == "png-16bit" else [])]
    if kind == "batch":
        for i in range(3):
            _noise_png(box.inp / f"task/MRI/{i}.png", (256, 256), i)
            _noise_png(box.inp / f"task/PET/{i}.png", (256, 256, 3), 10 + i)
        return ["batch", box.inp / "task", box.out]
    shape = (160, 160, 1 if kind == "dicom-file" else 6)
    vol = (np.random.default_rng(1).random(shape) * 1000).astype("int16")
    mri = box.put("mri.nii", hf.nifti_bytes(vol))
    other = box.put("ct.nii", hf.nifti_bytes(vol))
    out = box.out / {"nifti": "f.nii", "dicom-series": "series", "dicom-file": "f.dcm"}[kind]
    return ["fuse", mri, other, "-o", out, "--modality", "ct",
            *(["--format", "dicom"] if kind == "dicom-series" else [])]


DISK_FULL = ["png", "png-16bit", "nifti", "dicom-series", "dicom-file", "batch", "masks"]


@pytest.fixture(scope="module")
def disk_full(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Box, object]]:
    """Every disk-full case, run in one child process under RLIMIT_FSIZE (start-up is most
    of a child's cost): case -> (its box, its outcome)."""
    root = tmp_path_factory.mktemp("disk-full")
    boxes, commands = {}, []
    for kind in DISK_FULL:
        b = Box(root / kind)
        b.inp.mkdir(parents=True)
        commands.append(_disk_full_case(b, kind))
        b.snap()
        boxes[kind] = b
    results = hostile_run.run_many(commands, env={"HOSTILE_FSIZE": FSIZE}, workdir=root)
    return {k: (boxes[k], Outcome(code, "", err)) for k, (code, err) in zip(DISK_FULL, results)}


@pytest.mark.parametrize("kind", DISK_FULL)
def test_disk_full_mid_file(disk_full: dict[str, tuple[Box, Outcome]], kind: str) -> None:
    """A write limit hit mid-file (a full disk): one error line, exit 1, nothing partial or
    staged left; batch fails each pair and goes on; masks writes none of its five files."""
    box, res = disk_full[kind]
    if kind == "batch":
        box.batch(res, {}, ["0", "1", "2"])
        assert not written(box.out)
        return
    box.refused(res, 1, "cannot write")
    assert not written(box.out), written(box.out)


# -- masks: all five or none -----------------------------------------------------------------


def test_masks_with_one_existing_file_writes_nothing(box: Box) -> None:
    mri, other = _pair(box)
    folder = box.out / "masks"
    folder.mkdir(parents=True)
    (folder / "overlay_other.png").write_bytes(b"keep")
    box.snap()
    box.refused(invoke("masks", mri, other, "-o", folder), 2, "exists")
    assert sorted(p.name for p in folder.iterdir()) == ["overlay_other.png"]


def test_masks_with_a_bad_input_writes_nothing(box: Box) -> None:
    mri = box.put("mri.png", hf.truncate(hf.image_bytes("png"), 0.5))
    other = box.png("pet.png", colour=True)
    box.snap()
    box.refused(invoke("masks", mri, other, "-o", box.out / "masks"), 1, absent=(box.out,))


def test_masks_output_that_is_a_file(box: Box) -> None:
    mri, other = _pair(box)
    box.out.mkdir()
    (box.out / "masks").write_text("a file")
    box.snap()
    box.refused(invoke("masks", mri, other, "-o", box.out / "masks"), 2, "not a folder")


def test_masks_writes_all_five(box: Box) -> None:
    mri, other = _pair(box)
    box.snap()
    res = invoke("masks", mri, other, "-o", box.out / "masks")
    box.accepted(res)
    assert sorted(p.name for p in (box.out / "masks").iterdir()) == sorted(MASK_FILES)


# -- termination mid-write --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", pytest.param("dicom", marks=pytest.mark.slow)])
def test_sigterm_mid_write_leaves_nothing(box: Box, fmt: str) -> None:
    """The child sends itself SIGTERM right after the 3rd slice reaches its staged name."""
    mri, other = _volumes(box, slices=8)
    out = box.out / ("f.png" if fmt == "png" else "series")
    extra = ("--format", "dicom") if fmt == "dicom" else ()
    box.snap()
    cp = hostile_run.run("fuse", mri, other, "-o", out, *extra,
                         env={"HOSTILE_TERM_ON_SAVE": "3"}, timeout=60)
    assert cp.returncode == -signal.SIGTERM, cp.stderr
    box.common(from_process(cp))
    assert not out.exists()
    assert not (box.out.exists() and list(box.out.glob("f_*")))


def test_sigterm_mid_batch_keeps_finished_pairs_whole(box: Box) -> None:
    for i in range(6):
        box.png(f"task/MRI/{i}.png", seed=i)
        box.png(f"task/PET/{i}.png", colour=True, seed=i)
    box.snap()
    cp = hostile_run.run("batch", box.inp / "task", box.out,
                         env={"HOSTILE_TERM_ON_SAVE": "4"}, timeout=60)
    assert cp.returncode == -signal.SIGTERM, cp.stderr
    box.common(from_process(cp))
    written = sorted(box.out.glob("*.png"))
    assert [p.name for p in written] == ["0.png", "1.png", "2.png"]
    for p in written:
        valid_output(p)


def test_sigterm_between_commit_and_cleanup_leaves_nothing(box: Box) -> None:
    """A SIGTERM right after a staged path leaves the cleanup list: it is already gone
    (io/outputs.py removes first, then discards; a new folder is registered right after
    mkdtemp)."""
    mri, other = _pair(box)
    box.snap()
    cp = hostile_run.run("fuse", mri, other, "-o", box.out / "f.png",
                         env={"HOSTILE_TERM_ON_DISCARD": "2"}, timeout=60)
    assert cp.returncode == -signal.SIGTERM, cp.stderr
    box.common(from_process(cp))


@pytest.mark.parametrize("hook", ["HOSTILE_TERM_ON_CREATE", "HOSTILE_TERM_HELD_BACK"])
# The first staged path in the default suite; the second and third in the slow one (each is
# a real process killed, about 1.7 s).
@pytest.mark.parametrize("nth", [1, pytest.param(2, marks=pytest.mark.slow),
                                 pytest.param(3, marks=pytest.mark.slow)])
def test_sigterm_right_after_a_staged_path_is_created_leaves_nothing(
        box: Box, hook: str, nth: int) -> None:
    """A staged path is registered for SIGTERM cleanup before it exists (a signal taken by
    another thread runs the handler at any bytecode, whatever this thread's mask), and the
    handler ends the process even where SIGTERM is held back (re-raised there, the signal
    waited and the process went on staging the provenance record, which stayed behind:
    about 1 random SIGTERM of a batch in 30). nth: the slices folder, the image, the record."""
    mri, other = _pair(box)
    box.snap()
    cp = hostile_run.run("fuse", mri, other, "-o", box.out / "f.png", env={hook: str(nth)},
                         timeout=60)
    assert cp.returncode == -signal.SIGTERM, cp.stderr
    box.common(from_process(cp))


@pytest.mark.slow
def test_sigterm_at_a_random_moment_of_a_batch(box: Box) -> None:
    """A real asynchronous SIGTERM once the first outputs exist: no staged file remains and
    every output present is complete."""
    for i in range(40):
        box.png(f"task/MRI/{i:02d}.png", seed=i, size=96)
        box.png(f"task/PET/{i:02d}.png", colour=True, seed=i, size=96)
    box.snap()
    proc = hostile_run.start("batch", box.inp / "task", box.out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(box.out.glob("*.png"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert not leftovers(box.root), leftovers(box.root)
    for p in box.out.glob("*.png"):
        valid_output(p)


# -- permissions of what is written ----------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_outputs_get_normal_permissions(box: Box) -> None:
    """Staged files and folders are created 0600/0700; results get what open()/mkdir()
    would give (0666/0777 less the umask), so others sharing the folder can read them."""
    mri, other = _volumes(box, slices=3)
    box.snap()
    series = box.out / "series"
    res = invoke("fuse", mri, other, "-o", series, "--format", "dicom")
    box.accepted(res, (series,))
    mask = _umask()
    assert stat.S_IMODE(series.stat().st_mode) == 0o777 & ~mask
    for f in series.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f
    res = invoke("fuse", mri, other, "-o", box.out / "f.nii.gz")
    box.accepted(res)
    assert stat.S_IMODE((box.out / "f.nii.gz").stat().st_mode) == 0o666 & ~mask
    res = invoke("fuse", mri, other, "-o", box.out / "png" / "f.png", "--slices", "1")
    box.accepted(res)
    for f in (box.out / "png").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f
