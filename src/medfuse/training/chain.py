"""Running a recipe: its stages one after another in one run folder, resumable anywhere.

The run folder holds the recipe actually used (``recipe.toml``, overrides applied), one
folder per stage (``stages/01-NAME/``, each a run of :func:`medfuse.training.trainer.train`
with its own log, checkpoints and summary), the result (``weights.pt``: the last stage's
best weights, with the recipe in its metadata), ``summary.json`` and, where the recipe
asks for it, ``before_after.md`` / ``.csv``: the validation pairs scored with the weights
the run started from and with the result.

A stage is done when its ``summary.json`` says so; a stage with a ``last.pt`` is resumed
from it (bit-exactly: weights, optimiser, schedule, sampler and RNG states); a stage
without one starts from its ``train.init``. So ``resume`` continues an interrupted run
mid-stage or between stages and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfuse.errors import UsageError
from medfuse.training.recipe import Recipe, Stage, load_recipe, parse_recipe

#: What a recipe run writes at the top of its run folder (``force`` removes exactly these).
CHAIN_OUTPUTS = {"recipe.toml": "file", "run.json": "file", "summary.json": "file",
                 "weights.pt": "file",
                 "before_after.md": "file", "before_after.csv": "file", "stages": "folder"}
#: Metrics of the before/after table (validation's names, overall and per task).
BEFORE_AFTER = (("Qabf", "val_qabf", "qabf"), ("SSIM", "val_ssim", "ssim"),
                ("MEF-SSIM", "val_mef_ssim", "mef"), ("SCD", "val_scd", "scd"))


@dataclass
class RunOptions:
    """What a run needs besides its recipe; none of it changes the weights (threads aside,
    whose reductions may round differently)."""

    data: str
    out: str
    device: str = "auto"
    threads: int | None = None
    max_minutes: float | None = None  # for the whole chain
    resume: bool = False
    force: bool = False
    export: str | None = None
    progress: Callable[[str, int, int, dict[str, float]], None] | None = None
    stage_started: Callable[[Stage, int], None] | None = field(default=None, repr=False)


def resolve_recipe(recipe: str | Path | Recipe, overrides: Mapping[str, Any] | Iterable[str] = ()
                   ) -> Recipe:
    """The recipe by name, path or object, with ``overrides`` (``--set``) applied and its
    cross-key rules checked: what ``medfuse train`` and a Python caller both run."""
    r = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    r = r.with_overrides(overrides)
    r.check()
    return r


def _bundled(name: str) -> Path:
    from medfuse.engine.weights import bundled_weights_path

    path = bundled_weights_path()
    if path is None or not (path.parent / name).is_file():
        raise UsageError(f"this medfuse build ships no {name} (the recipe asks for 'bundled')")
    return path.parent / name


def _stage_paths(stage: Stage, stages_dir: Path, previous: Stage | None) -> dict[str, str | None]:
    """The files behind a stage's init, semantic net and anchor (words resolved)."""
    v = stage.values
    init = v["train.init"]
    if init == "none":
        init_path = None
    elif init == "bundled":
        init_path = str(_bundled("gesenet-medfuse.pt"))
    elif init.startswith("previous"):
        if previous is None:
            raise UsageError(f"stage {stage.name}: train.init {init!r} but it is the first stage")
        which = "last.pt" if init == "previous:last" else "best.pt"
        init_path = str(stages_dir / previous.folder / which)
    else:
        init_path = init
    sem = v["train.semantic"]
    sem_path = None if sem == "none" else str(_bundled("semantic-medfuse.pt")) if sem == "bundled" else sem
    anchor = v["train.anchor_weights"]
    if anchor == "none":
        anchor_path = None
    elif anchor == "init":
        if init_path is None:
            raise UsageError(f"stage {stage.name}: train.anchor_weights 'init' needs a train.init")
        anchor_path = init_path
    elif anchor == "bundled":
        anchor_path = str(_bundled("gesenet-medfuse.pt"))
    else:
        anchor_path = anchor
    return {"init": init_path, "semantic": sem_path, "anchor": anchor_path}


