"""Family 13: trust under attack and faults: the batch ledger, resume, the outputs of one
fusion (image, record, transform), masks, workers, a Ray address, SUV headers.

The mechanisms (docs/reliability.md):

* one way to append (``medfuse.io.outputs.append_bytes``): no link followed, no FIFO
  blocked on, only a regular file appended to; the ledger's cells are formula-safe and its
  reader skips torn, NUL-filled, oversized and unparsable lines;
* one way to commit outputs that belong together (``medfuse.io.outputs.OutputSet``):
  staged first, renamed as a set, rolled back if a rename fails: fuse's output, preview,
  transform and record, and the five mask files;
* a record per output (``NAME.json``) holding each output's sha256, which ``--resume``
  checks; staged names (links too) are removed by ``--resume``;
* workers bound to their parent's life and capped by the pairs and the memory;
* a Ray address reached (or refused) within a bounded time;
* SUV from an impossible header refused naming the header, ``--window`` the way round.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import hostile_files as hf
from helpers.hostile_cli import Box, fifo_guard, invoke

LEDGER = "medfuse-ledger.csv"


def _task(box: Box, names: list[str], size: int = 32) -> Path:
    for i, n in enumerate(names):
        box.put(f"task/MRI/{n}", hf.image_bytes("png", False, size, i))
        box.put(f"task/PET/{n}", hf.image_bytes("png", True, size, i))
    return box.inp / "task"


def _rows(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", "surrogateescape").splitlines()


# -- 1. the ledger: links, FIFOs, formulas ------------------------------------------------


@pytest.mark.parametrize("resume", [False, True])
def test_ledger_symlink_is_refused_and_never_followed(box: Box, resume: bool) -> None:
    """A ledger name linked to a shell start-up file: refused, nothing appended to it."""
    task = _task(box, ["x;touch PWNED;#.png", "b.png"])
    victim = box.root / "victim.sh"
    victim.write_text("echo hello\n")
    box.out.mkdir()
    (box.out / LEDGER).symlink_to(victim)
    box.snap()
    res = invoke("batch", task, box.out, *(["--resume"] if resume else []))
    box.refused(res, 2, "symbolic link")
    assert victim.read_text() == "echo hello\n"
    assert not list(box.out.glob("*.png")), "pairs were fused past a refused ledger"


@pytest.mark.parametrize("resume", [False, True])
def test_ledger_fifo_is_refused_without_blocking(box: Box, resume: bool) -> None:
    task = _task(box, ["a.png"])
    box.out.mkdir()
    fifo = box.out / LEDGER
    os.mkfifo(fifo)
    box.snap()
    with fifo_guard(fifo, 10.0):
        res = invoke("batch", task, box.out, *(["--resume"] if resume else []))
    box.refused(res, 2, "not a regular file")
    assert fifo.exists() and not fifo.is_file()


def test_ledger_link_made_during_the_run_is_not_followed(tmp_path: Path) -> None:
    """The check before the run cannot see a link made later: the append itself refuses
    it (O_NOFOLLOW), one line, nothing written through it."""
    from medfuse.errors import OutputError
    from medfuse.io.outputs import append_bytes

    victim = tmp_path / "victim"
    victim.write_bytes(b"keep\n")
    link = tmp_path / LEDGER
    link.symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"):
        append_bytes(link, b"row\n")
    os.mkfifo(tmp_path / "fifo")
    started = time.monotonic()
    with pytest.raises(OutputError, match="not a regular file"):
        append_bytes(tmp_path / "fifo", b"row\n")
    assert time.monotonic() - started < 5 and victim.read_bytes() == b"keep\n"


@pytest.mark.parametrize("name", ["=HYPERLINK(1).png", "+1.png", "-2.png", "@SUM(A1).png",
                                  "'quoted.png"])
def test_formula_names_are_neutralised_and_resume_still_matches(box: Box, name: str) -> None:
    task = _task(box, [name])
    box.snap()
    box.accepted(invoke("batch", task, box.out, "-q"))
    line = _rows(box.out / LEDGER)[1]
    assert line.startswith("'"), line
    stem = name[: -len(".png")]
    res = invoke("batch", task, box.out, "--resume", "-q")
    box.accepted(res)
    from medfuse.batch.ledger import latest, read_ledger

    rows = latest(read_ledger(box.out))
    assert rows[(stem, name)].status == "skipped", rows


# -- 3. the ledger reader -------------------------------------------------------------------


@pytest.mark.parametrize("junk", ["huge-field", "nul-run", "bad-quote", "torn-last"])
def test_resume_survives_a_damaged_ledger(box: Box, junk: str) -> None:
    task = _task(box, ["a.png", "b.png"])
    box.snap()
    box.accepted(invoke("batch", task, box.out, "-q"))
    ledger = box.out / LEDGER
    rows_before = _rows(ledger)
    (box.out / "b.png").unlink()  # b must be redone on resume
    with ledger.open("ab") as fh:
        if junk == "huge-field":
            fh.write(b'"' + b"x" * 200_000 + b'",1\n')
        elif junk == "nul-run":
            fh.write(b"\0" * 70_000 + b"\n" + b"\0" * 100)
        elif junk == "bad-quote":
            fh.write(b'a,"b\n')
        else:
            fh.write(rows_before[1].encode()[:25])  # a power loss mid-row
    res = invoke("batch", task, box.out, "--resume", "-q")
    box.accepted(res, (box.out / "b.png",))
    from medfuse.batch.ledger import latest, read_ledger

    last = latest(read_ledger(box.out))
    assert last[("a", "a.png")].status == "skipped" and last[("b", "b.png")].status == "fused"
    text = ledger.read_bytes()
    # the rows of the resumed run begin on a line of their own
    assert b"\n" + _rows(ledger)[-1].encode() in text


def test_append_after_a_torn_line_starts_a_new_line(tmp_path: Path) -> None:
    from medfuse.batch.ledger import Ledger, LedgerRow, read_rows

    path = tmp_path / LEDGER
    row = LedgerRow("a", "m", "o", "fused", "", "a.png", "a.png.json", "t0", "t1", "")
    Ledger(path).append(row)
    with path.open("ab") as fh:
        fh.write(b"b,m,o,fus")  # torn
    Ledger(path).append(row)
    assert read_rows(path) == [row, row]


# -- 2. output, record and transform together ---------------------------------------------


def _enospc_for(monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """Writing a staged file whose name ends with ``suffix`` fails as on a full disk."""
    real = Path.write_text

    def full(self: Path, *a, **k):  # type: ignore[no-untyped-def]
        if self.name.endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)


def test_disk_full_at_the_record_leaves_no_output(box: Box, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    mri, pet = box.png("a.png"), box.png("b.png", colour=True)
    box.snap()
    _enospc_for(monkeypatch, ".json")
    out = box.out / "f.png"
    res = invoke("fuse", mri, pet, "-o", out, "--preview", box.out / "p.png")
    box.refused(res, 1, "No space left", absent=(out, box.out / "f.png.json",
                                                   box.out / "p.png"))


def test_a_failed_commit_puts_back_what_force_replaced(box: Box,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """--force over an earlier result, and the record's rename fails (an immutable file):
    the earlier output and record are back as they were."""
    mri, pet = box.png("a.png"), box.png("b.png", colour=True)
    out = box.out / "f.png"
    box.accepted(invoke("fuse", mri, pet, "-o", out))
    before = {p.name: p.read_bytes() for p in box.out.iterdir()}
    import medfuse.io.outputs as outputs

    real = os.replace

    def immutable(src, dst):  # type: ignore[no-untyped-def]
        if Path(src).name == "f.png.json" or Path(dst).name == "f.png.json" and \
                Path(src).parent.name.startswith(".medfuse-"):  # chattr +i on the record
            raise PermissionError(errno.EPERM, "Operation not permitted", str(src))
        return real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", immutable)
    other = box.png("c.png", colour=True, seed=3)
    box.snap()
    res = invoke("fuse", mri, other, "-o", out, "--force")
    box.refused(res, 1, "not permitted")
    assert {p.name: p.read_bytes() for p in box.out.iterdir()} == before


def test_save_transform_into_proc_leaves_nothing(box: Box) -> None:
    pytest.importorskip("SimpleITK")
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    from helpers.functional import write_pt_series
    from helpers.synth import write_mr_series

    mr, pt = write_mr_series(box.inp / "mr"), write_pt_series(box.inp / "pt")
    box.snap()
    out = box.out / "f.nii.gz"
    res = invoke("fuse", mr, pt, "-o", out, "--register", "rigid",
                 "--save-transform", "/proc/medfuse-x.tfm")
    line = box.refused(res, 1, "/proc", absent=(out, box.out / "f.nii.gz.json"))
    assert "does not exist" not in line and "No such file" not in line


# -- 4. resume trusts nothing it did not write --------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "replaced", "record-without-hash"])
def test_resume_redoes_an_output_that_does_not_match_its_record(box: Box, damage: str) -> None:
    task = _task(box, ["a.png", "b.png"])
    box.snap()
    box.accepted(invoke("batch", task, box.out, "-q"))
    good = (box.out / "a.png").read_bytes()
    if damage == "truncated":
        (box.out / "a.png").write_bytes(good[: len(good) // 2])
    elif damage == "replaced":
        (box.out / "a.png").write_bytes((box.out / "b.png").read_bytes())
    else:
        record = json.loads((box.out / "a.png.json").read_text())
        del record["outputs"]["sha256"]
        (box.out / "a.png.json").write_text(json.dumps(record))
    box.accepted(invoke("batch", task, box.out, "--resume", "-q"))
    assert (box.out / "a.png").read_bytes() == good
    from medfuse.batch.ledger import latest, read_ledger

    last = latest(read_ledger(box.out))
    assert last[("a", "a.png")].status == "fused" and last[("b", "b.png")].status == "skipped"


@pytest.mark.parametrize("to", ["folder", "file"])
def test_resume_removes_a_planted_staging_link(box: Box, to: str) -> None:
    task = _task(box, ["a.png"])
    target = box.root / "elsewhere"
    if to == "folder":
        target.mkdir()
        (target / "keep").write_text("keep")
    else:
        target.write_text("keep")
    box.out.mkdir()
    planted = box.out / ".medfuse-a.png.0123456789abcdef.part"
    planted.symlink_to(target)
    box.snap()
    box.accepted(invoke("batch", task, box.out, "--resume", "-q"), (box.out / "a.png",))
    assert not planted.is_symlink()
    assert (target / "keep" if to == "folder" else target).read_text() == "keep"


# -- 5. an unreachable Ray address ----------------------------------------------------------


@pytest.mark.parametrize("address", ["256.1.1.1:1", "127.0.0.1:1", "no-such-host.invalid:6379"])
def test_unreachable_ray_address_fails_fast_naming_it(box: Box, address: str) -> None:
    pytest.importorskip("ray")
    task = _task(box, ["a.png"])
    box.snap()
    started = time.monotonic()
    res = invoke("batch", task, box.out, "--backend", "ray", "--address", address)
    box.refused(res, 1, address)
    assert time.monotonic() - started < 15
    assert not list(box.out.glob("*.png")) if box.out.exists() else True


def test_ray_address_checks_are_bounded() -> None:
    from medfuse.batch.ray import check_address, split_address
    from medfuse.errors import InputError, UsageError

    assert split_address("auto") is None
    assert split_address("ray://head:10001") == ("head", 10001)
    assert split_address("[::1]:6379") == ("::1", 6379)
    with pytest.raises(UsageError, match="HOST:PORT"):
        split_address("head")
    started = time.monotonic()
    with pytest.raises(InputError, match="127.0.0.1:1"):
        check_address("127.0.0.1:1", timeout=2.0)
    assert time.monotonic() - started < 4


# -- 6. SUV from impossible headers ---------------------------------------------------------


def _pet(box: Box, **facts: float) -> Path:
    from helpers.functional import write_pt_series

    def edit(ds):  # type: ignore[no-untyped-def]
        if "half_life" in facts:
            ds.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife = facts["half_life"]
        if "weight" in facts:
            ds.PatientWeight = facts["weight"]
        if "dose" in facts:
            ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose = facts["dose"]

    return write_pt_series(box.inp / "pt", edit=edit)


@pytest.mark.parametrize("facts,header", [
    ({"half_life": 1.83}, "RadionuclideHalfLife"),
    ({"half_life": 1e-300}, "RadionuclideHalfLife"),
    ({"weight": 1e308}, "PatientWeight"),
    ({"dose": 1e-300}, "RadionuclideTotalDose"),
    ({"dose": 1e300}, "RadionuclideTotalDose"),
])
def test_impossible_suv_header_is_refused_naming_it(box: Box, facts: dict[str, float],
                                                    header: str) -> None:
    from helpers.synth import write_mr_series

    mr, pt = write_mr_series(box.inp / "mr"), _pet(box, **facts)
    box.snap()
    out = box.out / "f.nii.gz"
    line = box.refused(invoke("fuse", mr, pt, "-o", out), 1, header, absent=(out,))
    assert "--window" in line
    # the way round it names: an explicit window in the file's units
    box.accepted(invoke("fuse", mr, pt, "-o", out, "--window", "20000,40000"), (out,))
    record = json.loads((box.out / "f.nii.gz.json").read_text())
    assert record["decisions"]["suv"]["available"] is False


# -- 7. names the provenance record and the batch must survive ------------------------------


def test_non_utf8_file_names_get_a_record(box: Box) -> None:
    if sys.platform == "darwin":
        pytest.skip("the file system insists on UTF-8 names")
    raw = os.fsencode(str(box.inp)) + b"/caf\xe9.png"
    Path(os.fsdecode(raw)).write_bytes(hf.image_bytes("png", False, 32))
    pet = box.png("pet.png", colour=True, size=32)
    out = Path(os.fsdecode(os.fsencode(str(box.out)) + b"/r\xe9sult.png"))
    box.snap()
    box.accepted(invoke("fuse", os.fsdecode(raw), pet, "-o", out), (out,))
    record = json.loads(Path(str(out) + ".json").read_text(encoding="utf-8"))
    assert record["inputs"]["mri"]["path"].endswith("caf\\xe9.png")
    from medfuse.provenance import verify_outputs

    assert verify_outputs(Path(str(out) + ".json")) is None


def test_non_utf8_names_in_a_batch_resume(box: Box) -> None:
    task = _task(box, ["a.png"])
    for sub, colour in (("MRI", False), ("PET", True)):
        name = os.fsencode(str(task / sub)) + b"/\xff\xfe.png"
        Path(os.fsdecode(name)).write_bytes(hf.image_bytes("png", colour, 32, 5))
    box.snap()
    box.accepted(invoke("batch", task, box.out, "-q"))
    res = invoke("batch", task, box.out, "--resume", "-q")
    box.accepted(res)
    from medfuse.batch.ledger import latest, read_ledger

    assert {r.status for r in latest(read_ledger(box.out)).values()} == {"skipped"}


def test_symlink_loop_in_mri_fails_that_entry_only(box: Box) -> None:
    task = _task(box, ["a.png", "b.png"])
    (task / "MRI" / "loop.png").symlink_to("loop.png")
    (task / "PET" / "loop.png").symlink_to("loop.png")
    box.snap()
    res = invoke("batch", task, box.out)
    box.batch(res, {"a": box.out / "a.png", "b": box.out / "b.png"}, ["loop"])


# -- 8. masks: all five or none ---------------------------------------------------------------


def test_masks_are_all_or_nothing_when_one_rename_fails(box: Box,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    mri, pet = box.png("a.png"), box.png("b.png", colour=True)
    out = box.out / "m"
    box.accepted(invoke("masks", mri, pet, "-o", out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import medfuse.io.outputs as outputs

    real = os.replace

    def immutable(src, dst):  # type: ignore[no-untyped-def]
        if Path(src).name == "masks.json":  # the last of the five, immutable
            raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))
        return real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", immutable)
    other = box.png("c.png", colour=True, seed=4)
    box.snap()
    box.refused(invoke("masks", mri, other, "-o", out, "--force"), 1, "not permitted")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    fresh = box.out / "fresh"
    box.refused(invoke("masks", mri, other, "-o", fresh), 1, "not permitted")
    assert not fresh.exists() or not list(fresh.iterdir())


# -- 9. workers --------------------------------------------------------------------------------


def test_worker_count_is_capped_by_pairs_and_memory() -> None:
    from medfuse.batch.pool import worker_count

    assert worker_count(4, 10, None) == (4, "")
    n, note = worker_count(1000, 40, None)
    assert n == 40 and "--workers 1000: starting 40" in note and "pair" in note
    n, note = worker_count(1000, 40, 12 << 30, per_worker=768 << 20)
    assert n == 16 and "12.0 GiB" in note
    assert worker_count(8, 40, 1 << 20)[0] == 1


def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    """SIGKILL of the process that runs a pool (busy workers, loading a slow engine): its
    workers end within a few seconds instead of living on as orphans."""
    script = textwrap.dedent("""
        import multiprocessing, os, signal, threading, time
        from pathlib import Path
        from medfuse.batch import PairTask
        from medfuse.fusion import FuseRequest
        from medfuse.batch.pool import run_pool

        class Sleepy:
            def __call__(self):
                time.sleep(60)

        if __name__ == "__main__":
            tasks = [PairTask(i, str(i), FuseRequest(Path("a.png"), Path("b.png"),
                                                     Path(f"o{i}.png"))) for i in range(2)]
            threading.Thread(target=run_pool, args=(tasks, Sleepy(), lambda i, o: None, 2),
                             daemon=True).start()
            while len(multiprocessing.active_children()) < 2:
                time.sleep(0.1)
            time.sleep(3.0)
            with open("pids", "w") as fh:
                fh.write(" ".join(str(p.pid) for p in multiprocessing.active_children()))
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    (tmp_path / "owner.py").write_text(script)
    (tmp_path / "a.png").write_bytes(hf.image_bytes("png", False, 32))
    (tmp_path / "b.png").write_bytes(hf.image_bytes("png", True, 32))
    import medfuse

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(medfuse.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    # the workers' output goes to a file: a pipe would stay open while they live
    with open(tmp_path / "log", "wb") as log:
        code = subprocess.run([sys.executable, str(tmp_path / "owner.py")], stdout=log,
                              stderr=log, timeout=60, env=env, cwd=tmp_path).returncode
    assert code == -signal.SIGKILL, (tmp_path / "log").read_text()
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().split()[2] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their parent by 10 s"


def test_batch_says_the_worker_cap(box: Box) -> None:
    task = _task(box, ["a.png", "b.png"])
    box.snap()
    res = invoke("batch", task, box.out, "--workers", "1000")
    box.batch(res, {"a": box.out / "a.png", "b": box.out / "b.png"}, [])
    assert any(ln.startswith("warning: --workers 1000: starting 2") for ln in res.err_lines), res


# -- 10. --register '' ---------------------------------------------------------------------------


def test_empty_register_is_a_usage_error(box: Box) -> None:
    mri, pet = box.png("a.png"), box.png("b.png", colour=True)
    box.snap()
    out = box.out / "f.png"
    box.refused(invoke("fuse", mri, pet, "-o", out, "--register", ""), 2, "--register",
                absent=(out,))


# -- one record per output; a rerun names --resume ---------------------------------------------


def test_outputs_differing_in_extension_keep_their_own_records(box: Box) -> None:
    mri, pet = box.png("a.png"), box.png("b.png", colour=True)
    box.snap()
    png, tif = box.out / "a.png", box.out / "a.tif"
    box.accepted(invoke("fuse", mri, pet, "-o", png), (png,))
    box.accepted(invoke("fuse", mri, pet, "-o", tif), (tif,))
    box.accepted(invoke("fuse", mri, pet, "-o", png, "--force"), (png,))
    from medfuse.provenance import verify_outputs

    for out in (png, tif):
        record = Path(str(out) + ".json")
        assert verify_outputs(record) is None
        assert json.loads(record.read_text())["outputs"]["paths"] == [str(out)]


def test_batch_rerun_without_flags_names_resume(box: Box) -> None:
    task = _task(box, ["a.png", "b.png"])
    box.snap()
    box.accepted(invoke("batch", task, box.out, "-q"))
    res = invoke("batch", task, box.out)
    failed = [ln for ln in res.err_lines if ln.startswith("failed ")]
    assert res.code == 1 and len(failed) == 2, res
    assert all("--resume" in ln and "--skip-existing" in ln for ln in failed), res


def test_staged_outputs_are_all_in_place_after_a_commit(tmp_path: Path) -> None:
    """OutputSet on its own: targets in two folders, one replaced; all renamed, nothing
    staged left."""
    from medfuse.io.outputs import OutputSet

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "y.txt").write_text("old")
    together = OutputSet()
    together.path_for(tmp_path / "a" / "x.txt").write_text("x")
    together.path_for(tmp_path / "b" / "y.txt").write_text("y")
    assert together.commit() == [tmp_path / "a" / "x.txt", tmp_path / "b" / "y.txt"]
    assert (tmp_path / "a" / "x.txt").read_text() == "x"
    assert (tmp_path / "b" / "y.txt").read_text() == "y"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "x.txt", "y.txt"]
