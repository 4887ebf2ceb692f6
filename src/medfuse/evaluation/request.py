"""``medfuse eval`` as one library call: options in, files written, a result back.

:class:`EvalRequest` holds what the command line asked for as plain values;
:func:`evaluate_files` checks all of it before any fusion (unknown methods, a folder that
is not a dataset, outputs that exist without ``force``), runs :func:`~medfuse.evaluation.run.evaluate`
and writes the CSV, JSON and report. The command line only fills in the request and
prints what comes back; a notebook can do the same.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medfuse.colour import DEFAULT_GAMUT_MAP
from medfuse.errors import UsageError
from medfuse.evaluation.methods import GESENET, check_unique, parse_fused, parse_method
from medfuse.evaluation.run import EvalResult, evaluate, parse_metrics, parse_profiles
from medfuse.prepare.pair import check_gamut_map


@dataclass
class EvalRequest:
    """Everything ``medfuse eval`` asks for."""

    data_dir: Path
    methods: list[str] = field(default_factory=list)  # --method specs
    fused: list[str] = field(default_factory=list)  # --fused specs
    split: str | None = None
    profiles: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    csv: Path | None = None
    json: Path | None = None
    report: Path | None = None
    save_fused: Path | None = None
    examples: int = 3
    resize: bool = False
    axis: str | None = None
    slice_index: int | None = None
    batch_size: int = 8
    weights: str | None = None
    device: str = "auto"
    force: bool = False
    #: ``--gamut-map``: ``fit`` (default, what ``medfuse fuse`` writes) or ``clip``.
    gamut_map: str = DEFAULT_GAMUT_MAP

    def command_line(self) -> str:
        """The command that reproduces this evaluation, for the report: built from the
        options as parsed, not from sys.argv (which is the test runner's or a notebook's
        when called in-process)."""
        parts = ["medfuse", "eval", str(self.data_dir)]
        if self.split:
            parts += ["--split", self.split]
        for m in self.methods:
            parts += ["--method", m]
        for f in self.fused:
            parts += ["--fused", f]
        for p in parse_profiles(self.profiles):
            parts += ["--profile", p]
        for m in self.metrics:
            parts += ["--metric", m]
        if self.weights is not None:
            parts += ["--weights", str(self.weights)]
        if self.resize:
            parts.append("--resize")
        if self.axis:
            parts += ["--axis", self.axis]
        if self.slice_index is not None:
            parts += ["--slice", str(self.slice_index)]
        if self.device != "auto":
            parts += ["--device", self.device]
        if self.gamut_map.strip().lower() != DEFAULT_GAMUT_MAP:
            parts += ["--gamut-map", self.gamut_map]
        return " ".join(shlex.quote(p) for p in parts)


@dataclass
class EvalReport:
    """What an evaluation produced: the scores, and the files written (in order)."""

    result: EvalResult
    written: list[Path]


def evaluate_files(
    request: EvalRequest,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Check the request, score every method on every pair, write the files asked for.

    Every mistake that can be found without fusing (a bad method, profile or metric,
    ``--weights`` without a default-weights method, a folder that holds no task, an output
    that exists without ``force``) is a :class:`~medfuse.errors.UsageError` before any
    work; per-pair failures are in the result's problems. ``progress`` is called with
    (units done, units in all), a unit being one pair scored by one method.
    """
    from medfuse.evaluation.export import write_csv, write_json
    from medfuse.evaluation.report import check_report_dir, write_report
    from medfuse.io.geometry import check_axis
    from medfuse.io.layout import find_tasks
    from medfuse.io.outputs import check_output

    methods = ([parse_method(m) for m in request.methods]
               + [parse_fused(f) for f in request.fused])
    check_unique(methods)
    if request.axis is not None:
        check_axis(request.axis)
    check_gamut_map(request.gamut_map)
    profiles = parse_profiles(request.profiles)
    metrics = parse_metrics(request.metrics)
    if request.weights is not None and not any(m.kind == GESENET and m.path is None
                                               for m in methods):
        raise UsageError("--weights applies to --method gesenet, which is not requested "
                         "(add it, or use --method gesenet:PATH)")
    tasks = find_tasks(request.data_dir, request.split, images_only=False)
    if (request.csv is not None and request.json is not None
            and request.csv.resolve() == request.json.resolve()):
        raise UsageError("--csv and --json name the same file")
    for option, path in (("--csv", request.csv), ("--json", request.json)):
        if path is not None:
            check_output(path, request.force, label=option)
    if request.report is not None:
        check_report_dir(request.report, [t.name for t in tasks if t.pairs], profiles,
                         request.force)

    total = sum(len(t.pairs) for t in tasks) * len(methods)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    result = evaluate(
        tasks, methods, profiles, metrics, weights=request.weights, device=request.device,
        batch_size=request.batch_size, resize=request.resize, axis=request.axis,
        slice_index=request.slice_index, save_fused=request.save_fused, force=request.force,
        examples=request.examples, split=request.split, data_dir=request.data_dir,
        progress=step, gamut_map=request.gamut_map,
    )
    written: list[Path] = []
    if request.csv is not None:
        written.append(write_csv(result, request.csv, request.force))
    if request.json is not None:
        written.append(write_json(result, request.json, request.force))
    if request.report is not None:
        written.append(write_report(result, request.report, request.force,
                                    command=request.command_line()))
    return EvalReport(result, written)


__all__ = ["EvalReport", "EvalRequest", "evaluate_files"]
