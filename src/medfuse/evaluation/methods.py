"""The columns of a comparison: classical rules, GeSeNet weights, and folders of fused images.

Every method that medfuse runs itself is a *luminance rule*: it turns a batch of MRI planes
and the other image's luminance into fused luminance, and the fused image is coloured by
the one chroma rule (:func:`medfuse.prepare.pair.colourise`). A pixel average and a trained
network therefore produce the same kind of image, and their scores differ by the luminance
rule alone. A ``--fused`` folder is the third kind: images made elsewhere, matched by name.

The command line names methods as ``average``, ``gesenet``, ``gesenet:PATH`` or ``DIR``
(``--fused``), each optionally prefixed ``LABEL=``; labels name table columns and folders.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medfuse.errors import UsageError
from medfuse.io.layout import IMAGE_SUFFIXES, inputs_by_stem

if TYPE_CHECKING:
    from medfuse.engine import Engine
    from medfuse.io.layout import Task
    from medfuse.prepare.pair import PreparedPair

_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
#: Method kinds that are not a classical rule's name.
GESENET = "gesenet"
FUSED = "fused"


@dataclass(frozen=True)
class MethodSpec:
    """One column of the comparison: a built-in rule, GeSeNet with some weights, or a
    folder of fused images made elsewhere."""

    label: str
    kind: str  # "gesenet", "fused", or a baseline name
    path: Path | None = None  # weights (gesenet) or folder (fused); None = default weights

    @property
    def runs(self) -> bool:
        """True when medfuse fuses the images itself (a rule or GeSeNet), False for a
        folder of fused images that are only read."""
        return self.kind != FUSED

    def describe(self) -> str:
        from medfuse.baselines import BASELINE_DESCRIPTIONS

        if self.kind == GESENET:
            return f"GeSeNet, weights {self.path}" if self.path else "GeSeNet, default weights"
        if self.kind == FUSED:
            return f"existing fused images in {self.path}"
        return BASELINE_DESCRIPTIONS.get(self.kind, self.kind)


def _split_label(text: str) -> tuple[str | None, str]:
    """``LABEL=SPEC`` -> (LABEL, SPEC); text without a valid label prefix is all SPEC (a
    path may contain '=')."""
    head, sep, rest = text.partition("=")
    if sep and _LABEL_RE.match(head.strip()) and ":" not in head and "/" not in head:
        return head.strip(), rest.strip()
    return None, text.strip()


def _check_label(label: str, option: str) -> str:
    if not _LABEL_RE.match(label):
        raise UsageError(
            f"{option} label {label!r}: use letters, digits and _ . + - (it names files and folders)"
        )
    return label


def parse_method(text: str) -> MethodSpec:
    """Parse ``--method``: ``average``, ``gesenet``, ``gesenet:PATH``, each optionally
    prefixed ``LABEL=``."""
    from medfuse.baselines import canonical_name

    label, spec = _split_label(text)
    if not spec:
        raise UsageError(f"--method {text!r}: empty method")
    kind, colon, arg = spec.partition(":")
    if kind.strip().lower() == GESENET:
        if colon and not arg.strip():
            raise UsageError(f"--method {text!r}: give a weights path after 'gesenet:'")
        path = Path(arg.strip()).expanduser() if colon else None
        if path is not None and not path.is_file():
            raise UsageError(f"--method {text}: weights file not found: {path}")
        default = GESENET if path is None else f"gesenet-{path.stem}"
        return MethodSpec(_check_label(label or default, "--method"), GESENET, path)
    if colon:
        raise UsageError(f"--method {text!r}: only gesenet takes a ':PATH' argument")
    try:
        name = canonical_name(kind)
    except UsageError as exc:
        raise UsageError(f"--method {text!r}: {exc}; or gesenet[:PATH]") from None
    return MethodSpec(_check_label(label or name, "--method"), name)


def parse_fused(text: str) -> MethodSpec:
    """Parse ``--fused``: ``DIR`` or ``LABEL=DIR`` (default label: the folder's name)."""
    label, spec = _split_label(text)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise UsageError(f"--fused: folder not found: {folder}")
    default = folder.resolve().name or FUSED
    if not label and not _LABEL_RE.match(default):
        default = FUSED
    return MethodSpec(_check_label(label or default, "--fused"), FUSED, folder)


def check_unique(methods: Sequence[MethodSpec]) -> None:
    """Labels name table columns and folders: two methods may not share one."""
    seen: set[str] = set()
    for m in methods:
        if m.label in seen:
            raise UsageError(
                f"two methods are labelled {m.label!r}; name them with LABEL=SPEC "
                "(e.g. --method old=gesenet:a.pth --method new=gesenet:b.pth)"
            )
        seen.add(m.label)
    if not methods:
        raise UsageError("nothing to score: give at least one --method or --fused")


# -- methods medfuse runs ------------------------------------------------------------------

#: Fused images in [0, 1] (grey (H, W) or RGB (H, W, 3)) for prepared pairs, in order.
FuseBatch = Callable[[Sequence["PreparedPair"]], list[np.ndarray]]


@dataclass
class Runner:
    """A method ready to fuse, and a line saying exactly what it is (weights file,
    checksum and device for GeSeNet). Rules and networks take the same prepared pairs and
    return the same kind of image through the same colour path."""

    spec: MethodSpec
    fuse: FuseBatch
    description: str


def _rule(kind: str) -> FuseBatch:
    from medfuse import baselines

    def fuse(pairs: Sequence[PreparedPair]) -> list[np.ndarray]:
        return [r.image for r in baselines.fuse_prepared(list(pairs), kind)]

    return fuse


def _network(engine: Engine) -> FuseBatch:
    from medfuse.fusion import fuse_prepared

    def fuse(pairs: Sequence[PreparedPair]) -> list[np.ndarray]:
        return [r.image for r in fuse_prepared(list(pairs), engine)]

    return fuse


def load_runners(
    methods: Sequence[MethodSpec],
    weights: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 8,
    engines: Mapping[str, Engine] | None = None,
) -> dict[str, Runner]:
    """A runner per method that medfuse runs, keyed by label. Every network is loaded now,
    so a bad weights file fails before minutes of work. ``engines`` may supply loaded
    engines by label (tests, notebooks); ``weights`` are the default GeSeNet weights (a
    file or a model name, as ``--weights`` takes them)."""
    runners: dict[str, Runner] = {}
    for m in methods:
        if m.kind == GESENET:
            engine = (engines or {}).get(m.label)
            if engine is None:
                from medfuse.engine import load_model

                engine = load_model(m.path or weights, device, batch_size=batch_size)
            sha = engine.weights_sha256
            text = (f"GeSeNet, weights {engine.weights_path}"
                    + (f" (sha256 {sha[:12]})" if sha else "") + f", {engine.device}")
            runners[m.label] = Runner(m, _network(engine), text)
        elif m.runs:
            runners[m.label] = Runner(m, _rule(m.kind), m.describe())
    return runners


# -- folders of fused images -----------------------------------------------------------------


def fused_folder(method: MethodSpec, task: Task, n_tasks: int, split: str | None) -> Path:
    """Where a ``--fused`` method's images for ``task`` are: ``DIR/<TASK>/<split>``,
    ``DIR/<TASK>`` (the layout ``--save-fused`` writes), or ``DIR`` itself for a single
    task. Several tasks must be kept apart, since stems repeat across tasks."""
    assert method.path is not None
    root = method.path
    for cand in ([root / task.name / split] if split else []) + [root / task.name]:
        if cand.is_dir():
            return cand
    if n_tasks > 1:
        raise UsageError(
            f"--fused {root}: with several tasks it must hold one folder per task "
            f"(no {root / task.name})"
        )
    return root


@dataclass
class FusedImages:
    """A ``--fused`` method's entries for one task, by pair name: an image file for an
    image pair, a folder of ``<axis>_NNNN.png`` slices for a volume pair (the layout
    ``medfuse fuse`` writes for a PNG folder output and ``--save-fused`` keeps)."""

    spec: MethodSpec
    folder: Path
    entries: dict[str, Path]
    #: Names that several entries share (``a.png`` beside ``a.jpg``): which one was meant
    #: would be a guess, so those pairs are reported, not scored.
    ambiguous: dict[str, str]

    @classmethod
    def scan(cls, spec: MethodSpec, folder: Path) -> FusedImages:
        entries, problems = inputs_by_stem(folder)
        ambiguous = {entry.split("/", 1)[-1]: reason for entry, reason in problems}
        entries = {k: v for k, v in entries.items()
                   if v.is_dir() or v.suffix.lower() in IMAGE_SUFFIXES}
        return cls(spec, folder, entries, ambiguous)

    def locate(self, name: str, slice_file: str | None = None) -> tuple[Path | None, str]:
        """(path, "") for a pair's fused image (or one slice file of a volume pair), or
        (None, why) when it is not there."""
        if name in self.ambiguous:
            return None, f"{self.folder}: {self.ambiguous[name]}"
        entry = self.entries.get(name)
        if slice_file is None:
            if entry is None or entry.is_dir():
                return None, f"no fused image named {name}.* in {self.spec.path}"
            return entry, ""
        if entry is None or not entry.is_dir():
            return None, f"no folder {name}/ of fused slices in {self.spec.path}"
        path = entry / slice_file
        if not path.is_file():
            return None, f"no fused slice {name}/{slice_file} in {self.spec.path}"
        return path, ""


def slice_file_name(axis: str, index: int, n_slices: int) -> str:
    """The file name of one slice in a folder of PNG slices, as ``medfuse fuse`` names
    them (``axial_0007.png``; at least four digits)."""
    width = max(4, len(str(max(n_slices - 1, 0))))
    return f"{axis}_{index:0{width}d}.png"


__all__ = [
    "FUSED",
    "GESENET",
    "FusedImages",
    "FuseBatch",
    "MethodSpec",
    "Runner",
    "check_unique",
    "fused_folder",
    "load_runners",
    "parse_fused",
    "parse_method",
    "slice_file_name",
]