def stage_config(stage: Stage, opts: RunOptions, recipe_name: str, paths: Mapping[str, str | None],
                 stages_dir: Path, max_minutes: float | None) -> Any:
    """The :class:`~medfuse.training.trainer.TrainConfig` of one stage."""
    from medfuse.training.terms import LossWeights
    from medfuse.training.trainer import TrainConfig

    v = stage.values
    losses = {k.split(".", 1)[1]: val for k, val in v.items() if k.startswith("losses.")}
    return TrainConfig(
        data=opts.data, out=str(stages_dir / stage.folder), steps=v["train.steps"],
        batch=v["train.batch"], patch=v["train.patch"], stride=v["train.stride"],
        lr=v["train.lr"], weight_decay=v["train.weight_decay"], tau=v["train.tau"],
        tau_start=v["train.tau_start"], seed=v["train.seed"], device=opts.device,
        checkpoint_every=v["checkpoint.every"], val_every=v["validation.every"],
        max_minutes=max_minutes, stop_after=v["train.stop_after"],
        fit_steps=v["train.fit_steps"], mask_lr_scale=v["train.mask_lr_scale"],
        semantic=paths["semantic"], weights=LossWeights(**losses), threads=opts.threads,
        straight_through=v["train.straight_through"], criterion=v["validation.criterion"],
        init=paths["init"], display_luma=v["train.display_luma"],
        recipe=f"{recipe_name}:{stage.name}", studies=v["data.studies"],
        anchor_weights=paths["anchor"], holdout=v["data.holdout"],
        max_slices=v["data.max_slices"], split_seed=v["data.split_seed"],
    )


def saved_data(out: str | Path) -> str | None:
    """The data folder a run in ``out`` was started on (``--resume`` without ``--data``)."""
    try:
        return str(json.loads((Path(out) / "run.json").read_text())["data"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stage_done(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "summary.json").read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def _claim(out: Path, recipe: Recipe, opts: RunOptions, inputs: list[str]) -> Recipe:
    """The run folder policy: a new run needs an empty (or absent) folder or ``force``; a
    resumed one continues the recipe recorded in it (a different one is refused)."""
    from medfuse.io.outputs import check_output
    from medfuse.training.checkpoint import claim_outputs

    saved = out / "recipe.toml"
    if opts.export:
        from medfuse.training.trainer import export_inputs

        check_output(opts.export, opts.force, export_inputs(out, inputs) + [out / "stages"],
                     label="export")
    if opts.resume:
        if not saved.is_file():
            raise UsageError(f"--resume: no recipe run in {out} (no recipe.toml)")
        kept = parse_recipe(saved.read_text(encoding="utf-8"), str(saved))
        if [s.values for s in recipe.resolved()] != [s.values for s in kept.resolved()]:
            raise UsageError(f"--resume: {out} was started with another recipe or other "
                             f"--set values ({saved}); resume without --recipe/--set or "
                             "start a new run")
        return kept
    holds = saved.exists() or (out / "stages").exists() or (out / "last.pt").exists()
    if holds and not opts.force:
        raise UsageError(f"{out} already holds a run; use --resume to continue it, --force "
                         "to start it over, or another --out")
    claim_outputs(out, CHAIN_OUTPUTS, opts.force, inputs, "run file")  # type: ignore[arg-type]
    return recipe


class _DataCache:
    """The (train, validation) sets of one data folder and split, read once per call: the
    stages of a recipe mostly share them, and reading an atlas takes a while."""

    def __init__(self, root: str) -> None:
        self.root, self.sets = root, {}

    def get(self, values: Mapping[str, Any]) -> tuple[Any, Any]:
        from medfuse.training.data import load_training_data

        key = (values["data.holdout"], values["data.max_slices"], values["data.split_seed"])
        if key not in self.sets:
            self.sets[key] = load_training_data(self.root, *key)
        return self.sets[key]


def _check_weight_files(paths: list[dict[str, str | None]], made_by_run: Path) -> None:
    """Read every weights file the stages name that exists already (not those a stage
    writes for the next): refused files stop the run before it writes anything."""
    import torch

    from medfuse.model import GeSeNet
    from medfuse.training.semantic import load_semantic
    from medfuse.training.trainer import _load_weights

    seen: set[str] = set()
    for p in paths:
        for role in ("init", "anchor", "semantic"):
            path = p[role]
            if not path or path in seen or Path(path).is_relative_to(made_by_run):
                continue
            seen.add(path)
            if role == "semantic":
                load_semantic(path, torch.device("cpu"))
            else:
                _load_weights(GeSeNet(), path)


def _resume_single_run(out: Path, opts: RunOptions) -> dict[str, Any]:
    """Continue a run folder made by the earlier, option-per-setting ``medfuse train``
    (``last.pt`` at its top, no recipe): its own settings from the checkpoint."""
    import dataclasses

    from medfuse.errors import WeightsError
    from medfuse.training.checkpoint import load_checkpoint
    from medfuse.training.terms import LossWeights
    from medfuse.training.trainer import CHECKPOINT_KEYS, TrainConfig, train

    last = out / "last.pt"
    ck = load_checkpoint(last, "checkpoint")
    saved = ck.get("config") if isinstance(ck, dict) else None
    if not isinstance(saved, dict):
        have = ck if isinstance(ck, dict) else {}
        missing = [k for k in (*CHECKPOINT_KEYS, "config") if k not in have]
        raise WeightsError(f"{last} is not a training checkpoint (missing {', '.join(missing)})")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    weights = {k: v for k, v in (saved.get("weights") or {}).items()
               if k in LossWeights.__dataclass_fields__}
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in known and k != "weights"},
                      weights=LossWeights(**weights))
    cfg.out, cfg.device, cfg.threads = str(out), opts.device, opts.threads
    if opts.data:
        cfg.data = opts.data
    if opts.max_minutes is not None:
        cfg.max_minutes = opts.max_minutes
    s = train(cfg, resume=True, export=opts.export, force=opts.force)
    return {"recipe": None, "stages": [{"stage": "train", **s}],
            "complete": bool(s.get("complete")), "weights": str(out / "best.pt"),
            **({"export": s["export"]} if "export" in s else {})}


