"""Training recipes: one TOML file holds everything that defines a run's weights.

A recipe has tables ``[train]`` (schedule and optimiser, initialisation), ``[data]``
(generated studies added, the held-out share of a user's studies), ``[losses]`` (every
term's weight and parameters, from :mod:`medfuse.training.terms`), ``[validation]`` and
``[checkpoint]``, and optionally ``[[stages]]``: each stage overrides some of those keys
and by default starts from the previous stage's best weights, so a chain of fine-tunes is
one file. The recipes medfuse ships live in ``medfuse/recipes/*.toml``.

Overrides (``--set key=value``) are applied here, not in the CLI, so a Python caller gets
the same result: a key such as ``train.lr`` wins over the recipe in every stage, a key
such as ``stages.finetune.train.lr`` in that stage only. What is refused, always as one
line naming the key: an unknown key, a value of the wrong type, a value out of range.
What does not define the weights (the data folder, device, threads, time budget) is not
a recipe key; those are run options.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfuse.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Where the shipped recipes are.
RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"
#: Criteria a recipe may name (:mod:`medfuse.training.validation`; torch-free copy).
CRITERIA = ("val_qabf", "val_qabf+ssim", "val_v2", "last")
#: Special values of ``train.init``: random weights, the bundled weights, a previous stage.
INIT_WORDS = ("none", "bundled", "previous", "previous:best", "previous:last")


@dataclass(frozen=True)
class Key:
    """One recipe key: its type, default and allowed range (inclusive unless ``open``)."""

    kind: str  # "int", "float", "bool", "str", "band" (two floats), "choice"
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    optional: bool = False  # "none" is allowed (None)
    choices: tuple[str, ...] = ()


def _schema() -> dict[str, Key]:
    from medfuse.training.terms import TERMS

    s: dict[str, Key] = {
        "train.steps": Key("int", 20000, "optimiser steps of the cosine schedule", low=1),
        "train.stop_after": Key("int", None, "end the stage at this step, keeping the schedule",
                                low=1, optional=True),
        "train.batch": Key("int", 4, "patches per step", low=1),
        "train.patch": Key("int", 24, "patch side in pixels (even)", low=8),
        "train.stride": Key("int", 8, "grid stride of patch corners", low=1),
        "train.lr": Key("float", 1e-3, "Adam learning rate (cosine to 5 %)", low=0.0,
                        low_open=True),
        "train.weight_decay": Key("float", 2e-4, "Adam weight decay", low=0.0),
        "train.mask_lr_scale": Key("float", 1.0, "learning-rate factor of the channel-mask "
                                   "logits", low=0.0, low_open=True),
        "train.tau": Key("float", 0.5, "Gumbel-softmax temperature", low=0.0, low_open=True),
        "train.tau_start": Key("float", None, "anneal the temperature from this value",
                               low=0.0, low_open=True, optional=True),
        "train.seed": Key("int", 0, "seed of the patch sampler and of torch", low=0),
        "train.straight_through": Key("bool", False, "inference masks in training"),
        "train.display_luma": Key("bool", False, "losses score the written RGB's luminance"),
        "train.init": Key("str", "none", "start weights: none, bundled, previous[:best|:last] "
                          "or a weights file"),
        "train.semantic": Key("str", "bundled", "frozen semantic net: bundled, none or a file"),
        "train.anchor_weights": Key("str", "none", "model the anchor term holds F to: none, "
                                    "init, bundled or a file"),
        "train.fit_steps": Key("bool", False, "fit steps to the time budget after a warm-up"),
        "data.studies": Key("int", 0, "generated study slice pairs added to training", low=0,
                            high=2000),
        "data.holdout": Key("float", 0.25, "share of a user's studies held out for validation "
                            "(data without a val split)", low=0.0, high=0.9, low_open=True),
        "data.max_slices": Key("int", 24, "slices taken from each volume pair", low=1),
        "data.split_seed": Key("int", 0, "seed of the held-out split", low=0),
        "validation.criterion": Key("choice", "val_qabf", "rule that picks the best checkpoint",
                                    choices=CRITERIA),
        "validation.every": Key("int", 2000, "steps between validations", low=1),
        "validation.before_after": Key("bool", True, "score the start and the result on the "
                                       "validation pairs (before_after.md)"),
        "checkpoint.every": Key("int", 500, "steps between checkpoints (resume points)", low=1),
    }
    for t in TERMS:
        s[f"losses.{t.name}"] = Key("float", t.default, t.help, low=0.0)
        for p in t.params:
            if isinstance(p.default, bool):
                s[f"losses.{p.name}"] = Key("bool", p.default, p.help)
            elif isinstance(p.default, tuple):
                s[f"losses.{p.name}"] = Key("band", p.default, p.help, p.low, p.high)
            else:
                s[f"losses.{p.name}"] = Key("float", p.default, p.help, p.low, p.high,
                                            optional=p.default is None)
    return s


_SCHEMA: dict[str, Key] | None = None


def schema() -> dict[str, Key]:
    """Every recipe key (section.name) with its type, default and range."""
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = _schema()
    return _SCHEMA


SECTIONS = ("train", "data", "losses", "validation", "checkpoint")


def check_value(key: str, value: Any, where: str = "") -> Any:
    """``value`` as key ``key`` holds it, or a UsageError naming the key."""
    spec = schema().get(key)
    pre = f"{where}: " if where else ""
    if spec is None:
        section = key.split(".", 1)[0]
        known = sorted(k.split(".", 1)[1] for k in schema() if k.startswith(section + "."))
        hint = f" (known in [{section}]: {', '.join(known)})" if known else \
            f" (sections: {', '.join(SECTIONS)})"
        raise UsageError(f"{pre}unknown key {key!r}{hint}")
    if spec.optional and (value is None or (isinstance(value, str) and value.lower() == "none")):
        return None
    kind = spec.kind

    def bad(expected: str) -> UsageError:
        return UsageError(f"{pre}{key} must be {expected}, got {value!r}")

    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        return value
    if kind == "choice":
        if value not in spec.choices:
            raise bad(f"one of {', '.join(spec.choices)}")
        return value
    if kind == "band":
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise bad("[low, high]")
        lo, hi = (float(v) for v in value)
        if not (0.0 <= lo < hi <= 1.0):
            raise UsageError(f"{pre}{key} [{lo:g}, {hi:g}]: needs 0 <= low < high <= 1")
        return (lo, hi)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad("an integer" if kind == "int" else "a number")
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise bad("an integer")
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise bad("a finite number")
    if spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low):
        raise UsageError(f"{pre}{key} {value:g}: must be "
                         f"{'above' if spec.low_open else 'at least'} {spec.low:g}")
    if spec.high is not None and value > spec.high:
        raise UsageError(f"{pre}{key} {value:g}: must be at most {spec.high:g}")
    return value


def _flatten(table: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """A recipe table as ``section.key`` values, each checked."""
    out: dict[str, Any] = {}
    for section, body in table.items():
        if section not in SECTIONS:
            raise UsageError(f"{where}: unknown key {prefix + section!r} "
                             f"(sections: {', '.join(SECTIONS)}, stages)")
        if not isinstance(body, Mapping):
            raise UsageError(f"{where}: {prefix + section} must be a table ([{section}])")
        for k, v in body.items():
            key = f"{section}.{k}"
            try:
                out[key] = check_value(key, v)
            except UsageError as exc:
                raise UsageError(f"{where}: {str(exc).replace(key, prefix + key, 1)}") from None
    return out


@dataclass
class Stage:
    """One stage of a recipe: its name and every key's resolved value."""

    name: str
    index: int
    values: dict[str, Any]

    @property
    def folder(self) -> str:
        return f"{self.index + 1:02d}-{self.name}"


