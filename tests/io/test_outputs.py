"""medfuse.io.outputs: the one output policy (never an input, never silently replaced) and
staging (nothing under the requested name until it is complete)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medfuse.errors import UsageError
from medfuse.io.outputs import (
    STAGING_MARK,
    StagedFolder,
    atomic_output,
    check_output,
    make_staging_dir,
    move_into_place,
)


def staged(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(STAGING_MARK)]


def test_check_output_refuses_inputs(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    a = src / "a.png"
    a.write_bytes(b"x")
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        check_output(a, True, [a])
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        check_output(tmp_path / "in" / ".." / "in" / "a.png", True, [a])  # another spelling
    with pytest.raises(UsageError, match="inside input folder"):
        check_output(src / "new.png", True, [src])
    with pytest.raises(UsageError, match="inside input folder"):
        check_output(src / "sub" / "deeper", True, [src], kind="folder")
    with pytest.raises(UsageError, match="holds input"):
        check_output(tmp_path, True, [a], kind="folder", label="DICOM series")
    check_output(tmp_path / "out.png", False, [a, src])  # beside the inputs: fine


def test_check_output_refuses_links_to_inputs(tmp_path: Path) -> None:
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    link = tmp_path / "link.png"
    link.symlink_to(a)
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        check_output(link, True, [a])


def test_check_output_existing(tmp_path: Path) -> None:
    f = tmp_path / "f.png"
    f.write_bytes(b"x")
    with pytest.raises(UsageError, match="--force"):
        check_output(f, False)
    check_output(f, True)
    with pytest.raises(UsageError, match="is a folder"):
        check_output(tmp_path, True)
    with pytest.raises(UsageError, match="not a folder"):
        check_output(f, True, kind="folder")
    with pytest.raises(UsageError, match="masks .* exists"):
        check_output(f, False, label="masks")


def test_atomic_output_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.txt"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(STAGING_MARK)
        tmp.write_text("new")
        assert not target.exists()  # nothing under the name until complete
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_output(target, force=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "new"
    assert staged(tmp_path) == []
    with pytest.raises(UsageError, match="exists"), atomic_output(target):
        pass


def test_atomic_output_mode_like_open(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "m.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.txt").stat().st_mode & 0o777 == 0o644


def test_staged_folder(tmp_path: Path) -> None:
    out = tmp_path / "series"
    with StagedFolder(out) as w:
        w.path_for("a.txt").write_text("a")
        assert not out.exists()
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    with pytest.raises(UsageError, match="exists"):
        StagedFolder(out)
    with pytest.raises(RuntimeError), StagedFolder(out, force=True) as w:
        w.path_for("b.txt").write_text("b")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]  # old state kept
    with StagedFolder(out, force=True) as w:
        w.path_for("c.txt").write_text("c")
    assert sorted(p.name for p in out.iterdir()) == ["c.txt"]  # replaced whole
    assert staged(tmp_path) == []


def test_move_into_place_replaces_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    (target / "old").write_text("o")
    stage = make_staging_dir(tmp_path, "t")
    (stage / "new").write_text("n")
    move_into_place(stage, target)
    assert [p.name for p in target.iterdir()] == ["new"]
    assert staged(tmp_path) == []


def test_sigterm_removes_staged_files(tmp_path: Path) -> None:
    """A process terminated mid-write leaves no staged file behind."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from pathlib import Path
        from medfuse.io.outputs import atomic_output, make_staging_dir
        folder = Path({str(tmp_path)!r})
        make_staging_dir(folder, "series")
        with atomic_output(folder / "x.png") as tmp:
            tmp.write_bytes(b"half")
            print("ready", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert len(staged(tmp_path)) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == -signal.SIGTERM  # generous: shared, loaded CPUs
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(tmp_path.iterdir()) == []
