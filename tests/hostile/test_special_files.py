"""Family 7: special files where a regular file is expected: FIFOs (which would block a
reader forever), devices, sockets, folders, symlink loops, dangling links, names too long,
unreadable files.

Decision: anything that is not a regular file (or, for DICOM, a folder) is refused at once,
before it is opened, with exit 1 (it exists but cannot be used); a path that does not exist
is a usage error, exit 2. Every case that could block runs under a timeout.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from helpers import hostile_files as hf
from helpers import hostile_run
from helpers.hostile_cli import Box, fifo_guard, from_process, invoke

ROOT = os.geteuid() == 0


def test_fifo_named_png_is_refused_at_once_in_a_real_process(box: Box) -> None:
    """The real command line in a child process with a 20 s timeout: a FIFO named x.png
    must be refused without being opened (opening it would block until a writer came)."""
    fifo = box.inp / "x.png"
    os.mkfifo(fifo)
    good = box.png("good.png")
    box.snap()
    start = time.monotonic()
    cp = hostile_run.run("fuse", fifo, good, "-o", box.out / "f.png", timeout=20)
    assert time.monotonic() - start < 20
    box.refused(from_process(cp), 1, "not a regular file", absent=(box.out,))


@pytest.mark.parametrize("name", ["x.png", "x.jpg", "x.tif", "x.bmp", "x.nii", "x.nii.gz",
                                  "x.dcm", "IM0001"])
@pytest.mark.parametrize("position", ["mri", "other"])
def test_fifo_input_is_refused(box: Box, name: str, position: str) -> None:
    fifo = box.inp / name
    os.mkfifo(fifo)
    good = box.png("good.png")
    mri, other = (fifo, good) if position == "mri" else (good, fifo)
    box.snap()
    with fifo_guard(fifo):
        res = invoke("fuse", mri, other, "-o", box.out / "f.png")
    box.refused(res, 1, "not a regular file", absent=(box.out,))


def test_fifo_inside_a_dicom_series_is_skipped(box: Box) -> None:
    series = hf.dicom_series(box.inp / "mri", 4)
    fifo = series / "IM9999.dcm"
    os.mkfifo(fifo)
    out = box.out / "f.nii.gz"
    box.snap()
    with fifo_guard(fifo):
        res = invoke("fuse", series, series, "-o", out, "--modality", "ct")
    box.accepted(res, (out,))


def test_fifo_as_pairs_csv_is_refused(box: Box) -> None:
    box.png("a.png")
    fifo = box.inp / "pairs.csv"
    os.mkfifo(fifo)
    box.snap()
    with fifo_guard(fifo):
        res = invoke("batch", box.inp, box.out, "--pairs", fifo)
    box.refused(res, 2, "not a regular file", absent=(box.out,))


def test_fifo_as_weights_is_refused(box: Box) -> None:
    mri, other = box.png("m.png"), box.png("o.png", colour=True)
    fifo = box.inp / "w.pt"
    os.mkfifo(fifo)
    box.snap()
    with fifo_guard(fifo):
        res = invoke("fuse", mri, other, "-o", box.out / "f.png", "--weights", fifo,
                     "--device", "cpu", engine=None)
    box.refused(res, 2, "not a file", absent=(box.out,))


def test_fifo_in_a_batch_folder_fails_that_pair_only(box: Box) -> None:
    for i in range(3):
        box.png(f"task/MRI/{i}.png", seed=i)
        box.png(f"task/PET/{i}.png", colour=True, seed=i)
    (box.inp / "task/MRI/1.png").unlink()
    fifo = box.inp / "task/MRI/1.png"
    os.mkfifo(fifo)
    box.snap()
    with fifo_guard(fifo):
        res = invoke("batch", box.inp / "task", box.out)
    box.batch(res, {"0": box.out / "0.png", "2": box.out / "2.png"}, ["1"])


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero", "/dev/urandom"])
def test_device_input_is_refused(box: Box, device: str) -> None:
    if not Path(device).exists():
        pytest.skip(f"{device} not present")
    link = box.inp / "scan.png"
    link.symlink_to(device)  # named like an image, resolving to a device
    good = box.png("good.png")
    box.snap()
    res = invoke("fuse", link, good, "-o", box.out / "f.png")
    box.refused(res, 1, "not a regular file", absent=(box.out,))


def test_device_path_given_directly_is_refused(box: Box) -> None:
    good = box.png("good.png")
    box.snap()
    res = invoke("fuse", "/dev/zero", good, "-o", box.out / "f.png")
    box.refused(res, 1, "not a regular file", absent=(box.out,))


@pytest.mark.parametrize("name", ["sock.png", "sock.nii.gz"])
def test_socket_input_is_refused(box: Box, name: str) -> None:
    path = box.inp / name
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        good = box.png("good.png")
        box.snap()
        res = invoke("fuse", path, good, "-o", box.out / "f.png")
    box.refused(res, 1, "not a regular file", absent=(box.out,))


@pytest.mark.parametrize("name", ["x.png", "x.nii.gz", "x.dcm"])
def test_folder_where_a_file_is_expected(box: Box, name: str) -> None:
    """A folder is read as a DICOM series: one with no DICOM images is refused."""
    folder = box.inp / name
    folder.mkdir()
    (folder / "note.txt").write_text("not an image")
    good = box.png("good.png")
    box.snap()
    res = invoke("fuse", folder, good, "-o", box.out / "f.png")
    box.refused(res, 1, "no DICOM images", absent=(box.out,))


def test_symlink_loop_is_refused(box: Box) -> None:
    a, b = box.inp / "a.png", box.inp / "b.png"
    a.symlink_to(b)
    b.symlink_to(a)
    good = box.png("good.png")
    box.snap()
    res = invoke("fuse", a, good, "-o", box.out / "f.png")
    box.refused(res, 1, "cannot open", absent=(box.out,))


def test_symlink_loop_inside_a_series_folder(box: Box) -> None:
    series = hf.dicom_series(box.inp / "mri", 4)
    (series / "loop.dcm").symlink_to(series / "loop.dcm")
    out = box.out / "f.nii.gz"
    box.snap()
    box.accepted(invoke("fuse", series, series, "-o", out, "--modality", "ct"), (out,))


def test_folder_symlink_cycle_in_a_series_folder_terminates(box: Box) -> None:
    series = hf.dicom_series(box.inp / "mri", 4)
    (series / "again").symlink_to(series, target_is_directory=True)
    out = box.out / "f.nii.gz"
    box.snap()
    box.accepted(invoke("fuse", series, series, "-o", out, "--modality", "ct"), (out,))


def test_dangling_symlink_is_a_missing_file(box: Box) -> None:
    link = box.inp / "gone.png"
    link.symlink_to(box.inp / "nowhere.png")
    good = box.png("good.png")
    box.snap()
    box.refused(invoke("fuse", link, good, "-o", box.out / "f.png"), 2, "no such file",
                absent=(box.out,))


def test_missing_input_is_a_usage_error(box: Box) -> None:
    good = box.png("good.png")
    box.snap()
    box.refused(invoke("fuse", box.inp / "nope.png", good, "-o", box.out / "f.png"), 2,
                "no such file", absent=(box.out,))


def test_symlink_to_a_valid_file_is_followed(box: Box) -> None:
    real = box.png("real.png")
    other = box.png("other.png", seed=1)
    link = box.inp / "link.png"
    link.symlink_to(real)
    out = box.out / "f.png"
    box.snap()
    box.accepted(invoke("fuse", link, other, "-o", out), (out,))


def test_name_too_long_is_refused(box: Box) -> None:
    good = box.png("good.png")
    box.snap()
    res = invoke("fuse", box.inp / ("x" * 300 + ".png"), good, "-o", box.out / "f.png")
    box.refused(res, 1, absent=(box.out,))


def test_path_through_a_file_is_refused(box: Box) -> None:
    good = box.png("good.png")
    box.snap()
    res = invoke("fuse", good / "inner.png", good, "-o", box.out / "f.png")
    box.refused(res, 1, absent=(box.out,))


EMPTY_PATHS = {
    "fuse-mri": lambda g, o: ["fuse", "", g, "-o", o / "f.png"],
    "fuse-other": lambda g, o: ["fuse", g, "", "-o", o / "f.png"],
    "fuse-output": lambda g, o: ["fuse", g, g, "-o", ""],
    "fuse-preview": lambda g, o: ["fuse", g, g, "-o", o / "f.png", "--preview", ""],
    "fuse-weights": lambda g, o: ["fuse", g, g, "-o", o / "f.png", "--weights", ""],
    "masks-mri": lambda g, o: ["masks", "", g, "-o", o / "m"],
    "batch-in": lambda g, o: ["batch", "", o],
    "batch-out": lambda g, o: ["batch", g.parent, ""],
    "batch-pairs": lambda g, o: ["batch", g.parent, o, "--pairs", ""],
    "eval-data": lambda g, o: ["eval", "", "--method", "average"],
    "eval-csv": lambda g, o: ["eval", g.parent, "--method", "average", "--csv", ""],
    "train-data": lambda g, o: ["train", "--data", "", "--out", o / "run"],
    "demo-output": lambda g, o: ["demo", "-o", ""],
}


@pytest.mark.parametrize("case", list(EMPTY_PATHS))
def test_empty_path_is_a_usage_error(box: Box, monkeypatch: pytest.MonkeyPatch,
                                     case: str) -> None:
    """``medfuse fuse "$MRI" ...`` with the variable unset: typer would turn ``""`` into
    ``Path(".")`` and read the working folder (as a DICOM series, recursively). Every path
    argument and option refuses an empty value (cli/app.py), before anything is read."""
    monkeypatch.chdir(box.inp)
    good = box.png("good.png")
    box.snap()
    res = invoke(*EMPTY_PATHS[case](good, box.out))
    box.refused(res, 2, "empty path", absent=(box.out,))


@pytest.mark.skipif(ROOT, reason="runs as root: permission bits do not stop root reading")
def test_unreadable_file_is_refused(box: Box) -> None:
    bad = box.png("secret.png")
    bad.chmod(0)
    good = box.png("good.png")
    box.snap()
    try:
        res = invoke("fuse", bad, good, "-o", box.out / "f.png")
        box.refused(res, 1, absent=(box.out,))
    finally:
        bad.chmod(0o644)


@pytest.mark.skipif(ROOT, reason="runs as root: permission bits do not stop root listing")
def test_unreadable_series_folder_is_refused(box: Box) -> None:
    series = hf.dicom_series(box.inp / "mri", 3)
    series.chmod(0)
    box.snap()
    try:
        res = invoke("fuse", series, series, "-o", box.out / "f.nii.gz", "--modality", "ct")
        box.refused(res, 1, absent=(box.out,))
    finally:
        series.chmod(0o755)


def test_empty_file_of_every_suffix_is_refused(box: Box) -> None:
    good = box.png("good.png")
    for suffix in (".png", ".jpg", ".tif", ".bmp", ".nii", ".nii.gz", ".dcm"):
        empty = box.put(f"empty{suffix}", b"")
        box.snap()
        box.refused(invoke("fuse", empty, good, "-o", box.out / "f.png"), 1, absent=(box.out,))
