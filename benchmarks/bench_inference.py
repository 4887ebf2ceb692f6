#!/usr/bin/env python
"""Inference benchmark: GeSeNet's folded inference form against the training form.

Why it is built this way: the machines this runs on are often shared (here: 2 cores and
a training run), so absolute times drift by 2-3x within minutes. Every comparison is
therefore made *in the same run, interleaved round by round*, and the headline figure is
the median of the per-round ratios (dense time / fast time), which drift cancels out of.
Absolute medians and minima are reported too, with the load average, so they can be
judged.

Sections (``--sections``, default all but ``compile``):

* ``latency``: one pair at 256, 512 and 1024 px; dense model (``GeSeNet.fuse`` in eval
  mode: the training graph with hard masks) vs the folded form (``GeSeNet.fold()``, "fast"
  in the tables), plus folded variants at 256 (NCHW, the other body layout). Checks max
  |fused difference| <= 1e-4 and identical masks.
* ``volume``: a 64-slice 256x256 stack through ``Engine.fuse_luminance``: fast engine at
  several CPU micro-batch sizes vs the dense engine with batch 8 (the old default).
* ``rss``: peak resident memory of a fresh process (Python + torch + weights + one run)
  per case, from ``resource.getrusage``; ``large`` adds a 4096x4096 pair (tiled).
* ``sparse``: the region-mask body alone, both branches, dense fold vs the sparse body,
  against the share of the image its windows cover, next to the cost ``sparse="auto"``
  models, to fit that model's constants.
* ``precision``: bfloat16 fast path (CPU) or float16 (CUDA): speed and max error from
  float32 on the reference samples (or the built-in phantoms).
* ``compile``: ``torch.compile`` of the folded form: build time, latency, agreement.
* ``head``: the 1 mm head (MRI 197x233x189, 2 mm PET) end to end through ``fuse_files``
  with empty-space skipping and with whole slices (``Engine(skip_empty=False)``),
  interleaved; the ratio, the exactness on the same run (fused luminance and the written
  volume), and the per-stage split both ways (read, plan, resample, prepare, network,
  colour, write). About 2 minutes idle, 1 with ``--quick``.
* ``atlas``: 256x256 pairs one call each (the Harvard atlas val pairs where present,
  else phantoms), both ways: skipping must not make them slower.

The process tuning the ``medfuse`` CLI applies (passive OpenMP waiting, the glibc
allocator tuning, the thread count) is applied here explicitly through
``medfuse.engine.runtime.tune_process``, in the parent and in every RSS child, and recorded
in the JSON; library calls never apply it by themselves.

Also recorded: threads, device, torch version, CPU, the load average, the measured
float32 matrix-multiply rate, a measured oneDNN 3x3 convolution rate, and the network's
FLOP count (counted per convolution call with torch's FlopCounterMode), so each latency
is also shown as a fraction of the compute floor (minimal FLOPs / matmul rate).

Usage::

    python benchmarks/bench_inference.py                 # full run, table + JSON
    python benchmarks/bench_inference.py --quick         # about a minute
    python benchmarks/bench_inference.py --weights W.pt --sections latency,rss
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ALL_SECTIONS = ("latency", "volume", "rss", "large", "sparse", "precision", "head", "atlas")
AGREE_TOL = 1e-4
#: Skipping against whole slices: float rounding only (measured: below 1e-6).
SKIP_TOL = 1e-5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None,
                   help="state dict to benchmark (default: bundled weights, else seeded random)")
    p.add_argument("--quick", action="store_true", help="fewer repeats, no 4096 px run")
    p.add_argument("--sections", default=None,
                   help=f"comma list of {','.join(ALL_SECTIONS + ('compile',))}")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--omp-wait", choices=("passive", "active", "inherit"), default="passive",
                   help="OMP_WAIT_POLICY for this run (must be set before torch loads; "
                        "passive: measured 6x faster than spinning on a loaded machine)")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="leave glibc malloc at its defaults (see medfuse.engine.runtime.tune_allocator)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "bench_inference.json",
                   help="JSON output path")
    p.add_argument("--rss-child", nargs=4, metavar=("SIZE", "SLICES", "MODE", "WEIGHTS"),
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


def tune(args: argparse.Namespace, threads: int | None) -> Any:
    """Opt in to the CLI's process tuning, as chosen on the command line. Runs before
    torch loads: OpenMP reads its wait policy when it starts."""
    from medfuse.engine.runtime import tune_process

    if args.omp_wait != "inherit":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait.upper()  # this run's explicit choice
    return tune_process(threads, omp_wait_policy=None, allocator=not args.no_malloc_tuning)


# -- helpers --------------------------------------------------------------------------------
def load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def weights_state(path: Path | None) -> tuple[dict[str, Any], str]:
    """The state dict to benchmark and how it was chosen."""
    import torch

    from medfuse.engine import bundled_weights_path, read_state_dict
    from medfuse.model import GeSeNet

    if path is not None:
        return read_state_dict(path), str(path)
    bundled = bundled_weights_path()
    if bundled is not None:
        return read_state_dict(bundled), f"bundled ({bundled.name})"
    torch.manual_seed(0)
    return GeSeNet().state_dict(), "seeded random (torch.manual_seed(0))"


def make_engine(state: dict[str, Any], device: str, fast: bool, **kw: Any) -> Any:
    from medfuse.engine import Engine, build_model, select_device

    dev = select_device(device)
    model = build_model(state).to(dev)
    return Engine(model=model, device=dev, fast=fast, **kw)


def phantom_pair(size: int, n: int = 1, seed: int = 0) -> tuple[Any, Any]:
    """MRI and PET luminance of the built-in brain phantom: realistic content (masks depend
    on it with trained weights) at any size."""
    import numpy as np

    from medfuse.colour import luminance
    from medfuse.phantom import brain_phantom

    mris, pets = [], []
    for i in range(n):
        m, p = brain_phantom(size, seed + i)
        mris.append(m)
        pets.append(luminance(p).astype(np.float32))
    return np.stack(mris), np.stack(pets)


def sync(device: Any) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1,
                device: Any = None) -> dict[str, list[float]]:
    """Time each function once per round, rotating the order each round so that no
    variant always runs first (after an idle gap) or last."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def paired_speedup(base: list[float], new: list[float]) -> float:
    return statistics.median(b / n for b, n in zip(base, new))


