"""GPU path, measured: accuracy against CPU, batched slices per second, a 1 mm head end to end.

Run on a machine with CUDA (it exits with a message otherwise)::

    python benchmarks/bench_gpu.py --weights weights/gesenet-medfuse.pt --json gpu.json

What it measures, in one short run (about two minutes on an H200 including start-up):

1. **Accuracy**: the same 32 phantom slices through the CPU float32 engine and the CUDA
   engine in float32 (goal: within 1e-5) and float16 (used only where within 2/255).
2. **Throughput**: fused luminance slices per second at 256x256 and 512x512 for several
   batch sizes, host arrays in and out (transfers included), and peak GPU memory.
3. **End to end**: a synthetic 1 mm head (MRI 197x233x189 NIfTI, PET 2 mm NIfTI on another
   grid) through ``medfuse.fusion.fuse_files`` to a NIfTI file: read, plan, resample,
   network, colour and write, with the per-stage split from a profiler-free timer.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


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


def accuracy(weights: str | None) -> dict[str, float]:
    from medfuse.engine import load_model

    mri, other = _phantom_batch(32, 256)
    cpu = load_model(weights, "cpu", batch_size=32, precision="float32")
    ref, _, _ = cpu.fuse_luminance(mri, other)
    out: dict[str, float] = {}
    for precision in ("float32", "float16"):
        gpu = load_model(weights, "cuda", batch_size=32, precision=precision)
        got, _, _ = gpu.fuse_luminance(mri, other)
        out[f"max_abs_diff_{precision}"] = float(np.abs(got - ref).max())
        out[f"max_abs_diff_{precision}_in_255"] = float(np.abs(got - ref).max() * 255)
    return out


def throughput(weights: str | None, precision: str) -> list[dict[str, float]]:
    import torch

    from medfuse.engine import load_model

    rows = []
    for size in (256, 512):
        for batch in (32, 128, 512) if size == 256 else (32, 128):
            engine = load_model(weights, "cuda", batch_size=batch, precision=precision)
            mri, other = _phantom_batch(8, size)
            reps = batch // 8
            mri, other = np.tile(mri, (reps, 1, 1)), np.tile(other, (reps, 1, 1))
            engine.fuse_luminance(mri, other)  # warm-up (cuDNN autotune, allocation)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            calls = max(3, 2048 // batch)
            t0 = time.perf_counter()
            for _ in range(calls):
                engine.fuse_luminance(mri, other)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            rows.append({
                "size": size, "batch": batch, "precision": str(engine.compute_dtype()),
                "slices_per_s": calls * batch / dt,
                "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20,
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _head(tmp: Path) -> tuple[Path, Path]:
    """A 1 mm MRI (197x233x189, as the MNI152 grid) and a 2 mm PET on its own grid."""
    import nibabel as nib

    def world(shape: tuple[int, int, int], aff: np.ndarray) -> np.ndarray:
        idx = np.indices(shape, dtype=np.float32)
        return np.einsum("ij,j...->i...", aff[:3, :3].astype(np.float32), idx) + \
            aff[:3, 3].astype(np.float32).reshape(3, 1, 1, 1)

    mri_aff = np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])
    x, y, z = world((197, 233, 189), mri_aff)
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


def end_to_end(weights: str | None, device: str) -> dict[str, float]:
    import torch

    from medfuse.engine import load_model
    from medfuse.fusion import FuseRequest, fuse_files

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        mri, pet = _head(tmp)
        engine = load_model(weights, device, batch_size=64 if device != "cpu" else 8)
        times = []
        for run in range(2):  # the first run pays for cuDNN autotuning
            out = tmp / f"fused{run}.nii.gz"
            t0 = time.perf_counter()
            fuse_files(FuseRequest(mri, pet, out, modality="pet"), lambda: engine)
            if device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return {"device": device, "first_s": times[0], "second_s": times[1], "slices": 189}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip-cpu-e2e", action="store_true")
    args = parser.parse_args()
    import torch

    from medfuse.engine.runtime import tune_process

    tune_process()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; run this script on a machine with a GPU")
        return 2
    result: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "python": platform.python_version(),
    }
    result["accuracy"] = accuracy(args.weights)
    print(json.dumps(result["accuracy"]), flush=True)
    result["throughput_auto"] = throughput(args.weights, "auto")
    result["throughput_float32"] = throughput(args.weights, "float32")
    result["end_to_end_cuda"] = end_to_end(args.weights, "cuda")
    print(json.dumps(result["end_to_end_cuda"]), flush=True)
    if not args.skip_cpu_e2e:
        result["end_to_end_cpu"] = end_to_end(args.weights, "cpu")
        print(json.dumps(result["end_to_end_cpu"]), flush=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
