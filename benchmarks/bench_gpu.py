"""GPU path, measured: accuracy against CPU, batched slices per second, per-stage times of a
1 mm head end to end, with scipy or device resampling.

Run on a machine with CUDA, as one command (needs only ``PYTHONPATH=src`` with torch,
numpy, scipy, nibabel and pydicom; nothing is downloaded)::

    PYTHONPATH=src timeout 540 python benchmarks/bench_gpu.py --weights weights/gesenet-medfuse.pt

Sections run in the order below and stop starting once ``--budget-s`` (default 420 s)
is spent, so a run fits a 10-minute slot with room for a rerun; the JSON is rewritten
after every section (a run cut short keeps what it measured). It goes to
``benchmarks/results/gpu-<card>-torch<version>.json`` unless ``--json`` says otherwise,
with the card, the torch and CUDA versions and the goals each figure is checked against.
The exit code is 1 when an accuracy check fails.

On a CPU-only machine ``--device cpu`` runs the per-stage and end-to-end sections only
(the CPU per-stage table of docs/performance.md comes from that); ``--device cpu --smoke
--sections variants`` runs the variant code on small CPU tensors (everything but the CUDA
graph), to check the script itself.

What it measures:

1. **accuracy**: 32 phantom slices through the CPU float32 engine and the CUDA engine in
   float32 (goal: within 1e-5) and float16 (used only where within 2/255); device
   resampling of the head's PET against scipy (NaN masks equal, values within 1e-4).
2. **throughput**: fused luminance slices per second at 256x256 and 512x512 for several
   batch sizes, host arrays in and out (transfers included), peak GPU memory; plus the
   engine's previous fold (sparse body on, which loops over the batch on the host)
   and cuDNN's autotuner, for comparison.
3. **stages**: a synthetic 1 mm head (MRI 197x233x189 NIfTI, PET 2 mm NIfTI on another
   grid) through the same steps as ``fuse_files``, timed per stage: read, plan, resample,
   prepare (window, colour map, luminance split), network, colour (chroma rule), write
   (NIfTI, gzip); once with scipy resampling, once with ``DeviceResampler``.
4. **end_to_end**: ``fuse_files`` on the head (record and input hashes included), with
   scipy resampling and with device resampling patched into the plan (what the proposed
   one-line plan change does).
5. **variants**: the network alone on device tensors at 256x256 (batch ``--variant-batch``,
   default 512), float16 and float32: the folded form as the engine runs it
   (channels-last), NCHW, without mask shortcuts (no host synchronisation), replayed as a
   CUDA graph, and ``torch.compile`` of the folded form (default mode and
   ``reduce-overhead``, float16 only); slices per second, build time, and the max difference from the
   eager form in the same precision and from float32.
6. **cpu_workers**: the host CPU's network slices per second, one process with all
   threads against one single-threaded process per core (up to 8): what ``--workers``
   is for on a many-core node.

Goals it checks (``goals`` in the JSON): float32 on CUDA within 1e-5 of CPU, float16
within 2/255; at least 2,000 slices/s at 256x256 batched; the 1 mm head under 2 s end to
end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

SECTIONS = ("accuracy", "throughput", "end_to_end", "variants", "stages", "cpu_workers")
#: The goals the figures are checked against.
GOALS = {"float32_max_abs_diff": 1e-5, "float16_max_abs_diff": 2 / 255,
         "slices_per_s_256": 2000.0, "head_end_to_end_s": 2.0}
HEAD_SLICES = 189


def _sync(device: Any) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _phantom_batch(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from medfuse.phantom import brain_phantom
    from medfuse.prepare.pair import prepare_pair

    mri, other = [], []
    for k in range(n):
        m, p = brain_phantom(size, seed=seed + k)
        pair = prepare_pair(m, p, modality="pet")
        mri.append(pair.mri_y)
        other.append(pair.other_y)
    return np.stack(mri), np.stack(other)


def _head(tmp: Path) -> tuple[Path, Path]:
    """A 1 mm MRI (197x233x189, as the MNI152 grid) and a 2 mm PET on its own grid."""
    import nibabel as nib

    def world(shape: tuple[int, int, int], aff: np.ndarray) -> np.ndarray:
        idx = np.indices(shape, dtype=np.float32)
        return np.einsum("ij,j...->i...", aff[:3, :3].astype(np.float32), idx) + \
            aff[:3, 3].astype(np.float32).reshape(3, 1, 1, 1)

    mri_aff = np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])
    x, y, z = world((197, 233, HEAD_SLICES), mri_aff)
    r = (x / 70) ** 2 + (y / 90) ** 2 + (z / 70) ** 2
    mri = np.where(r < 1, 600 + 300 * np.cos(x / 4) * np.sin(y / 5), 0).astype(np.int16)
    nib.save(nib.Nifti1Image(mri, mri_aff), tmp / "mri.nii.gz")
    pet_aff = np.array([[-2.0, 0, 0, 98], [0, -2, 0, 118], [0, 0, 2, -72], [0, 0, 0, 1]])
    x, y, z = world((99, 117, 95), pet_aff)
    r = (x / 70) ** 2 + (y / 90) ** 2 + (z / 70) ** 2
    pet = np.where(r < 1, 5 + 3 * np.cos(y / 9), 0).astype(np.float32)
    pet[(x - 20) ** 2 + (y + 10) ** 2 + (z - 10) ** 2 < 100] = 15.0
    nib.save(nib.Nifti1Image(pet, pet_aff), tmp / "pet.nii.gz")
    return tmp / "mri.nii.gz", tmp / "pet.nii.gz"


# -- 1. accuracy ----------------------------------------------------------------------------


def accuracy(weights: str | None, head: tuple[Path, Path]) -> dict[str, float]:
    from medfuse.engine import load_model
    from medfuse.fusion import read_pair_plan
    from medfuse.io.geometry import DeviceResampler, resample_slab

    mri, other = _phantom_batch(32, 256)
    cpu = load_model(weights, "cpu", batch_size=32, precision="float32")
    ref, _, _ = cpu.fuse_luminance(mri, other)
    out: dict[str, float] = {}
    for precision in ("float32", "float16"):
        gpu = load_model(weights, "cuda", batch_size=32, precision=precision)
        got, _, _ = gpu.fuse_luminance(mri, other)
        out[f"max_abs_diff_{precision}"] = float(np.abs(got - ref).max())
        out[f"max_abs_diff_{precision}_in_255"] = float(np.abs(got - ref).max() * 255)
    plan, _ = read_pair_plan(*head, modality="pet")
    o = plan.other
    want = resample_slab(o.data, o.affine, plan.mri_stack.affine, 60, 100, plan.plane_shape)
    got = DeviceResampler(o.data, o.affine, plan.mri_stack.affine, plan.plane_shape,
                          "cuda").slab(60, 100)
    nan = np.isnan(want)
    out["resample_nan_mask_differs"] = int((nan != np.isnan(got)).sum())
    scale = float(np.nanmax(np.abs(want))) or 1.0
    out["resample_max_rel_diff"] = float(np.nanmax(np.abs(got - want)[~nan]) / scale)
    return out


# -- 2. throughput ----------------------------------------------------------------------------


def _throughput_row(weights: str | None, size: int, batch: int, precision: str,
                    **engine_options: Any) -> dict[str, Any]:
    import torch

    from medfuse.engine import load_model

    engine = load_model(weights, "cuda", batch_size=batch, precision=precision)
    for key, value in engine_options.items():
        setattr(engine, key, value)
    mri, other = _phantom_batch(8, size)
    reps = batch // 8
    mri, other = np.tile(mri, (reps, 1, 1)), np.tile(other, (reps, 1, 1))
    engine.fuse_luminance(mri, other)  # warm-up (cuDNN, allocation, pinned buffer)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    calls = max(3, 2048 // batch)
    t0 = time.perf_counter()
    for _ in range(calls):
        engine.fuse_luminance(mri, other)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    row = {"size": size, "batch": batch, "precision": str(engine.compute_dtype()),
           "slices_per_s": calls * batch / dt,
           "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20}
    row.update({k: str(v) for k, v in engine_options.items()})
    print(json.dumps(row), flush=True)
    return row


def throughput(weights: str | None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"auto": [], "float32": [], "variants": []}
    for size, batches in ((256, (128, 512, 1024)), (512, (128,))):
        for batch in batches:
            out["auto"].append(_throughput_row(weights, size, batch, "auto"))
    for size, batches in ((256, (128, 512)),):
        for batch in batches:
            out["float32"].append(_throughput_row(weights, size, batch, "float32"))
    # What the engine changes bought, and what the autotuner would add.
    out["variants"].append(_throughput_row(weights, 256, 512, "auto",
                                           cuda_fold_options={"sparse": "auto"}))
    out["variants"].append(_throughput_row(weights, 256, 512, "auto", cudnn_benchmark=True))
    return out


# -- 5. variants (network only) -----------------------------------------------------------------


def _cuda_graph(fn: Any, a: Any, b: Any) -> Any:
    """``fn(a, b)`` captured once as a CUDA graph over static input buffers; the returned
    function copies new inputs in and replays it."""
    import torch

    sa, sb = a.clone(), b.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up outside the capture (cuDNN plans, allocator pools)
            fn(sa, sb)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(sa, sb)

    def replay(x: Any, y: Any) -> Any:
        sa.copy_(x)
        sb.copy_(y)
        graph.replay()
        return out

    return replay


def _variant_row(name: str, make: Any, a: Any, b: Any, reference: dict[str, Any],
                 iters: int) -> dict[str, Any]:
    import torch

    row: dict[str, Any] = {"variant": name, "batch": int(a.shape[0]),
                           "size": int(a.shape[-1]), "dtype": str(a.dtype)}
    try:
        t0 = time.perf_counter()
        fn = make()
        got = fn(a, b)  # first call: compile or capture
        _sync(a.device)
        row["build_s"] = round(time.perf_counter() - t0, 2)
        for _ in range(2):
            fn(a, b)
        _sync(a.device)
        t0 = time.perf_counter()
        for _ in range(iters):
            got = fn(a, b)
        _sync(a.device)
        dt = time.perf_counter() - t0
        row["slices_per_s"] = round(iters * a.shape[0] / dt, 1)
        got = got.float()
        for key, ref in reference.items():
            row[f"max_abs_diff_vs_{key}_in_255"] = float((got - ref).abs().max()) * 255
    except Exception as exc:  # one variant failing must not lose the others
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    if torch.cuda.is_available() and a.device.type == "cuda":
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(row), flush=True)
    return row


def variants(weights: str | None, device: str, size: int, batch: int, smoke: bool = False
             ) -> list[dict[str, Any]]:
    """The network alone on device tensors, as the engine folds it and in the forms that
    might run it faster (see the module docstring)."""
    import torch

    from medfuse.engine import build_model, read_state_dict, resolve_weights

    dev = torch.device(device)
    model = build_model(read_state_dict(resolve_weights(weights))).to(dev)
    mri, other = _phantom_batch(min(batch, 8), size)
    reps = -(-batch // len(mri))
    a32 = torch.from_numpy(np.tile(mri, (reps, 1, 1))[:batch]).unsqueeze(1).to(dev)
    b32 = torch.from_numpy(np.tile(other, (reps, 1, 1))[:batch]).unsqueeze(1).to(dev)
    iters = 2 if smoke else max(5, 4096 // batch)
    cuda = dev.type == "cuda"
    flags = (torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False,
                                        allow_tf32=False) if cuda else contextlib.nullcontext())
    rows: list[dict[str, Any]] = []
    with torch.inference_mode(), flags:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = False
        exact = model.fold(dtype=torch.float32, sparse="never")
        ref32 = exact.fuse(a32, b32, return_bodies=False).fused.float()
        for dtype in (torch.float16, torch.float32) if cuda else (torch.float32,):
            a, b = a32.to(dtype), b32.to(dtype)

            def folded(dtype: Any = dtype, **options: Any) -> Any:
                net = model.fold(dtype=dtype, **{"sparse": "never", **options})
                return lambda x, y: net.fuse(x, y, return_bodies=False).fused

            eager = folded()(a, b).float()
            reference = {"eager": eager, "float32": ref32}
            cases: list[tuple[str, Any]] = [
                ("folded, channels-last (the engine's)", folded),
                ("folded, NCHW", lambda f=folded: f(channels_last=False)),
                ("folded, no mask shortcuts", lambda f=folded: f(mask_shortcuts=False)),
            ]
            if cuda:
                cases.append(("CUDA graph of the folded form",
                              lambda f=folded, a=a, b=b: _cuda_graph(f(mask_shortcuts=False), a, b)))
            # Compiling takes about a minute a mode: float16 only, the precision the
            # engine picks on CUDA (float32 on the CPU smoke run).
            modes = ("default", "reduce-overhead") if dtype == torch.float16 else ()
            for mode in modes if cuda else ("default",):
                cases.append((f"torch.compile, mode={mode}",
                              lambda f=folded, mode=mode: torch.compile(
                                  f(mask_shortcuts=False), mode=mode, dynamic=False)))
            for name, make in cases:
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                rows.append(_variant_row(name, make, a, b, reference, iters))
            torch._dynamo.reset()
    return rows


# -- 3. stages ---------------------------------------------------------------------------------


class Timer:
    """Seconds per named stage (nested stages are subtracted afterwards); synchronises the
    device at each boundary so GPU work is charged to the stage that queued it."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        _sync(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.seconds[stage] += time.perf_counter() - t0


