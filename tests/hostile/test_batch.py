"""Family 10: ``batch`` over hostile folders and pairs.csv files: one bad pair among good
ones, missing partners, ambiguous names, unicode and control characters in names, a BOM,
quotes, NUL bytes, duplicates, ``../`` and absolute ``out`` paths.

Decisions (docs/reliability.md): batch keeps going past a bad pair or row, reports each
(``failed NAME: reason``), writes every good pair and exits 1; what makes the whole
command meaningless (no pairs, no MRI/ folder, a pairs.csv without the columns or not UTF-8)
is a usage error, exit 2. A pairs.csv ``out`` outside OUT_DIR fails that row and nothing is
written outside; a BOM is accepted; ``a.png`` beside ``a.jpg`` refuses both as ambiguous.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import hostile_files as hf
from helpers.hostile_cli import Box, invoke


def _task(box: Box, names: list[str], pet: list[str] | None = None, size: int = 32) -> Path:
    """A task folder with MRI/NAME and PET/NAME for every name (PET names may differ)."""
    for i, n in enumerate(names):
        box.put(f"task/MRI/{n}", hf.image_bytes("png", False, size, i))
    for i, n in enumerate(pet if pet is not None else names):
        box.put(f"task/PET/{n}", hf.image_bytes("png", True, size, i))
    return box.inp / "task"


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


BAD_MRI: dict[str, bytes] = {
    "truncated": hf.truncate(hf.image_bytes("png", False, 32), 0.5),
    "corrupt-crc": hf.flip(hf.image_bytes("png", False, 32), 200),
    "empty": b"",
    "text": b"not an image",
    "colour-mri": hf.image_bytes("png", True, 32),
    "wrong-size": hf.image_bytes("png", False, 48),
    "bomb": hf.png_raw(100000, 100000),
}


@pytest.mark.parametrize("kind", sorted(BAD_MRI))
@pytest.mark.parametrize("where", [0, 3])
def test_one_bad_pair_among_good_ones(box: Box, kind: str, where: int) -> None:
    names = [f"{i}.png" for i in range(4)]
    task = _task(box, names)
    (task / "MRI" / names[where]).write_bytes(BAD_MRI[kind])
    box.snap()
    res = invoke("batch", task, box.out)
    good = {str(i): box.out / f"{i}.png" for i in range(4) if i != where}
    box.batch(res, good, [str(where)])


def test_missing_partners_are_reported(box: Box) -> None:
    task = _task(box, ["a.png", "b.png", "c.png"], ["a.png", "c.png", "d.png"])
    box.snap()
    res = invoke("batch", task, box.out)
    box.batch(res, {"a": box.out / "a.png", "c": box.out / "c.png"}, ["MRI/b.png", "PET/d.png"])


def test_same_stem_different_suffix_is_ambiguous(box: Box) -> None:
    task = _task(box, ["a.png", "b.png"])
    box.put("task/MRI/a.jpg", hf.image_bytes("jpeg", False, 32))
    box.snap()
    res = invoke("batch", task, box.out)
    box.batch(res, {"b": box.out / "b.png"}, ["MRI/a", "PET/a.png"])
    assert "several inputs share this name" in res.stderr


@pytest.mark.parametrize("name", ["é-accent.png", "日本語.png", "emoji-🙂.png", "space name.png",
                                  "semi;colon.png", "quote'\".png", "-leading-dash.png",
                                  "UPPER.PNG", "dots.in.name.png", "#hash%.png"])
def test_unusual_but_printable_names(box: Box, name: str) -> None:
    task = _task(box, [name, "ok.png"])
    box.snap()
    res = invoke("batch", task, box.out)
    stem = name[: -len(".png")]
    box.batch(res, {stem: box.out / f"{stem}.png", "ok": box.out / "ok.png"}, [])


def test_hidden_and_non_image_files_are_ignored(box: Box) -> None:
    task = _task(box, ["a.png"])
    for folder in ("MRI", "PET"):
        box.put(f"task/{folder}/.hidden.png", b"junk")
        box.put(f"task/{folder}/notes.txt", b"notes")
        box.put(f"task/{folder}/Thumbs.db", b"\x00" * 10)
    box.snap()
    box.batch(invoke("batch", task, box.out), {"a": box.out / "a.png"}, [])


def test_folder_names_in_any_case(box: Box) -> None:
    box.put("task/mri/a.png", hf.image_bytes("png", False, 32))
    box.put("task/pet/a.png", hf.image_bytes("png", True, 32))
    box.snap()
    box.batch(invoke("batch", box.inp / "task", box.out), {"a": box.out / "a.png"}, [])


def test_volume_beside_image_fails_that_pair(box: Box) -> None:
    task = _task(box, ["a.png"])
    box.put("task/MRI/v.nii.gz", hf.nifti_bytes(gz=True))
    box.put("task/PET/v.png", hf.image_bytes("png", True, 32))
    box.snap()
    box.batch(invoke("batch", task, box.out), {"a": box.out / "a.png"}, ["v"])


def test_dicom_series_pairs_in_a_batch(box: Box) -> None:
    task = _task(box, ["a.png"])
    hf.dicom_series(task / "MRI" / "s1", 3)
    hf.dicom_series(task / "PET" / "s1", 3)
    hf.dicom_series(task / "MRI" / "s2", 3)
    broken = hf.dicom_series(task / "PET" / "s2", 3)
    f = sorted(broken.iterdir())[1]
    f.write_bytes(hf.truncate(f.read_bytes(), 0.5))
    box.snap()
    res = invoke("batch", task, box.out, "--modality", "pet")
    box.batch(res, {"a": box.out / "a.png", "s1": box.out / "s1.nii.gz"}, ["s2"])


@pytest.mark.parametrize("layout", ["no-mri", "two-others", "empty-folders", "only-unpaired"])
def test_folders_that_hold_no_task(box: Box, layout: str) -> None:
    task = box.inp / "task"
    if layout == "no-mri":
        box.put("task/PET/a.png", hf.image_bytes("png", True, 32))
    elif layout == "two-others":
        _task(box, ["a.png"])
        box.put("task/CT/a.png", hf.image_bytes("png", False, 32))
    elif layout == "empty-folders":
        (task / "MRI").mkdir(parents=True)
        (task / "PET").mkdir()
    else:
        (task / "MRI").mkdir(parents=True)
        (task / "PET").mkdir()
        (task / "MRI" / "notes.txt").write_text("x")
    box.snap()
    box.refused(invoke("batch", task, box.out), 2, absent=(box.out,))


@pytest.mark.parametrize("what", ["missing", "file"])
def test_input_folder_that_is_not_a_folder(box: Box, what: str) -> None:
    path = box.inp / "task"
    if what == "file":
        path.write_text("x")
    box.snap()
    box.refused(invoke("batch", path, box.out), 2, absent=(box.out,))


def test_output_folder_that_is_a_file(box: Box) -> None:
    task = _task(box, ["a.png", "b.png"])
    box.out.write_text("a file")
    box.snap()
    box.refused(invoke("batch", task, box.out), 2)


def test_existing_outputs_fail_without_force_and_skip_with_skip_existing(box: Box) -> None:
    task = _task(box, ["a.png", "b.png"])
    box.out.mkdir()
    (box.out / "a.png").write_bytes(b"old")
    box.snap()
    res = invoke("batch", task, box.out)
    box.batch(res, {"b": box.out / "b.png"}, ["a"])
    assert (box.out / "a.png").read_bytes() == b"old"
    res = invoke("batch", task, box.out, "--skip-existing")
    assert res.code == 0 and "skipped 2" in res.stderr, str(res)
    assert (box.out / "a.png").read_bytes() == b"old"


def test_escape_sequence_in_a_bad_file_name_batch(box: Box) -> None:
    """A file name with a terminal escape sequence is shown escaped (``\\x1b``) in the
    failure line (cli/options.py: every console shows non-printable characters escaped)."""
    task = _task(box, ["ok.png"])
    box.put("task/MRI/evil\x1b[2J.png", b"junk")
    box.put("task/PET/evil\x1b[2J.png", b"junk")
    box.snap()
    res = invoke("batch", task, box.out)
    box.batch(res, {"ok": box.out / "ok.png"}, ["evil"])
    assert "\x1b" not in res.stderr and "evil\\x1b[2J" in res.stderr, str(res)


def test_escape_sequence_in_a_bad_file_name_fuse(box: Box) -> None:
    bad = box.put("evil\x1b[31m.png", b"junk")
    box.snap()
    res = invoke("fuse", bad, bad, "-o", box.out / "f.png")
    line = box.refused(res, 1)
    assert "\x1b" not in res.stderr and "evil\\x1b[31m.png" in line, str(res)


@pytest.mark.parametrize("char", ["\x07", "\x9b", "\u202e", "\x08"])
def test_other_control_characters_in_a_bad_file_name(box: Box, char: str) -> None:
    """BEL, the 8-bit CSI, a right-to-left override, backspace: shown escaped too."""
    bad = box.put(f"evil{char}x.png", b"junk")
    box.snap()
    res = invoke("fuse", bad, bad, "-o", box.out / "f.png")
    line = box.refused(res, 1)
    assert char not in res.stderr and repr(char)[1:-1] in line, str(res)


def test_newline_in_a_good_file_name(box: Box) -> None:
    task = _task(box, ["new\nline.png", "ok.png"])
    box.snap()
    res = invoke("batch", task, box.out)
    assert res.code == 0, str(res)
    box.common(res)
    assert (box.out / "new\nline.png").is_file() and (box.out / "ok.png").is_file()


# -- pairs.csv --------------------------------------------------------------------------------


def _csv(box: Box, text: str | bytes, name: str = "pairs.csv") -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return box.put(name, data)


def _images(box: Box, names: list[str]) -> None:
    for i, n in enumerate(names):
        box.put(f"MRI/{n}", hf.image_bytes("png", False, 32, i))
        box.put(f"PET/{n}", hf.image_bytes("png", True, 32, i))


GOOD_ROWS = "MRI/a.png,PET/a.png,a.png\nMRI/b.png,PET/b.png,b.png\n"

# (id, csv text, entries reported as failed, outputs written besides a.png and b.png);
# a row refused while reading the file is named by its line, a pair that fails later by its stem
L2, L4 = ["pairs.csv line 2"], ["pairs.csv line 4"]
CSV_ROWS: list[tuple[str, str | bytes, list[str], list[str]]] = [
    ("bom", "\ufeffmri,other,out\n" + GOOD_ROWS, [], []),
    ("crlf", ("mri,other,out\n" + GOOD_ROWS).replace("\n", "\r\n"), [], []),
    ("header-case-and-spaces", " MRI , Other , OUT \n" + GOOD_ROWS, [], []),
    ("quoted", 'mri,other,out\n"MRI/a.png","PET/a.png","a.png"\nMRI/b.png,PET/b.png,"b.png"\n',
     [], []),
    ("quoted-comma", 'mri,other,out\n"MRI/c,d.png","PET/c,d.png","cd.png"\n' + GOOD_ROWS, [],
     ["cd.png"]),
    ("extra-columns",
     "mri,other,out,note\nMRI/a.png,PET/a.png,a.png,x\nMRI/b.png,PET/b.png,b.png,y\n", [], []),
    ("blank-lines", "mri,other,out\n\nMRI/a.png,PET/a.png,a.png\n\n\nMRI/b.png,PET/b.png,b.png\n",
     [], []),
    ("no-out-column", "mri,other\nMRI/a.png,PET/a.png\nMRI/b.png,PET/b.png\n", [], []),
    ("unicode-paths", "mri,other,out\nMRI/日本.png,PET/日本.png,日本.png\n" + GOOD_ROWS, [],
     ["日本.png"]),
    ("nul-in-path", "mri,other,out\nMRI/a.png,PET/a\x00.png,x.png\n" + GOOD_ROWS, L2, []),
    ("nul-in-out", "mri,other,out\nMRI/a.png,PET/a.png,x\x00.png\n" + GOOD_ROWS, L2, []),
    ("traversal-out", "mri,other,out\nMRI/a.png,PET/a.png,../escaped.png\n" + GOOD_ROWS, L2, []),
    ("deep-traversal-out", "mri,other,out\nMRI/a.png,PET/a.png,sub/../../escaped.png\n"
     + GOOD_ROWS, L2, []),
    ("absolute-out", "mri,other,out\nMRI/a.png,PET/a.png,/tmp/medfuse-escaped.png\n" + GOOD_ROWS,
     L2, []),
    ("home-out", "mri,other,out\nMRI/a.png,PET/a.png,~/escaped.png\n" + GOOD_ROWS, L2, []),
    ("backslash-traversal-out", "mri,other,out\nMRI/a.png,PET/a.png,..\\escaped.png\n"
     + GOOD_ROWS, L2, []),
    ("control-char-out", 'mri,other,out\nMRI/a.png,PET/a.png,"x\x1b[2J.png"\n' + GOOD_ROWS, L2,
     []),
    ("newline-out", 'mri,other,out\nMRI/a.png,PET/a.png,"x\ny.png"\n' + GOOD_ROWS, L2, []),
    ("duplicate-out", "mri,other,out\n" + GOOD_ROWS + "MRI/a.png,PET/a.png,a.png\n", L4, []),
    ("missing-cell", "mri,other,out\nMRI/a.png,,x.png\n" + GOOD_ROWS, L2, []),
    ("short-row", "mri,other,out\nMRI/a.png\n" + GOOD_ROWS, L2, []),
    ("unterminated-quote", "mri,other,out\n" + GOOD_ROWS + '"MRI/a.png,PET/a.png,z.png\n', L4,
     []),
    ("missing-file", "mri,other,out\nMRI/nope.png,PET/a.png,x.png\n" + GOOD_ROWS, ["nope"], []),
    ("outside-base-input", "mri,other,out\n/etc/hostname,PET/a.png,x.png\n" + GOOD_ROWS,
     ["hostname"], []),
    ("out-is-an-input", "mri,other,out\nMRI/a.png,PET/a.png,../in/MRI/a.png\n" + GOOD_ROWS, L2,
     []),
    ("out-bad-suffix", "mri,other,out\nMRI/a.png,PET/a.png,x.txt\n" + GOOD_ROWS, ["a:"], []),
]


CSV_FILES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("header-only", b"mri,other,out\n"),
    ("no-columns", b"a,b\nMRI/a.png,PET/a.png\n"),
    ("one-column", b"mri\nMRI/a.png\n"),
    ("nul-bytes-only", b"\x00" * 64),
    ("nul-in-header", b"mri\x00,other\nMRI/a.png,PET/a.png\n"),
    ("latin-1", "mri,other\nMRI/caf\xe9.png,PET/a.png\n".encode("latin-1")),
    ("utf-16", "mri,other\nMRI/a.png,PET/a.png\n".encode("utf-16")),
    ("binary", bytes(range(256)) * 4),
    ("png-as-csv", hf.image_bytes("png", False, 32)),
]


@pytest.mark.parametrize("data", [pytest.param(d, id=i) for i, d in CSV_FILES])
def test_pairs_csv_that_is_unusable(box: Box, data: bytes) -> None:
    _images(box, ["a.png"])
    pairs = _csv(box, data)
    box.snap()
    box.refused(invoke("batch", box.inp, box.out, "--pairs", pairs), 2, absent=(box.out,))


def test_pairs_csv_too_large_is_refused_unread(box: Box) -> None:
    pairs = box.inp / "pairs.csv"
    with open(pairs, "wb") as fh:
        fh.truncate(65 << 20)  # sparse: 65 MiB declared, nothing on disk
    box.snap()
    box.refused(invoke("batch", box.inp, box.out, "--pairs", pairs), 2, "larger than",
                absent=(box.out,))


@pytest.mark.parametrize("what", ["missing", "folder"])
def test_pairs_csv_path_that_is_not_a_file(box: Box, what: str) -> None:
    pairs = box.inp / "pairs.csv"
    if what == "folder":
        pairs.mkdir()
    box.snap()
    box.refused(invoke("batch", box.inp, box.out, "--pairs", pairs), 2, absent=(box.out,))


@pytest.mark.parametrize("force", [False, True])
def test_pairs_csv_duplicate_rows_without_out(box: Box, force: bool) -> None:
    """Two rows that would write the same file: the later fails (never a silent overwrite,
    never a misleading "exists, use --force")."""
    _images(box, ["a.png", "b.png"])
    pairs = _csv(box, "mri,other\nMRI/a.png,PET/a.png\nMRI/b.png,PET/b.png\nMRI/a.png,PET/b.png\n")
    box.snap()
    res = invoke("batch", box.inp, box.out, "--pairs", pairs, *(["--force"] if force else []))
    box.batch(res, {"a": box.out / "a.png", "b": box.out / "b.png"}, ["pairs.csv line 4"])
    assert "--force" not in res.stderr