def summary(ts: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "n": len(ts)}


# -- machine rates ----------------------------------------------------------------------------
def matmul_rate(device: Any, quick: bool) -> float:
    """Best float32 GEMM rate over a few sizes (GFLOP/s), the 'floor' the issue uses."""
    import torch

    best = 0.0
    for n in (1024, 2048) if quick else (1024, 2048, 3072):
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        ts = interleaved({"mm": lambda a=a, b=b: a @ b}, 3 if quick else 5, 1, device)["mm"]
        best = max(best, 2 * n**3 / min(ts) / 1e9)
    return best


def conv_rate(device: Any, quick: bool) -> float:
    """oneDNN/cuDNN rate on the network's most common layer shape (3x3, 64->64, NHWC,
    256x256): what convolutions really reach, for comparison with the GEMM rate."""
    import torch
    import torch.nn.functional as F

    x = torch.rand(1, 64, 256, 256, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.rand(64, 64, 3, 3, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ts = interleaved({"c": lambda: F.conv2d(x, w, padding=1)}, 3 if quick else 7, 1, device)["c"]
    return 2 * 64 * 64 * 9 * 256 * 256 / min(ts) / 1e9


def count_gflops(net: Any, x: Any) -> float:
    """FLOPs (2 per multiply-add) of one ``net.fuse(x, x)``, counted per convolution call
    from its actual shapes by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def addmm_inplace(self_shape: Any, a_shape: Any, b_shape: Any, *args: Any, **kw: Any) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    # The fast path accumulates its 1x1 convolutions with in-place addmm_, which torch's
    # counter has no formula for.
    fc = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: addmm_inplace})
    with torch.inference_mode(), fc:
        net.fuse(x, x)
    return fc.get_total_flops() / 1e9


def minimal_gflops(dense_gflops: float, size: int) -> float:
    """The dense training graph minus the second convolution of masked layers 1-3 in
    both branches: the count once no convolution is computed twice."""
    return dense_gflops - 2 * 3 * 2 * 32 * 32 * 9 * size * size / 1e9


# -- sections ----------------------------------------------------------------------------------
def section_latency(state: dict[str, Any], args: argparse.Namespace, rates: dict[str, float],
                    report: dict[str, Any]) -> None:
    import torch

    eng = make_engine(state, args.device, fast=True)
    model = eng.model
    dev = eng.device
    sizes = {256: 9 if args.quick else 21, 512: 3 if args.quick else 9, 1024: 1 if args.quick else 5}
    rows = []
    for size, rounds in sizes.items():
        a_np, b_np = phantom_pair(size)
        a = torch.from_numpy(a_np)[:, None].to(dev)
        b = torch.from_numpy(b_np)[:, None].to(dev)
        fast = model.fold(dtype=eng.compute_dtype())
        nets: dict[str, Any] = {"dense": model, "fast": fast}
        if size == 256:
            nets["fast NCHW"] = model.fold(channels_last=False)
            alt = "stacked" if fast.body_mode == "split" else "split"
            nets[f"fast {alt}-body"] = model.fold(body=alt)
        fns: dict[str, Callable[[], Any]] = {
            k: (lambda n=n, x=a, y=b: n.fuse(x, y)) for k, n in nets.items()
        }
        with torch.inference_mode():
            ref = model.fuse(a, b)
            outs = {k: fn() for k, fn in fns.items()}
            times = interleaved(fns, rounds, warmup=1, device=dev)
        gflops = {k: count_gflops(n, a) for k, n in nets.items()}
        minimal = minimal_gflops(gflops["dense"], size)
        for name, ts in times.items():
            o = outs[name]
            diff = float((o.fused.float() - ref.fused).abs().max())
            masks_equal = bool(torch.equal(o.mask_mri.float(), ref.mask_mri)
                               and torch.equal(o.mask_functional.float(), ref.mask_functional))
            s = summary(ts)
            floor = minimal / rates["matmul_gflops"]
            conv_floor = minimal / rates["conv_gflops"]
            rows.append({
                "case": f"{size}x{size} pair", "size": size, "path": name, **s,
                "speedup_vs_dense": 1.0 if name == "dense" else paired_speedup(times["dense"], ts),
                "gflop_executed": gflops[name], "gflop_minimal": minimal,
                "floor_s": floor, "fraction_of_floor": floor / s["median_s"],
                "fraction_of_floor_best": floor / s["min_s"],
                "conv_floor_s": conv_floor, "fraction_of_conv_floor": conv_floor / s["median_s"],
                "max_abs_diff_vs_dense": diff, "masks_identical": masks_equal,
                "agree": diff <= AGREE_TOL and masks_equal,
            })
        spa = (float(ref.mask_mri.mean()), float(ref.mask_functional.mean()))
        report.setdefault("mask_fractions", {})[str(size)] = {"mri": spa[0], "functional": spa[1]}
        del outs
        print(f"  latency {size}: done ({', '.join(f'{k} {statistics.median(v):.3f}s' for k, v in times.items())})",
              flush=True)
    report["latency"] = rows
    report["fast_body_paths"] = dict(model.fold(dtype=eng.compute_dtype()).last_body_paths)
    report["sparse_channel_counts"] = model.sparse_channel_counts()


def section_volume(state: dict[str, Any], args: argparse.Namespace,
                   report: dict[str, Any]) -> None:
    import numpy as np

    n = 16 if args.quick else 64
    rounds = 2
    a, b = phantom_pair(256, n)
    engines = {"dense, batch 8": make_engine(state, args.device, fast=False, batch_size=8)}
    for mb in (1, 4, 8):
        engines[f"fast, micro-batch {mb}"] = make_engine(state, args.device, fast=True,
                                                         batch_size=8, cpu_micro_batch=mb)
    outs = {}

    def run(e: Any, name: str) -> None:
        outs[name] = e.fuse_luminance(a, b, with_masks=True)

    fns = {k: (lambda e=e, k=k: run(e, k)) for k, e in engines.items()}
    times = interleaved(fns, rounds, warmup=0, device=None)
    dense_out = outs["dense, batch 8"]
    rows = []
    for name, ts in times.items():
        o = outs[name]
        diff = float(np.abs(o[0] - dense_out[0]).max())
        same = bool(np.array_equal(o[1], dense_out[1]) and np.array_equal(o[2], dense_out[2]))
        s = summary(ts)
        rows.append({"case": f"{n} x 256x256 volume", "path": name, **s,
                     "slices_per_s": n / s["median_s"], "slices_per_s_best": n / s["min_s"],
                     "speedup_vs_dense": 1.0 if name.startswith("dense")
                     else paired_speedup(times["dense, batch 8"], ts),
                     "max_abs_diff_vs_dense": diff, "masks_identical": same,
                     "agree": diff <= AGREE_TOL and same})
    report["volume"] = rows
    print("  volume: done", flush=True)


class RecordingEngine:
    """The engine with every fused luminance slice it returns kept (what the exactness
    of skipping is measured on); everything else passes through."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.fused: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def fuse_luminance(self, mri: Any, other: Any, with_masks: bool = False) -> Any:
        out = self.engine.fuse_luminance(mri, other, with_masks)
        self.fused.append(out[0].copy())
        return out


def skip_exactness(a: list[Any], b: list[Any]) -> dict[str, Any]:
    """Largest |difference| of fused luminance between two runs, and how many pixels
    differ after 8-bit and 16-bit quantisation."""
    import numpy as np

    fa, fb = np.concatenate([x.reshape(-1) for x in a]), np.concatenate([x.reshape(-1) for x in b])
    q8 = lambda x: np.round(np.clip(x, 0, 1) * 255)  # noqa: E731
    q16 = lambda x: np.round(np.clip(x, 0, 1) * 65535)  # noqa: E731
    return {"pixels": int(fa.size), "max_abs_diff": float(np.abs(fa - fb).max()),
            "bit_identical": bool(np.array_equal(fa, fb)),
            "differ_8bit": int((q8(fa) != q8(fb)).sum()),
            "differ_16bit": int((q16(fa) != q16(fb)).sum())}


def section_head(state: dict[str, Any], args: argparse.Namespace,
                 report: dict[str, Any]) -> None:
    """The 1 mm head (``bench_gpu``'s: MRI 197x233x189, PET 2 mm on another grid) end to
    end through ``fuse_files`` with empty-space skipping and with the whole-slice path,
    interleaved, in one process; the written volumes and the fused luminance compared;
    then each way once more stage by stage."""
    import tempfile

    import nibabel as nib
    import numpy as np

    sys.path.insert(0, str(HERE))
    from bench_gpu import _head, staged

    from medfuse.fusion import FuseRequest, fuse_files

    engines = {"skipping": make_engine(state, args.device, fast=True),
               "whole slices": make_engine(state, args.device, fast=True, skip_empty=False)}
    rounds = 1 if args.quick else 2
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        head = _head(tmp)
        for e in engines.values():  # fold and background reference built outside the timing
            e.fuse_luminance(*phantom_pair(64))
        recorders = {k: RecordingEngine(e) for k, e in engines.items()}
        written: dict[str, Path] = {}

        cpu: dict[str, list[float]] = {k: [] for k in engines}

        def run(name: str) -> None:
            rec = recorders[name]
            rec.fused.clear()
            written[name] = tmp / f"{name.replace(' ', '_')}.nii.gz"
            c0 = time.process_time()
            fuse_files(FuseRequest(*head, written[name], modality="pet", force=True), lambda: rec)
            cpu[name].append(time.process_time() - c0)

        times = interleaved({k: (lambda k=k: run(k)) for k in engines}, rounds, warmup=0)
        exact = skip_exactness(recorders["skipping"].fused, recorders["whole slices"].fused)
        va, vb = (np.asarray(nib.load(written[k]).dataobj) for k in ("skipping", "whole slices"))
        if va.dtype.names:  # RGB NIfTI: one field per channel
            va, vb = (np.stack([v[c] for c in v.dtype.names], -1) for v in (va, vb))
        exact["written_dtype"] = str(va.dtype)
        exact["written_values_differ"] = int((va != vb).sum())
        exact["written_max_abs_diff"] = float(np.abs(va.astype(np.float64) - vb).max())
        counts = dict(engines["skipping"]._empty.counts)
        body_paths = dict(engines["skipping"]._empty.body_paths)
        stages = {k: staged(head, tmp / f"staged-{i}.nii.gz", e, False, 8)
                  for i, (k, e) in enumerate(engines.items())}
    per = {k: n / max(1, rounds) for k, n in counts.items()}
    report["head"] = {
        "case": "1 mm head, 197x233x189 MRI + 2 mm PET NIfTI -> NIfTI (fuse_files)",
        "rounds": rounds, "skipping": summary(times["skipping"]),
        "whole_slices": summary(times["whole slices"]),
        "speedup": paired_speedup(times["whole slices"], times["skipping"]),
        "cpu_s": {k: summary(v) for k, v in cpu.items()},
        "cpu_speedup": paired_speedup(cpu["whole slices"], cpu["skipping"]),
        "slices_by_path": per, "exactness": exact, "stages": stages,
        "crop_body_paths": {k: n / max(1, rounds) for k, n in body_paths.items()},
        "agree": exact["max_abs_diff"] <= SKIP_TOL,
    }
    print("  head: done", flush=True)


def atlas_pairs(quick: bool) -> tuple[list[tuple[Any, Any]], str]:
    """Harvard atlas validation pairs (256x256) where ../shared has them, else phantoms."""
    shared = Path(os.environ.get("MEDFUSE_SHARED", ROOT.parent / "shared")) / "data" / "harvard"
    per_task = 4 if quick else 8
    if shared.is_dir():
        from medfuse.prepare.pair import prepare_pair

        pairs = []
        for task, mod in (("MRI_CT", "CT"), ("MRI_PET", "PET"), ("MRI_SPECT", "SPECT")):
            names = sorted((shared / task / "val" / "MRI").glob("*.png"))[:per_task]
            for f in names:
                p = prepare_pair(f, shared / task / "val" / mod / f.name)
                pairs.append((p.mri_y, p.other_y))
        return pairs, f"Harvard atlas val pairs, {per_task} per task"
    a, b = phantom_pair(256, 3 * per_task)
    return list(zip(a, b)), f"{3 * per_task} brain phantom pairs (no atlas here)"


def section_atlas(state: dict[str, Any], args: argparse.Namespace,
                  report: dict[str, Any]) -> None:
    """256x256 pairs one call each (as ``medfuse fuse`` and the evaluation run them),
    with and without empty-space skipping, interleaved."""
    pairs, source = atlas_pairs(args.quick)
    engines = {"skipping": make_engine(state, args.device, fast=True),
               "whole slices": make_engine(state, args.device, fast=True, skip_empty=False)}
    outs: dict[str, list[Any]] = {k: [] for k in engines}

    cpu: dict[str, list[float]] = {k: [] for k in engines}

    def run(name: str) -> None:
        c0 = time.process_time()
        outs[name] = [engines[name].fuse_luminance(m, o)[0] for m, o in pairs]
        cpu[name].append(time.process_time() - c0)

    rounds = 2 if args.quick else 3
    times = interleaved({k: (lambda k=k: run(k)) for k in engines}, rounds, warmup=1)
    exact = skip_exactness(outs["skipping"], outs["whole slices"])
    counts = engines["skipping"]._empty.counts
    report["atlas"] = {
        "case": f"{len(pairs)} x 256x256 pairs, one call each ({source})", "rounds": rounds,
        "skipping": summary(times["skipping"]), "whole_slices": summary(times["whole slices"]),
        "speedup": paired_speedup(times["whole slices"], times["skipping"]),
        "cpu_s": {k: summary(v[1:]) for k, v in cpu.items()},  # the warm-up round left out
        "cpu_speedup": paired_speedup(cpu["whole slices"][1:], cpu["skipping"][1:]),
        "slices_by_path": {k: n / (rounds + 1) for k, n in counts.items()},
        "exactness": exact, "agree": exact["max_abs_diff"] <= SKIP_TOL,
    }
    print("  atlas: done", flush=True)


def peak_rss_mib() -> float:
    """This process's peak resident memory. /proc's VmHWM belongs to the process's own
    address space; getrusage's ru_maxrss would also carry the launching process's peak
    across exec on Linux (the parent here is a big benchmark process)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def rss_child(size: int, slices: int, mode: str, weights: str) -> None:
    """Runs in a fresh process: import, load, one fusion; prints peak RSS as JSON."""
    state, _ = weights_state(Path(weights) if weights != "-" else None)
    eng = make_engine(state, os.environ.get("BENCH_DEVICE", "cpu"), fast=(mode == "fast"))
    base = peak_rss_mib()
    t0 = time.perf_counter()
    if size:
        a, b = phantom_pair(size, slices)
        eng.fuse_luminance(a, b, with_masks=True)
    dt = time.perf_counter() - t0
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "after_load_rss_mib": base,
                      "seconds": dt}))


def run_rss(size: int, slices: int, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, BENCH_THREADS=str(args.threads), BENCH_DEVICE=args.device)
    w = str(args.weights) if args.weights else "-"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--omp-wait", args.omp_wait,
           "--rss-child", str(size), str(slices), mode, w]
    if args.no_malloc_tuning:
        cmd.insert(2, "--no-malloc-tuning")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def section_rss(args: argparse.Namespace, report: dict[str, Any], large: bool) -> None:
    cases = [(0, 1), (256, 1), (512, 1), (1024, 1), (256, 16 if args.quick else 64)]
    if args.quick:
        cases = [(0, 1), (256, 1), (1024, 1)]
    rows = report.setdefault("rss", [])
    for size, slices in cases:
        for mode in ("fast", "dense"):
            r = run_rss(size, slices, mode, args)
            label = "import + weights only" if size == 0 else (
                f"{slices} x {size}x{size}" if slices > 1 else f"{size}x{size} pair")
            rows.append({"case": label, "path": mode, **r})
            if size == 0:
                break
        print(f"  rss {size} x{slices}: done", flush=True)
    if large:
        r = run_rss(4096, 1, "fast", args)
        rows.append({"case": "4096x4096 pair (tiled)", "path": "fast", **r})
        print("  rss 4096: done", flush=True)


def section_sparse(state: dict[str, Any], args: argparse.Namespace,
                   report: dict[str, Any]) -> None:
    """Body-only timing of both branches against the share of the image the sparse
    body's windows cover, with centred disks of growing radius as spatial masks (compact
    anatomy), next to the cost that ``sparse="auto"`` models (fit its constants here)."""
    import torch

    from medfuse.model.folded import (
        SPARSE_AREA_WEIGHT,
        SPARSE_AUTO_MAX_COST,
        SPARSE_CHAIN_WEIGHT,
        SPARSE_FIXED,
    )

    eng = make_engine(state, args.device, fast=True)
    model = eng.model
    size = 256
    dense = model.fold(sparse="never")
    sparse = model.fold(sparse="always")
    g = torch.Generator().manual_seed(0)
    e = torch.relu(torch.randn(1, model.FEATURES, size, size, generator=g)).to(eng.device)
    e = e.contiguous(memory_format=torch.channels_last)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    rows = []
    rounds = 3 if args.quick else 7
    for branch in ("mri", "functional"):
        for radius in (16, 32, 48, 64, 80, 96, 128):
            spa = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2).float()[None, None]
            spa = spa.to(eng.device)
            _, area = sparse.sparse_boxes(spa)
            with torch.inference_mode():
                ref = model.masked_body(branch, e.contiguous(), spa)
                got = sparse.masked_body(branch, e, spa)
                diff = float((got - ref).abs().max())
                times = interleaved({
                    "dense body": lambda s=spa, br=branch: dense.masked_body(br, e, s),
                    "sparse body": lambda s=spa, br=branch: sparse.masked_body(br, e, s),
                }, rounds, warmup=1)
            rows.append({
                "branch": branch,
                "principal_fraction": float(spa.mean()), "window_area": area,
                "modelled_cost": sparse.sparse_cost(branch, spa),
                "dense_median_s": statistics.median(times["dense body"]),
                "sparse_median_s": statistics.median(times["sparse body"]),
                "sparse_speedup": paired_speedup(times["dense body"], times["sparse body"]),
                "max_abs_diff": diff,
            })
    report["sparse_sweep"] = {"size": size, "auto_max_cost": SPARSE_AUTO_MAX_COST,
                              "fixed": SPARSE_FIXED, "chain_weight": SPARSE_CHAIN_WEIGHT,
                              "area_weight": SPARSE_AREA_WEIGHT,
                              "sparse_channels": model.sparse_channel_counts(),
                              "rows": rows}
    print("  sparse sweep: done", flush=True)


def reference_samples() -> list[tuple[Any, Any]] | None:
    """The authors' sample pairs (if ../shared is present), as (MRI Y, other Y)."""
    shared = Path(os.environ.get("MEDFUSE_SHARED", ROOT.parent / "shared")) / "reference" / "samples"
    if not shared.is_dir():
        return None
    from medfuse.prepare.pair import prepare_pair

    pairs = []
    for task, mod in (("MRI_CT", "CT"), ("MRI_PET", "PET"), ("MRI_SPECT", "SPECT")):
        for i in range(1, 6):
            p = prepare_pair(shared / task / "MRI" / f"{i}.png", shared / task / mod / f"{i}.png")
            pairs.append((p.mri_y, p.other_y))
    return pairs


def section_precision(state: dict[str, Any], args: argparse.Namespace,
                      report: dict[str, Any]) -> None:
    import numpy as np
    import torch

    from medfuse.engine import HALF_TOLERANCE

    eng = make_engine(state, args.device, fast=True)
    model, dev = eng.model, eng.device
    low_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    pairs = reference_samples()
    source = "reference samples (15 pairs)"
    if pairs is None:
        a, b = phantom_pair(256, 4)
        pairs = list(zip(a, b))
        source = "built-in phantoms (4 pairs)"
    f32 = model.fold(dtype=torch.float32)
    low = model.fold(dtype=low_dtype)
    worst, flips = 0.0, 0
    with torch.inference_mode():
        for ma, ob in pairs:
            a = torch.from_numpy(np.ascontiguousarray(ma))[None, None].to(dev)
            b = torch.from_numpy(np.ascontiguousarray(ob))[None, None].to(dev)
            r, q = f32.fuse(a, b), low.fuse(a, b)
            worst = max(worst, float((q.fused.float() - r.fused).abs().max()))
            flips += int((q.mask_mri.float() != r.mask_mri).sum())
            flips += int((q.mask_functional.float() != r.mask_functional).sum())
        a = torch.from_numpy(np.ascontiguousarray(pairs[0][0]))[None, None].to(dev)
        b = torch.from_numpy(np.ascontiguousarray(pairs[0][1]))[None, None].to(dev)
        times = interleaved({"float32": lambda: f32.fuse(a, b), str(low_dtype): lambda: low.fuse(a, b)},
                            5 if args.quick else 11, warmup=1, device=dev)
    sp = paired_speedup(times["float32"], times[str(low_dtype)])
    ok = worst <= HALF_TOLERANCE and sp > 1.0
    report["precision"] = {
        "dtype": str(low_dtype), "source": source, "max_abs_diff": worst,
        "max_abs_diff_255": worst * 255, "mask_flips": flips, "tolerance": HALF_TOLERANCE,
        "float32_median_s": statistics.median(times["float32"]),
        "low_median_s": statistics.median(times[str(low_dtype)]),
        "speedup": sp, "accepted": ok,
    }
    print("  precision: done", flush=True)


def section_compile(state: dict[str, Any], args: argparse.Namespace,
                    report: dict[str, Any]) -> None:
    import torch

    eng = make_engine(state, args.device, fast=True)
    fast = eng.model.fold(sparse="never")
    a_np, b_np = phantom_pair(256)
    a = torch.from_numpy(a_np)[:, None].to(eng.device)
    b = torch.from_numpy(b_np)[:, None].to(eng.device)
    try:
        # Default inductor settings: with ``freezing=True`` (which prepacks oneDNN weights)
        # torch 2.13 returned NaN for this graph, so freezing is not used.
        compiled = torch.compile(lambda x, y: fast.fuse(x, y).fused, dynamic=False)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = compiled(a, b)
        build = time.perf_counter() - t0
        with torch.no_grad():
            diff = float((out - fast.fuse(a, b).fused).abs().max())
            times = interleaved({"eager": lambda: fast.fuse(a, b), "compiled": lambda: compiled(a, b)},
                                5 if args.quick else 11, warmup=1, device=eng.device)
        report["compile"] = {"build_s": build, "max_abs_diff": diff,
                             "eager_median_s": statistics.median(times["eager"]),
                             "compiled_median_s": statistics.median(times["compiled"]),
                             "speedup": paired_speedup(times["eager"], times["compiled"])}
    except Exception as exc:  # compile support varies by platform; record why
        report["compile"] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    print("  compile: done", flush=True)


# -- output ----------------------------------------------------------------------------------
def fmt_table(report: dict[str, Any]) -> str:
    lines = []
    m = report["machine"]
    lines.append(
        f"device {m['device']} ({m['cpu']}), torch {m['torch']}, threads {m['threads']}, "
        f"OMP_WAIT_POLICY={m['omp_wait_policy']}, malloc tuning {m['malloc_tuned']}, "
        f"load avg before/after {m['load_before']} / {m.get('load_after')}"
    )
    if "rates" in report:
        r = report["rates"]
        lines.append(f"matmul {r['matmul_gflops']:.0f} GFLOP/s, 3x3 conv {r['conv_gflops']:.0f} GFLOP/s; "
                     f"weights: {report['weights']}")
    if "latency" in report:
        lines.append("")
        lines.append("| case | path | median s | best s | speed-up vs dense | GFLOP run/min "
                     "| matmul floor s | of floor | conv floor s | of conv floor | max abs diff | masks |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in report["latency"]:
            lines.append(
                f"| {r['case']} | {r['path']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                f"{r['speedup_vs_dense']:.2f}x | {r['gflop_executed']:.1f}/{r['gflop_minimal']:.1f} | "
                f"{r['floor_s']:.3f} | {r['fraction_of_floor']:.0%} | {r['conv_floor_s']:.3f} | "
                f"{r['fraction_of_conv_floor']:.0%} | {r['max_abs_diff_vs_dense']:.1e} | "
                f"{'same' if r['masks_identical'] else 'DIFFER'} |")
    if "volume" in report:
        lines.append("")
        lines.append("| case | path | median s | slices/s (median) | slices/s (best) | speed-up vs dense | max abs diff |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in report["volume"]:
            lines.append(f"| {r['case']} | {r['path']} | {r['median_s']:.2f} | {r['slices_per_s']:.2f} | "
                         f"{r['slices_per_s_best']:.2f} | {r['speedup_vs_dense']:.2f}x | "
                         f"{r['max_abs_diff_vs_dense']:.1e} |")
    if report.get("rss"):
        lines.append("")
        lines.append("| case | path | peak RSS MiB | seconds |")
        lines.append("|---|---|---|---|")
        for r in report["rss"]:
            if "error" in r:
                lines.append(f"| {r['case']} | {r['path']} | error: {r['error']} | |")
            else:
                lines.append(f"| {r['case']} | {r['path']} | {r['peak_rss_mib']:.0f} | {r['seconds']:.2f} |")
    if "sparse_sweep" in report:
        s = report["sparse_sweep"]
        lines.append("")
        lines.append(f"Region-mask body alone ({s['size']}x{s['size']}, sparse channels per layer "
                     f"{s['sparse_channels']}; auto uses the sparse body up to a modelled cost of "
                     f"{s['auto_max_cost']:.2f}; fixed {s['fixed']:g}, chain weight {s['chain_weight']:g}, area weight "
                     f"{s['area_weight']:g}):")
        lines.append("| branch | principal px | window area | modelled cost | measured cost "
                     "| dense body s | sparse body s | max abs diff |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in s["rows"]:
            lines.append(f"| {r['branch']} | {r['principal_fraction']:.0%} | {r['window_area']:.0%} | "
                         f"{r['modelled_cost']:.2f} | {1 / r['sparse_speedup']:.2f} | "
                         f"{r['dense_median_s']:.4f} | {r['sparse_median_s']:.4f} | {r['max_abs_diff']:.1e} |")
    if "precision" in report:
        p = report["precision"]
        lines.append("")
        verdict = "meets" if p["accepted"] else "fails"
        policy = ("the CUDA engine re-checks this on its phantoms and uses float16 only if it passes"
                  if p["dtype"] == "torch.float16" else
                  "the CPU engine stays float32 unless precision='bfloat16' is asked for")
        lines.append(f"{p['dtype']} vs float32 on {p['source']}: max abs diff {p['max_abs_diff']:.4f} "
                     f"({p['max_abs_diff_255']:.2f}/255), mask pixels that flip {p['mask_flips']}, "
                     f"speed-up {p['speedup']:.2f}x: {verdict} the 'within 2/255 and faster' "
                     f"criterion; {policy}")
    if "compile" in report:
        c = report["compile"]
        if "error" in c:
            lines.append(f"torch.compile: {c['error']}")
        else:
            lines.append(f"torch.compile: build {c['build_s']:.0f} s, speed-up {c['speedup']:.2f}x, "
                         f"max abs diff {c['max_abs_diff']:.1e}")
    for key in ("head", "atlas"):
        if key not in report:
            continue
        h = report[key]
        x = h["exactness"]
        lines.append("")
        lines.append(f"{h['case']}, {h['rounds']} interleaved rounds; slices per run by path "
                     f"{h['slices_by_path']}:")
        lines.append("| path | median s | best s | speed-up | CPU s (process) | CPU speed-up |")
        lines.append("|---|---|---|---|---|---|")
        lines.append(f"| whole slices | {h['whole_slices']['median_s']:.2f} | "
                     f"{h['whole_slices']['min_s']:.2f} | 1.00x | "
                     f"{h['cpu_s']['whole slices']['median_s']:.2f} | 1.00x |")
        lines.append(f"| **empty space skipped** | {h['skipping']['median_s']:.2f} | "
                     f"{h['skipping']['min_s']:.2f} | **{h['speedup']:.2f}x** | "
                     f"{h['cpu_s']['skipping']['median_s']:.2f} | {h['cpu_speedup']:.2f}x |")
        written = (f"; written {x['written_dtype']} values that differ: {x['written_values_differ']}"
                   if "written_dtype" in x else "")
        lines.append(f"exactness on this run ({x['pixels']} fused luminance pixels): max abs diff "
                     f"{x['max_abs_diff']:.1e}, bit-identical {x['bit_identical']}, differ after "
                     f"8-bit {x['differ_8bit']}, after 16-bit {x['differ_16bit']}{written}")
        if "stages" in h:
            names = ["read", "plan", "resample", "prepare", "network", "colour", "write", "total"]
            lines.append("| stage | whole slices s | skipping s |")
            lines.append("|---|---|---|")
            for n in names:
                a, b = h["stages"]["whole slices"].get(n, 0.0), h["stages"]["skipping"].get(n, 0.0)
                lines.append(f"| {n} | {a:.2f} | {b:.2f} |")
    lines.append("")
    lines.append(f"agreement (folded form <= {AGREE_TOL:g} with identical masks; skipping <= "
                 f"{SKIP_TOL:g}): {'OK' if report['agree'] else 'FAILED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rss_child:
        tune(args, int(os.environ.get("BENCH_THREADS", "2")))
        size, slices, mode, weights = args.rss_child
        rss_child(int(size), int(slices), mode, weights)
        return 0
    tuning = tune(args, args.threads)
    import torch

    sections = (args.sections.split(",") if args.sections
                else [s for s in ALL_SECTIONS if not (args.quick and s == "large")])
    unknown = set(sections) - set(ALL_SECTIONS) - {"compile"}
    if unknown:
        print(f"unknown sections: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    from medfuse.engine import select_device

    dev = select_device(args.device)
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "machine": {
            "device": str(dev), "cpu": cpu_name(), "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
            "malloc_tuned": tuning.allocator_tuned, "load_before": load_avg(),
        },
    }
    state, wdesc = weights_state(args.weights)
    report["weights"] = wdesc
    print(f"benchmarking {wdesc} on {dev}, {torch.get_num_threads()} threads; sections: {','.join(sections)}",
          flush=True)
    if "latency" in sections:
        report["rates"] = {"matmul_gflops": matmul_rate(dev, args.quick),
                           "conv_gflops": conv_rate(dev, args.quick)}
        section_latency(state, args, report["rates"], report)
    if "volume" in sections:
        section_volume(state, args, report)
    if "rss" in sections:
        section_rss(args, report, large="large" in sections)
    elif "large" in sections:
        r = run_rss(4096, 1, "fast", args)
        report.setdefault("rss", []).append({"case": "4096x4096 pair (tiled)", "path": "fast", **r})
    if "sparse" in sections:
        section_sparse(state, args, report)
    if "precision" in sections:
        section_precision(state, args, report)
    if "compile" in sections:
        section_compile(state, args, report)
    if "head" in sections:
        section_head(state, args, report)
    if "atlas" in sections:
        section_atlas(state, args, report)
    report["machine"]["load_after"] = load_avg()
    rows = report.get("latency", []) + report.get("volume", []) + \
        [report[k] for k in ("head", "atlas") if k in report]
    report["agree"] = all(r["agree"] for r in rows)
    text = fmt_table(report)
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nJSON: {args.out}")
    return 0 if report["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