class TimedEngine:
    """The engine with its network calls timed (everything else passes through).

    ``sample``: run the network on the first ``sample`` slices only and the mean of the
    two inputs on the rest, so a loaded CPU measures every other stage on the whole head
    in minutes; :meth:`network_seconds` then scales the network's time to all slices."""

    def __init__(self, engine: Any, timer: Timer, sample: int | None = None) -> None:
        self.engine, self.timer, self.sample = engine, timer, sample
        self.slices = self.networked = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def fuse_luminance(self, mri: np.ndarray, other: np.ndarray, with_masks: bool = False
                       ) -> Any:
        n = len(mri)
        self.slices += n
        if self.sample is not None and self.networked >= self.sample:
            return ((mri + other) / 2).astype(np.float32), None, None
        self.networked += n
        with self.timer("network"):
            return self.engine.fuse_luminance(mri, other, with_masks)

    def network_seconds(self) -> float:
        seconds = self.timer.seconds.get("network", 0.0)
        return seconds * self.slices / max(1, self.networked)


def _device_values(plan: Any, device: Any) -> Any:
    """``plan.other_values`` through a DeviceResampler built once per plan (slope and
    intercept as the plan applies them)."""
    from medfuse.io.geometry import DeviceResampler

    o = plan.other
    resampler = DeviceResampler(o.data, o.affine, plan.mri_stack.affine, plan.plane_shape,
                                device)

    def values(start: int, stop: int) -> np.ndarray:
        vals = resampler.slab(start, stop)
        if o.slope != 1.0:
            vals *= np.float32(o.slope)
        if o.inter != 0.0:
            vals += np.float32(o.inter)
        return vals

    return values