@dataclass
class Recipe:
    """A checked recipe: base values (defaults filled in), stage overrides, and the
    ``--set`` values applied on top (kept apart so the recipe written back is the one
    used)."""

    name: str
    description: str = ""
    source: str = ""
    base: dict[str, Any] = field(default_factory=dict)
    stages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: A fine-tune: refused without ``train.init`` (random weights would train badly).
    fine_tune: bool = False

    def resolved(self) -> list[Stage]:
        """Every stage with each key's final value (defaults < base < stage)."""
        defaults = {k: v.default for k, v in schema().items()}
        stages = self.stages or [("train", {})]
        out = []
        for i, (name, over) in enumerate(stages):
            values = {**defaults, **self.base, **over}
            if i > 0 and "train.init" not in over:
                values["train.init"] = "previous"
            out.append(Stage(name, i, values))
        return out

    def with_overrides(self, overrides: Mapping[str, Any] | Iterable[str]) -> Recipe:
        """A copy with ``--set`` values applied: ``section.key`` wins in every stage,
        ``stages.NAME.section.key`` in one. Strings are parsed as TOML values (``7``,
        ``true``, ``[0.3, 0.9]``), anything that is not one is kept as a string."""
        items = parse_sets(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
        base = dict(self.base)
        stages = [(n, dict(v)) for n, v in self.stages]
        names = [n for n, _ in stages] or ["train"]
        for raw_key, raw in items.items():
            value = _parse_value(raw) if isinstance(raw, str) else raw
            if raw_key.startswith("stages."):
                parts = raw_key.split(".", 2)
                if len(parts) < 3 or parts[1] not in names:
                    raise UsageError(f"--set {raw_key}: no stage {parts[1] if len(parts) > 1 else ''!r} "
                                     f"in recipe {self.name} (stages: {', '.join(names)})")
                key = parts[2]
                value = check_value(key, value, f"--set {raw_key}")
                if not stages:
                    base[key] = value
                else:
                    stages[names.index(parts[1])][1][key] = value
                continue
            value = check_value(raw_key, value, "--set")
            if raw_key == "train.init" and stages:  # later stages start from the one before
                stages[0][1][raw_key] = value
                continue
            base[raw_key] = value
            for _, over in stages:  # explicit wins in every stage
                over.pop(raw_key, None)
        return Recipe(self.name, self.description, self.source, base, stages, self.fine_tune)

    def first_init(self) -> str:
        return self.resolved()[0].values["train.init"]

    def check(self) -> None:
        """Rules across keys (a fine-tune needs an init; a later stage's init names a
        stage before it or a file)."""
        stages = self.resolved()
        if self.fine_tune and stages[0].values["train.init"] == "none":
            raise UsageError(f"recipe {self.name} fine-tunes existing weights: give --init "
                             "(a weights file, or 'bundled')")
        if stages[0].values["train.init"].startswith("previous"):
            raise UsageError(f"recipe {self.name}: the first stage has no previous stage to "
                             "start from (train.init)")

    def to_toml(self) -> str:
        """The recipe as TOML (every base key written out), read back to the same stages."""
        lines = [f"name = {_toml(self.name)}"]
        if self.description:
            lines.append(f"description = {_toml(self.description)}")
        lines.append(f"fine_tune = {_toml(self.fine_tune)}")
        full = {**{k: v.default for k, v in schema().items()}, **self.base}
        lines += _tables(full)
        for name, over in self.stages:
            lines += ["", "[[stages]]", f"name = {_toml(name)}"]
            lines += _tables(over, prefix="stages.")
        return "\n".join(lines) + "\n"


def _tables(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    lines: list[str] = []
    for section in SECTIONS:
        keys = [k for k in values if k.startswith(section + ".")]
        if not keys:
            continue
        lines += ["", f"[{prefix}{section}]"]
        for k in keys:
            v = values[k]
            lines.append(f"{k.split('.', 1)[1]} = {_toml('none' if v is None else v)}")
    return lines


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: Iterable[str]) -> dict[str, str]:
    """``key=value`` strings (``--set``) as a dict; one line for a malformed one."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE (e.g. train.lr=3e-4)")
        out[key.strip()] = value.strip()
    return out


def shipped_recipes() -> dict[str, Path]:
    """Name -> file of every recipe medfuse ships."""
    return {p.stem: p for p in sorted(RECIPE_DIR.glob("*.toml"))}


def parse_recipe(text: str, where: str) -> Recipe:
    """A recipe from TOML text; every key checked (``where`` names it in errors)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: not valid TOML ({exc})") from None
    top = {k: doc.pop(k) for k in ("name", "description", "fine_tune") if k in doc}
    stages_raw = doc.pop("stages", [])
    name = top.get("name", Path(where).stem)
    for k, expected in (("name", str), ("description", str), ("fine_tune", bool)):
        if k in top and not isinstance(top[k], expected):
            raise UsageError(f"{where}: {k} must be a {'string' if expected is str else 'boolean'}")
    base = _flatten(doc, where)
    if not isinstance(stages_raw, list):
        raise UsageError(f"{where}: stages must be an array of tables ([[stages]])")
    stages: list[tuple[str, dict[str, Any]]] = []
    for i, st in enumerate(stages_raw):
        if not isinstance(st, Mapping):
            raise UsageError(f"{where}: stages must be an array of tables ([[stages]])")
        st = dict(st)
        sname = st.pop("name", f"stage{i + 1}")
        if not isinstance(sname, str) or not sname.replace("-", "").replace("_", "").isalnum():
            raise UsageError(f"{where}: stages[{i}].name must be letters, digits, - or _")
        if sname in (n for n, _ in stages):
            raise UsageError(f"{where}: two stages named {sname!r}")
        stages.append((sname, _flatten(st, where, prefix=f"stages.{sname}.")))
    return Recipe(name, top.get("description", ""), where, base, stages,
                  bool(top.get("fine_tune", False)))


def load_recipe(spec: str | Path) -> Recipe:
    """A shipped recipe by name, or a recipe file by path."""
    text_spec = str(spec)
    shipped = shipped_recipes()
    if text_spec in shipped:
        path = shipped[text_spec]
    else:
        path = Path(text_spec)
        if not path.is_file():
            raise UsageError(f"--recipe {text_spec}: no such recipe (shipped: "
                             f"{', '.join(shipped)}) and no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--recipe {path}: cannot read it ({exc})") from None
    return parse_recipe(text, str(path) if text_spec not in shipped else text_spec)
