"""The ``medfuse`` application: usage errors are one ``error:`` line on stderr with exit 2,
``--version``, and a cheap start (no torch for --help)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli import run
from medfuse import __version__

#: (command line, what the one line must mention)
USAGE_ERRORS = [
    (["fuse", "a.png", "b.png", "-o", "f.png", "--slice", "abc"], "--slice"),
    (["fuse", "a.png", "b.png", "-o", "f.png", "--volume", "-1"], "--volume"),
    (["fuse", "a.png", "b.png", "-o", "f.png", "--bogus"], "--bogus"),
    (["fuse", "a.png", "b.png"], "--output"),
    (["fuse", "a.png", "b.png", "-o"], "-o"),
    (["fuse", "a.png"], "OTHER"),
    (["batch", "in", "out", "--batch-size", "0"], "--batch-size"),
    (["batch", "in", "out", "--batch-size", "many"], "--batch-size"),
    (["batch", "in", "out", "--volume", "-1"], "--volume"),
    (["batch", "in", "out", "--bogus"], "--bogus"),
    (["batch", "in", "out", "--slice", "3"], "--slice"),  # batch has no --slice
    (["batch", "in"], "out_dir"),
    (["masks", "a.png", "b.png", "-o", "m", "--slice", "abc"], "--slice"),
    (["masks", "a.png", "b.png", "-o", "m", "--volume", "-1"], "--volume"),
    (["masks", "a.png", "b.png", "-o", "m", "--bogus"], "--bogus"),
    (["masks", "a.png", "b.png"], "--output"),
    (["nosuch"], "nosuch"),
    (["fuse", "", "b.png", "-o", "f.png"], "empty path"),
    (["fuse", "a.png", "b.png", "-o", ""], "empty path"),
    (["batch", "", "out"], "empty path"),
    (["eval", ""], "empty path"),
    (["info", "--weights", ""], "empty path"),
]


@pytest.mark.parametrize("args,needle", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line(args: list[str], needle: str) -> None:
    r = run(*args)
    assert r.code == 2, r.text
    assert r.out == ""
    lines = r.err_lines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error: ") and needle.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in r.err and "╭" not in r.err and "Usage:" not in r.err


def test_usage_error_through_the_entry_point(tmp_path: Path) -> None:
    """The installed entry point (not only the test runner) keeps the one-line promise."""
    code = "import sys; from medfuse.cli import main; sys.argv[0] = 'medfuse'; main()"
    res = subprocess.run([sys.executable, "-c", code, "fuse", "a.png", "b.png", "-o", "f.png",
                          "--slice", "abc"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: ")


def test_version() -> None:
    r = run("--version")
    assert r.code == 0 and r.out == f"medfuse {__version__}\n" and r.err == ""


def test_bare_command_shows_help() -> None:
    r = run()
    assert r.code == 2 and "Usage" in r.out and "fuse" in r.out and r.err == ""


def test_help_lists_the_commands() -> None:
    r = run("--help")
    assert r.code == 0
    for command in ("fuse", "batch", "masks", "info", "demo"):
        assert command in r.out


def test_help_does_not_import_torch() -> None:
    code = "import sys; from medfuse.cli import app; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    from medfuse.cli.options import printable

    assert printable("plain näme.png") == "plain näme.png"
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("bell\x07 csi\x9b rlo\u202e") == "bell\\x07 csi\\x9b rlo\\u202e"
    assert printable("two\nlines\tand a tab") == "two\nlines\tand a tab"
    assert printable("bad byte \udcff") == "bad byte \\udcff"


def test_consoles_escape_control_characters_in_markup_and_plain_text() -> None:
    import io

    from medfuse.cli.options import SafeConsole

    buf = io.StringIO()
    console = SafeConsole(file=buf, highlight=False, width=200)
    console.print("[red]failed[/] evil\x1b[2J.png: bad")
    console.print("evil\x1b[31m.png", markup=False)
    text = buf.getvalue()
    assert "\x1b" not in text
    assert "failed evil\\x1b[2J.png: bad" in text and "evil\\x1b[31m.png" in text


def test_cli_gamut_map_default_is_the_library_default() -> None:
    from medfuse.cli.options import GAMUT_MAP_DEFAULT
    from medfuse.colour import DEFAULT_GAMUT_MAP, GAMUT_MAPS

    assert GAMUT_MAP_DEFAULT == DEFAULT_GAMUT_MAP and GAMUT_MAP_DEFAULT in GAMUT_MAPS


def test_python_dash_m_medfuse(tmp_path: Path) -> None:
    """``python -m medfuse`` is the same command line as the ``medfuse`` script."""
    import os

    import medfuse

    # The medfuse under test, wherever the interpreter's own install points.
    env = {**os.environ, "PYTHONPATH": str(Path(medfuse.__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, "-m", "medfuse", "--version"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60, env=env)
    assert res.returncode == 0 and res.stdout == f"medfuse {__version__}\n", res.stderr
    res = subprocess.run([sys.executable, "-m", "medfuse", "--help"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60, env=env)
    assert res.returncode == 0 and "python -m medfuse" in res.stdout and "fuse" in res.stdout


def test_the_version_is_stated_once() -> None:
    """``pyproject.toml`` reads the version from ``medfuse/__init__.py``; it names none."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/medfuse/__init__.py"
    assert __version__ == "1.0.0"