def staged(head: tuple[Path, Path], out: Path, engine: Any, device_resample: bool,
           batch: int, sample: int | None = None) -> dict[str, float]:
    """The steps of ``fuse_files`` for a NIfTI output, each timed (no record); with
    ``sample``, the network's time is measured on that many slices and scaled."""
    from medfuse.fusion import (
        FuseRequest,
        _make_sink,
        fuse_prepared,
        prepared_slices,
        read_pair_plan,
    )

    t = Timer(engine.device)
    first: dict[str, float] = {}
    plan, _ = read_pair_plan(*head, modality="pet", timings=first)
    t.seconds["read"], t.seconds["plan"] = first["read"], first["plan"]
    if plan.resampled:
        inner = plan.other_values
        if device_resample:
            with t("upload"):
                inner = _device_values(plan, engine.device)

        def timed_values(start: int, stop: int, inner: Any = inner) -> np.ndarray:
            with t("resample"):
                return inner(start, stop)

        plan.other_values = timed_values  # this plan only
    request = FuseRequest(head[0], head[1], out, modality="pet", force=True)
    indices = list(range(len(plan)))
    sink = _make_sink(request, "nifti", plan, indices, False)
    timed = TimedEngine(engine, t, sample)
    chunks = prepared_slices(plan, indices, batch)
    while True:
        with t("prepare"):
            chunk = next(chunks, None)
        if chunk is None:
            break
        with t("fuse"):
            results = fuse_prepared([p for _, p in chunk], timed, False, False)
        with t("write"):
            for (index, _), result in zip(chunk, results):
                sink.add(index, result.image)
    with t("write"):
        sink.commit()
    s = dict(t.seconds)
    s["prepare"] -= s.get("resample", 0.0)  # resampling runs inside prepared_slices
    s["resample"] = s.get("resample", 0.0) + s.pop("upload", 0.0)
    s["colour"] = s.pop("fuse") - s["network"]
    s["network"] = timed.network_seconds()
    s["total"] = sum(s.values())
    if sample is not None:
        s["network_measured_on_slices"] = timed.networked
    return {k: round(v, 4) for k, v in s.items()}


