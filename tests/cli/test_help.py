"""What ``--help`` shows: switches as switches, ``[extra]`` names kept, the commands in the
order a user meets them, and a switch given a value explained in one line."""

from __future__ import annotations

import pytest

from helpers.cli import run
from medfuse.cli.app import COMMAND_ORDER

COMMANDS = ["fuse", "batch", "masks", "eval", "train", "train-semantic", "demo", "info"]


@pytest.fixture(autouse=True)
def wide_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """Help on one line per option, so a test reads what a wide terminal shows."""
    monkeypatch.setenv("COLUMNS", "240")
    monkeypatch.setenv("TERMINAL_WIDTH", "240")


def _option_line(help_out: str, option: str) -> str:
    lines = [ln for ln in help_out.splitlines() if ln.lstrip("│ *").startswith(option + " ")]
    assert lines, (option, help_out)
    return lines[0]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_switches_show_no_value(command: str) -> None:
    r = run(*([command] if command else []), "--help")
    assert r.code == 0, r.text
    assert "<bool>" not in r.out
    assert "<" not in _option_line(r.out, "--help")


def test_the_switches_of_fuse_take_no_value_column() -> None:
    out = run("fuse", "--help").out
    for switch in ("--force", "--resize", "--anonymize", "--allow-non-mr", "--debug"):
        assert "<" not in _option_line(out, switch), switch
    assert "<path>" in _option_line(out, "--save-transform")  # a valued option keeps its type


def test_extra_names_survive_the_markup() -> None:
    out = run("fuse", "--help").out
    assert 'pip install "medfuse[register]"' in " ".join(out.split()).replace("│ ", "")


def test_help_text_escapes_markup_and_joins_docstring_lines() -> None:
    from medfuse.cli.options import help_text

    assert help_text('needs "medfuse[register]"') == 'needs "medfuse\\[register]"'
    assert help_text("  one\n  paragraph\n\n  and\n  another") == "one paragraph\n\nand another"
    assert help_text(None) is None


def test_commands_are_listed_in_the_order_a_user_meets_them() -> None:
    out = run("--help").out
    rows = [ln.strip("│ ").split()[0] for ln in out.splitlines()
            if ln.startswith("│ ") and ln.strip("│ ")[:1].isalpha()]
    listed = [name for name in rows if name in COMMANDS]
    assert listed == COMMANDS
    assert tuple(COMMANDS) == COMMAND_ORDER


@pytest.mark.parametrize("value", ["true", "False", "yes", "0"])
def test_a_switch_given_a_value_is_explained(value: str) -> None:
    r = run("demo", "-o", "nowhere", "--force", value)
    assert r.code == 2 and r.out == ""
    lines = r.err_lines()
    assert len(lines) == 1 and "--force is a switch and takes no value" in lines[0], r.err
    assert f"--force {value}" in lines[0]


def test_a_paired_switch_names_its_off_form() -> None:
    r = run("fuse", "a.png", "b.png", "-o", "f.png", "--stretch", "true")
    assert r.code == 2 and "--no-stretch" in r.err and len(r.err_lines()) == 1


def test_an_ordinary_extra_argument_keeps_the_parser_message() -> None:
    r = run("demo", "-o", "nowhere", "surplus")
    assert r.code == 2 and "surplus" in r.err and "switch" not in r.err
