"""Cohort runs, measured: serial, ``--workers N``, K parts merged, and the Ray backend on the
same pairs, with their outputs checked byte for byte.

    PYTHONPATH=src python benchmarks/bench_batch.py --json benchmarks/results/batch-cpu.json

The pairs are the mixed cohort of the tests (``tests/helpers/cohort.py``: a third PNG
image pairs, a third NIfTI MRI volumes, a third DICOM MRI series, each PET a NIfTI on
another grid), fused with the bundled weights on the CPU. Every configuration runs in its
own output folder from the same inputs; the exit code is 1 if any output differs from the
serial run's (ledgers and provenance records, which hold times, are left out; see
``digest_tree``). Times are wall-clock seconds of one ``fuse_batch`` call, start-up
included (worker processes import torch and load the engine; Ray starts a local instance
with this process's CPUs (``ray``), or the batch alone is timed on an instance started
before with ``--cpus`` CPUs (``ray_warm``; ``ray_start`` is that start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the cohort builder and digests the tests use


def _run(requests: list[Any], spec: Any) -> float:
    from medfuse.batch import fuse_batch

    t0 = time.perf_counter()
    for req in requests:
        report = fuse_batch(req, spec)
        bad = [f"{it.name}: {it.error}" for it in report.failed]
        if bad:
            raise SystemExit(f"bench_batch: failures in {req.out_dir}: {bad}")
    return time.perf_counter() - t0


def _steady_worker(threads: int, slices: int, size: int, weights: str | None,
                   queue: Any) -> None:
    """One process: load the engine, warm up, then time ``slices`` slices."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from medfuse.engine.runtime import tune_process

    tune_process(threads=threads)
    from medfuse.engine import load_model
    from medfuse.phantom import brain_phantom
    from medfuse.prepare.pair import prepare_pair

    engine = load_model(weights, "cpu")
    mri, pet = brain_phantom(size, seed=1)
    pair = prepare_pair(mri, pet, modality="pet")
    engine.fuse_luminance(pair.mri_y, pair.other_y)
    queue.put(("ready", 0.0))
    t0 = time.perf_counter()
    for _ in range(slices):
        engine.fuse_luminance(pair.mri_y, pair.other_y)
    queue.put(("done", time.perf_counter() - t0))


def steady_state(processes: int, slices: int = 12, size: int = 256, rounds: int = 2,
                 weights: str | None = None) -> dict[str, Any]:
    """Network slices per second once engines are loaded: one process with ``processes``
    torch threads against ``processes`` processes with one thread each (the two ways to
    use the cores; what ``--workers`` chooses between), interleaved ``rounds`` times."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out: dict[str, list[float]] = {}
    configs = ((f"1x{processes}", 1, processes), (f"{processes}x1", processes, 1))
    for _ in range(rounds):
        for name, procs, threads in configs:
            queue = ctx.Queue()
            per = max(1, slices // procs)
            workers = [ctx.Process(target=_steady_worker,
                                   args=(threads, per, size, weights, queue))
                       for _ in range(procs)]
            for w in workers:
                w.start()
            msgs = [queue.get() for _ in range(2 * procs)]
            for w in workers:
                w.join()
            wall = max(t for kind, t in msgs if kind == "done")
            out.setdefault(name, []).append(round(per * procs / wall, 3))
    return {"size": size, "slices_per_s": out,
            "best": {k: max(v) for k, v in out.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--size", type=int, default=64, help="image side and volume plane side")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (the fastest is kept)")
    parser.add_argument("--steady", action="store_true",
                        help="also: network slices/s, 1 process x N threads vs N x 1")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from medfuse.engine.runtime import tune_process

    tune_process()
    from helpers.cohort import digest_tree, mixed_cohort
    from medfuse.batch import BatchRequest
    from medfuse.batch.task import EngineSpec, available_cpus
    from medfuse.fusion import FuseRequest

    spec = EngineSpec(args.weights, "cpu")
    template = FuseRequest(Path(), Path(), Path(), modality="pet")
    result: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(), "cpus": available_cpus(),
        "load_average_before": os.getloadavg()[0], "python": platform.python_version(),
        "pairs": args.pairs, "size": args.size, "workers": args.workers, "parts": args.parts,
        "seconds": {},
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        src = mixed_cohort(tmp / "in", args.pairs, args.size)
        runs: dict[str, list[Any]] = {
            "serial": [BatchRequest(src, tmp / "serial", template=template)],
            f"workers_{args.workers}": [BatchRequest(src, tmp / "workers", template=template,
                                                     workers=args.workers)],
            f"parts_{args.parts}_merged": [
                BatchRequest(src, tmp / "parts", template=template, num_parts=args.parts,
                             part_id=k) for k in range(args.parts)],
        }
        if not args.no_ray:
            try:
                import ray
            except ImportError:
                print("bench_batch: Ray not installed; skipping the Ray backend")
            else:
                runs["ray"] = [BatchRequest(src, tmp / "ray", template=template, backend="ray",
                                            workers=args.cpus)]
                runs["ray_warm"] = [BatchRequest(src, tmp / "ray_warm", template=template,
                                                 backend="ray", workers=args.cpus)]
        _run([BatchRequest(src, tmp / "warm", template=template)], spec)  # torch, caches
        digests: dict[str, Any] = {}
        times: dict[str, list[float]] = {}
        for round_ in range(args.rounds):  # interleaved, so load swings hit every config
            for name, requests in runs.items():
                if name == "ray" and round_:
                    continue  # a cold start once is enough
                for req in requests:
                    req.out_dir = tmp / f"{name}-{round_}"
                if name == "ray_warm":
                    import ray

                    t0 = time.perf_counter()
                    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
                    times.setdefault("ray_start", []).append(time.perf_counter() - t0)
                try:
                    times.setdefault(name, []).append(_run(requests, spec))
                finally:
                    if name == "ray_warm":
                        ray.shutdown()
                digests[f"{name}-{round_}"] = digest_tree(requests[0].out_dir)
                print(json.dumps({name: round(times[name][-1], 2)}), flush=True)
        result["seconds"] = {k: round(min(v), 2) for k, v in times.items()}
        result["seconds_every_round"] = {k: [round(x, 2) for x in v] for k, v in times.items()}
        serial = result["seconds"]["serial"]
        result["speedup_vs_serial"] = {k: round(serial / v, 2) for k, v in
                                       result["seconds"].items() if k != "ray_start"}
        result["outputs"] = len(digests["serial-0"])
        result["identical_to_serial"] = {k: v == digests["serial-0"] for k, v in digests.items()}
    if args.steady:
        result["steady_state"] = steady_state(args.cpus, weights=args.weights)
        print(json.dumps(result["steady_state"]), flush=True)
    result["load_average_after"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0 if all(result["identical_to_serial"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