def stages(weights: str | None, device: str, head: tuple[Path, Path], tmp: Path,
           batch: int, sample: int | None) -> dict[str, Any]:
    from medfuse.engine import load_model

    engine = load_model(weights, device, batch_size=batch)
    out: dict[str, Any] = {"device": device, "batch": batch, "slices": HEAD_SLICES}
    for name, on_device in (("scipy_resampling", False), ("device_resampling", True)):
        staged(head, tmp / "warm.nii.gz", engine, on_device, batch,
               None if sample is None else 1)  # warm-up
        out[name] = staged(head, tmp / f"{name}.nii.gz", engine, on_device, batch, sample)
        print(json.dumps({name: out[name]}), flush=True)
    return out


# -- 4. end to end -------------------------------------------------------------------------------


@contextlib.contextmanager
def device_resampling(device: Any) -> Iterator[None]:
    """Every plan resamples through a DeviceResampler on ``device`` (built once per plan):
    the change proposed for ``FusionPlan.other_values``, patched in for the measurement."""
    from medfuse.prepare.plan import FusionPlan

    original = FusionPlan.other_values
    cache: dict[int, Any] = {}

    def other_values(self: Any, start: int, stop: int) -> np.ndarray:
        if not self.resampled:
            return original(self, start, stop)
        if id(self) not in cache:
            cache.clear()
            cache[id(self)] = _device_values(self, device)
        return cache[id(self)](start, stop)

    FusionPlan.other_values = other_values  # type: ignore[method-assign]
    try:
        yield
    finally:
        FusionPlan.other_values = original  # type: ignore[method-assign]