def _score(weights: str | None, seed: int, val_set: Any, dev: Any) -> dict[str, float]:
    """Validation scores of a weights file (or of the random init ``seed`` gives)."""
    import torch

    from medfuse.model import GeSeNet
    from medfuse.training.trainer import _load_weights
    from medfuse.training.validation import validate

    torch.manual_seed(seed)
    model = GeSeNet()
    if weights is not None:
        _load_weights(model, weights)
    return validate(model.to(dev), val_set, dev)


def _write_before_after(out: Path, before: dict[str, float], after: dict[str, float],
                        tasks: list[str], start: str) -> None:
    from medfuse.io.outputs import atomic_output

    rows = []
    per_task = sorted(set(tasks)) if len(set(tasks)) > 1 else []
    for label, overall, prefix in BEFORE_AFTER:
        rows.append(("all", label, before[overall], after[overall]))
        for t in per_task:
            key = f"{prefix}_{t}"
            if key in before and key in after:
                rows.append((t, label, before[key], after[key]))
    with atomic_output(out / "before_after.csv", force=True) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["task", "metric", "before", "after", "change"])
        for task, metric, b, a in rows:
            w.writerow([task, metric, f"{b:.4f}", f"{a:.4f}", f"{a - b:+.4f}"])
    names = ", ".join(sorted(set(tasks)))
    lines = [f"# Before and after: {len(tasks)} validation slices ({names})", "",
             f"Before: {start}. After: the run's result (weights.pt). Standard profile, each "
             "fused slice scored as `medfuse eval` scores it.", "",
             "| task | metric | before | after | change |", "|---|---|---:|---:|---:|"]
    lines += [f"| {t} | {m} | {b:.4f} | {a:.4f} | {a - b:+.4f} |" for t, m, b, a in rows]
    with atomic_output(out / "before_after.md", force=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def run_recipe(recipe: str | Path | Recipe | None, opts: RunOptions,
               overrides: Mapping[str, Any] | Iterable[str] = ()) -> dict[str, Any]:
    """Train every stage of ``recipe`` into ``opts.out`` (see the module docstring).

    ``recipe`` None: the run folder's own recipe with ``opts.resume``, else ``paper``.
    Everything is checked (recipe keys, inputs, the run folder and the export) before
    anything is written. Returns the run summary (also ``summary.json``)."""
    from medfuse.training.checkpoint import clear_outputs, write_json
    from medfuse.training.trainer import check_config, export_best, train

    out = Path(opts.out)
    saved = out / "recipe.toml"
    if opts.resume and not saved.exists() and (out / "last.pt").is_file():
        return _resume_single_run(out, opts)
    if recipe is None and opts.resume and saved.is_file():
        recipe = parse_recipe(saved.read_text(encoding="utf-8"), str(saved))
    r = resolve_recipe("paper" if recipe is None else recipe, overrides)
    if opts.threads is not None and opts.threads < 1:
        raise UsageError(f"--threads {opts.threads}: must be at least 1")
    if opts.max_minutes is not None and not opts.max_minutes > 0:
        raise UsageError(f"--max-minutes {opts.max_minutes}: must be above 0")
    stages = r.resolved()
    stages_dir = out / "stages"
    # Check every stage's settings and the files they name before anything is written.
    paths, prev = [], None
    for st in stages:
        p = _stage_paths(st, stages_dir, prev)
        cfg = stage_config(st, opts, r.name, p, stages_dir, None)
        # files a stage makes for the next one do not exist yet
        check_config(cfg, made_by_run=stages_dir)
        paths.append(p)
        prev = st
    inputs = [opts.data] + [x for p in paths for x in p.values()
                            if x and not str(x).startswith(str(stages_dir))]
    if not Path(opts.data).exists():
        raise UsageError(f"--data {opts.data}: no such folder or file")
    r = _claim(out, r, opts, inputs)
    # Read what the first stage reads before anything is written: a data folder or a
    # weights file that is refused leaves no run behind.
    cache = _DataCache(opts.data)
    cache.get(stages[0].values)
    _check_weight_files(paths, stages_dir)
    if not opts.resume:
        out.mkdir(parents=True, exist_ok=True)
        clear_outputs(out, CHAIN_OUTPUTS)  # type: ignore[arg-type]
        from medfuse.io.outputs import atomic_output

        with atomic_output(out / "recipe.toml", force=True) as tmp:
            tmp.write_text(r.to_toml(), encoding="utf-8")
        write_json(out / "run.json", {"data": str(Path(opts.data).resolve())})
    started = time.monotonic()
    first = stages[0]
    want_table = bool(stages[-1].values["validation.before_after"])
    before = None
    if want_table and not (out / "summary.json").is_file():
        before_file = out / "stages" / "before.json"
        if before_file.is_file():
            before = json.loads(before_file.read_text())
        else:
            import torch

            from medfuse.engine import select_device

            v = first.values
            _, val_set = cache.get(v)
            if opts.threads:
                torch.set_num_threads(opts.threads)
            before = _score(paths[0]["init"], v["train.seed"], val_set, select_device(opts.device))
            before_file.parent.mkdir(parents=True, exist_ok=True)
            write_json(before_file, before)
    results: list[dict[str, Any]] = []
    complete = True
    for st, p in zip(stages, paths):
        folder = stages_dir / st.folder
        if _stage_done(folder):
            results.append({"stage": st.name, **json.loads((folder / "summary.json").read_text())})
            continue
        budget = None
        if opts.max_minutes is not None:
            budget = opts.max_minutes - (time.monotonic() - started) / 60
            if budget <= 0:
                complete = False
                break
        cfg = stage_config(st, opts, r.name, p, stages_dir, budget)
        if opts.stage_started:
            opts.stage_started(st, len(stages))
        progress = None
        if opts.progress:
            cb, name, total = opts.progress, st.name, min(cfg.steps, cfg.stop_after or cfg.steps)

            def progress(step: int, row: dict[str, float], _cb=cb, _n=name, _t=total) -> None:  # noqa: ANN001
                _cb(_n, step, _t, row)
        resume = (folder / "last.pt").is_file()
        s = train(cfg, resume=resume, progress=progress, force=not resume,
                  data=cache.get(st.values))
        results.append({"stage": st.name, **s})
        if not s.get("complete"):
            complete = False
            break
    summary: dict[str, Any] = {"recipe": r.name, "stages": results, "complete": complete,
                               "seconds_this_call": round(time.monotonic() - started, 1)}
    if complete:
        last = stages_dir / stages[-1].folder
        meta = {"recipe": r.to_toml(), "recipe_name": r.name, "stage": stages[-1].name,
                "best_step": results[-1].get("best_step")}
        export_best(last, out / "weights.pt", True, inputs, metadata=meta)
        summary["weights"] = str(out / "weights.pt")
        if opts.export:
            summary["export"] = str(export_best(last, opts.export, opts.force, inputs,
                                                metadata=meta))
        if want_table:
            from medfuse.engine import select_device

            if before is None:
                before = json.loads((out / "stages" / "before.json").read_text())
            _, val_set = cache.get(first.values)
            after = _score(str(out / "weights.pt"), 0, val_set, select_device(opts.device))
            start = ("random weights" if paths[0]["init"] is None else
                     f"the weights it started from ({Path(paths[0]['init']).name})")
            _write_before_after(out, before, after, val_set.tasks, start)
            summary["before"] = {k: before[k] for _, k, _ in BEFORE_AFTER}
            summary["after"] = {k: after[k] for _, k, _ in BEFORE_AFTER}
    write_json(out / "summary.json", summary)
    return summary
