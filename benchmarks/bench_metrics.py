"""Time medfuse.metrics on synthetic fusions: the full metric set over N pairs of HxW images.

The target is the Harvard test set size: 136 pairs of 256x256 in under 30 s on 2 cores.
Images are generated before timing (smoothed noise with a dark background, like a brain
slice), so only scoring is measured. Per-metric times come from scoring each metric alone;
the total is one ``compute_metrics`` call per pair with every metric (Qabf and Nabf share
their Sobel maps there, so the total is less than the sum of the rows).

    PYTHONPATH=src python benchmarks/bench_metrics.py --json bench_metrics.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from medfuse.metrics import METRIC_NAMES, PROFILES, compute_metrics


def synthetic_pairs(n: int, size: int, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """n triples (A, B, F) of uint8 images: textured disc on black, F = a blend of both."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.42 * size) ** 2
    out = []
    for _ in range(n):
        a = ndimage.gaussian_filter(rng.random((size, size)), 2.0)
        b = ndimage.gaussian_filter(rng.random((size, size)), 6.0)
        a = (a - a.min()) / (a.max() - a.min()) * 255.0 * disc
        b = (b - b.min()) / (b.max() - b.min()) * 255.0 * disc
        w = rng.uniform(0.3, 0.7)
        f = np.maximum(w * a + (1 - w) * b, 0.8 * b)
        out.append(tuple(np.round(x).astype(np.uint8) for x in (a, b, f)))
    return out


def time_profile(pairs: list[tuple[np.ndarray, ...]], profile: str) -> dict[str, float]:
    """Seconds over all pairs, per metric alone and for the full set together."""
    times: dict[str, float] = {}
    for name in METRIC_NAMES:
        t0 = time.perf_counter()
        for a, b, f in pairs:
            compute_metrics(a, b, f, profile=profile, metrics=[name])
        times[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for a, b, f in pairs:
        compute_metrics(a, b, f, profile=profile)
    times["total"] = time.perf_counter() - t0
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=136)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--profile", choices=[*PROFILES, "both"], default="both")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    pairs = synthetic_pairs(args.pairs, args.size)
    profiles = list(PROFILES) if args.profile == "both" else [args.profile]
    results = {p: time_profile(pairs, p) for p in profiles}

    header = f"{'metric':<8}" + "".join(f"{p:>14}" for p in profiles)
    print(f"{args.pairs} pairs of {args.size}x{args.size}, seconds in total")
    print(header)
    print("-" * len(header))
    for name in [*METRIC_NAMES, "total"]:
        print(f"{name:<8}" + "".join(f"{results[p][name]:>14.3f}" for p in profiles))

    if args.json is not None:
        payload = {
            "pairs": args.pairs,
            "size": args.size,
            "seconds": results,
            "seconds_per_pair": {p: results[p]["total"] / args.pairs for p in profiles},
            "python": platform.python_version(),
            "numpy": np.__version__,
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