def end_to_end(weights: str | None, device: str, head: tuple[Path, Path], tmp: Path,
               batch: int, runs: int = 2) -> dict[str, Any]:
    from medfuse.engine import load_model
    from medfuse.fusion import FuseRequest, fuse_files

    engine = load_model(weights, device, batch_size=batch)
    result: dict[str, Any] = {"device": device, "batch": batch, "slices": HEAD_SLICES}
    for name, patch in (("scipy_resampling", contextlib.nullcontext()),
                        ("device_resampling", device_resampling(device))):
        times, split = [], {}
        with patch:
            for run in range(runs):  # the first run pays for cuDNN and allocations
                out = tmp / f"fused-{name}-{run}.nii.gz"
                t0 = time.perf_counter()
                report = fuse_files(FuseRequest(*head, out, modality="pet"), lambda: engine)
                _sync(device)
                times.append(time.perf_counter() - t0)
                split = report.provenance.get("timings_s", {})
        result[name] = {"runs_s": [round(x, 3) for x in times], "fuse_files_timings_s": split}
        print(json.dumps({name: result[name]}), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--device", default="cuda", help="cuda (everything) or cpu "
                        "(stages and end_to_end only)")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--batch", type=int, default=None,
                        help="slices per network call end to end (default: cuda 128, cpu 8)")
    parser.add_argument("--network-sample", type=int, default=None,
                        help="stages: time the network on this many slices and scale "
                        "(default: all on cuda, 16 on cpu)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="start no section after this many seconds (default 420)")
    parser.add_argument("--variant-batch", type=int, default=512,
                        help="variants: slices per call (default 512)")
    parser.add_argument("--smoke", action="store_true",
                        help="variants on small CPU tensors, to check the script")
    args = parser.parse_args()
    started = time.perf_counter()
    import torch

    from medfuse.engine.runtime import tune_process

    tune_process()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; run it on a GPU machine or pass --device cpu")
        return 2
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not cuda:
        cpu_ok = ("stages", "end_to_end", "cpu_workers") + (("variants",) if args.smoke else ())
        sections = [s for s in sections if s in cpu_ok]
        if args.sections == ",".join(SECTIONS):
            sections = ["stages"]  # the whole head through a CPU network takes minutes
    sample = args.network_sample or (None if cuda else 16)
    batch = args.batch or (128 if cuda else 8)
    card = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    result: dict[str, Any] = {
        "device": card, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": sys.argv[1:], "goals": GOALS, "sections_skipped_for_budget": [],
    }
    out_json = args.json or default_json(card, torch.__version__)

    def save() -> None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        head = _head(tmp)
        for section in [s for s in SECTIONS if s in sections]:
            if time.perf_counter() - started > args.budget_s:
                result["sections_skipped_for_budget"].append(section)
                continue
            t0 = time.perf_counter()
            if section == "accuracy":
                result["accuracy"] = accuracy(args.weights, head)
                print(json.dumps(result["accuracy"]), flush=True)
            elif section == "throughput":
                result["throughput"] = throughput(args.weights)
            elif section == "stages":
                result["stages"] = stages(args.weights, args.device, head, tmp, batch, sample)
            elif section == "end_to_end":
                result["end_to_end"] = end_to_end(args.weights, args.device, head, tmp, batch,
                                                  runs=2 if cuda else 1)
            elif section == "variants":
                size = 64 if args.smoke else 256
                vbatch = 2 if args.smoke else args.variant_batch
                result["variants"] = variants(args.weights, args.device, size, vbatch, args.smoke)
            elif section == "cpu_workers":
                # How the host's cores are best used by --workers: one process with all
                # threads, or one single-threaded process per core (up to 8).
                from bench_batch import steady_state

                from medfuse.batch.task import available_cpus

                result["cpu_workers"] = steady_state(min(8, available_cpus()), slices=16,
                                                     rounds=1, weights=args.weights)
                print(json.dumps(result["cpu_workers"]), flush=True)
            result.setdefault("section_seconds", {})[section] = round(time.perf_counter() - t0, 1)
            result["checks"] = checks(result)
            save()
    result["checks"] = checks(result)
    save()
    print(json.dumps(result, indent=2))
    print(f"JSON: {out_json}")
    failed = [k for k, v in result["checks"].items() if k.startswith("accuracy") and v is False]
    return 1 if failed else 0


def default_json(card: str, torch_version: str) -> Path:
    """benchmarks/results/gpu-<card>-torch<version>.json, names made file-safe."""
    slug = "".join(c if c.isalnum() else "-" for c in card.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    ver = torch_version.replace("+", "-")
    return Path(__file__).resolve().parent / "results" / f"gpu-{slug}-torch{ver}.json"


def checks(result: dict[str, Any]) -> dict[str, bool | None]:
    """Each goal met (True), missed (False) or not measured in this run (None)."""
    acc = result.get("accuracy", {})
    out: dict[str, bool | None] = {
        "accuracy_float32": (acc["max_abs_diff_float32"] <= GOALS["float32_max_abs_diff"]
                             if "max_abs_diff_float32" in acc else None),
        "accuracy_float16": (acc["max_abs_diff_float16"] <= GOALS["float16_max_abs_diff"]
                             if "max_abs_diff_float16" in acc else None),
    }
    rates = [r.get("slices_per_s", 0.0) for r in result.get("variants", [])
             if r.get("size") == 256 and "error" not in r]
    rates += [r["slices_per_s"] for r in result.get("throughput", {}).get("auto", [])
              if r["size"] == 256]
    out["slices_per_s_256"] = max(rates) >= GOALS["slices_per_s_256"] if rates else None
    e2e = result.get("end_to_end", {})
    runs = [min(v["runs_s"]) for k, v in e2e.items() if isinstance(v, dict) and "runs_s" in v]
    out["head_end_to_end"] = min(runs) <= GOALS["head_end_to_end_s"] if runs else None
    return out


if __name__ == "__main__":
    sys.exit(main())
