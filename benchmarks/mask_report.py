"""Do the region masks of a weights file matter? One report, one run, on the val split.

    python benchmarks/mask_report.py WEIGHTS [--data ../shared/data/harvard] [--json out.json]
        [--device cpu] [--repeats 3] [--threads N] [--study pet --study spect]
        [--study-folder DIR]

Measures, for GeSeNet weights:
- sparse channels per branch and masked layer (inference rule), and the share of channels;
- hard principal fractions per task and branch: of the image, and of the signal support
  (where either source has signal, ``medfuse.training.losses.signal_support``);
- the lattice index of the hard spatial masks (share of non-DC energy at the period-2
  frequencies, ``medfuse.training.losses.lattice_index``) next to that of a smooth mask of
  the same anatomy (the support itself);
- an ablation: the same weights with both spatial masks forced all-principal (the last
  transposed convolution's biases set to +-1e4, nothing else changed), scored like
  validation (Qabf, SSIM, SCD, SD, EN; standard profile, the written image), and the
  change of the fused luminance, over the image and over the anatomy where a learned mask
  is redundant;
- the share of the anatomy where a mask is tied (margin within 1e-4 of 0: decided by
  rounding, the sign of a dead mask generator);
- the fast path: ms per pair of the folded inference form with the sparse body
  (``sparse="always"``), without it (``"never"``, the dense masked body), the default
  (``"auto"``) and the forced all-principal weights, interleaved in one run;
- the same on whole generated studies (``--study pet --study spect``: a 1 mm head, MRI
  with PET or SPECT, every slice the inference path prepares): ms per study with
  ``"auto"`` and ``"never"``, interleaved study by study, the largest difference between
  their fused slices, and how often auto took the sparse body.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def forced_all_principal(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights with both spatial masks all principal: logit 1 beats logit 0 by 2e4
    everywhere through the last transposed convolution's bias."""
    out = dict(state)
    for prefix in ("inf_rmm", "vis_rmm"):
        k = f"{prefix}.spa_mask.5.bias"
        out[k] = torch.tensor([-1e4, 1e4], dtype=state[k].dtype)
    return out


@torch.no_grad()
def fused_and_masks(model: torch.nn.Module, val, dev: torch.device):  # noqa: ANN001, ANN201
    from medfuse.training.data import as_batch

    fused, mm, mf = [], [], []
    for i in range(0, len(val), 8):
        o = model.fuse(as_batch(val.mri[i : i + 8], dev), as_batch(val.other[i : i + 8], dev))
        fused.append(o.fused[:, 0].cpu().numpy())
        mm.append(o.mask_mri.cpu())
        mf.append(o.mask_functional.cpu())
    return np.concatenate(fused), torch.cat(mm), torch.cat(mf)


def scores(val, fused: np.ndarray) -> dict[str, dict[str, float]]:  # noqa: ANN001
    """Validation's scoring (written image, standard profile) per task."""
    from medfuse.colour import TAU
    from medfuse.io.images import to_uint
    from medfuse.metrics import compute_metrics_colour
    from medfuse.prepare.pair import PreparedPair, colourise

    rows = []
    for k in range(len(val)):
        colour = val.chroma is not None and not np.all(val.chroma[k] == TAU)
        pair = PreparedPair(val.mri[k], val.other[k],
                            [(val.chroma[k, 0], val.chroma[k, 1])] if colour else [], "pet")
        written = to_uint(colourise(fused[k], pair), 8).astype(np.float64)
        rows.append(compute_metrics_colour(val.mri[k] * 255.0, val.other[k] * 255.0, written,
                                           profile="standard",
                                           metrics=["Qabf", "SSIM", "SCD", "SD", "EN"]))
    out = {}
    for task in sorted(set(val.tasks)):
        idx = [k for k, t in enumerate(val.tasks) if t == task]
        out[task] = {m: float(np.mean([rows[k][m] for k in idx])) for m in rows[0]}
    return out


def tied_share(model: torch.nn.Module, val, dev: torch.device) -> dict[str, float]:  # noqa: ANN001
    """Per branch, the share of the support where the spatial margin is within 1e-4 of 0:
    there the mask is decided by rounding, not by the image (a dead mask generator);
    validation's own count (:func:`medfuse.training.validation.tied_pixels`)."""
    from medfuse.training.data import as_batch
    from medfuse.training.validation import tied_pixels

    tied, total = [0.0, 0.0], 0.0
    for i in range(0, len(val), 8):
        t, n = tied_pixels(model, as_batch(val.mri[i : i + 8], dev), as_batch(val.other[i : i + 8], dev))  # type: ignore[arg-type]
        tied = [x + y for x, y in zip(tied, t)]
        total += n
    return {"mri": tied[0] / max(total, 1.0), "functional": tied[1] / max(total, 1.0)}


def change(fused: np.ndarray, forced: np.ndarray, mm: torch.Tensor, mf: torch.Tensor,
           sup: torch.Tensor) -> dict[str, float]:
    """How much forcing the masks all-principal changes the fused luminance (grey levels of
    255): over the image, and over the anatomy where either learned mask is redundant (the
    only place the masks can act), with the share of those pixels that move by more than
    one grey level."""
    diff = np.abs(fused - forced) * 255
    redundant = (((mm == 0) | (mf == 0)) & (sup > 0))[:, 0].numpy()
    inside = diff[redundant] if redundant.any() else np.zeros(1)
    return {"mean_abs_change_255": float(diff.mean()),
            "redundant_anatomy_share": float(redundant.mean()),
            "mean_abs_change_in_redundant_anatomy_255": float(inside.mean()),
            "p99_change_in_redundant_anatomy_255": float(np.percentile(inside, 99)),
            "redundant_anatomy_pixels_moved_over_1_255": float((inside > 1).mean())}


def timing(models: dict[str, object], val, dev: torch.device, repeats: int) -> dict[str, float]:  # noqa: ANN001
    """ms per pair of each folded model over the val pairs, one pair at a time, the
    models interleaved pair by pair so that load changes hit them alike; the median over
    ``repeats`` passes."""
    from medfuse.training.data import as_batch

    times: dict[str, list[float]] = {k: [] for k in models}
    pairs = [(as_batch(val.mri[k : k + 1], dev), as_batch(val.other[k : k + 1], dev)) for k in range(len(val))]
    with torch.no_grad():
        for a, b in pairs[:2]:  # warm-up
            for m in models.values():
                m.fuse(a, b, return_bodies=False)  # type: ignore[attr-defined]
        for _ in range(repeats):
            per = {k: 0.0 for k in models}
            for a, b in pairs:
                for name, m in models.items():
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    m.fuse(a, b, return_bodies=False)  # type: ignore[attr-defined]
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    per[name] += time.perf_counter() - t0
            for k in models:
                times[k].append(per[k] / len(pairs) * 1000)
    return {k: float(np.median(v)) for k, v in times.items()}


def study_slices(kind: str, folder: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every slice of a generated 1 mm ``kind`` study (seed 0, default window) as the
    inference path prepares it, padded to even size as the engine pads it, as
    (1, 1, H, W) tensors. The study is generated into ``folder`` once."""
    import warnings

    from medfuse.engine.tiling import pad_to_multiple
    from medfuse.fusion import prepared_slices, read_pair_plan
    from medfuse.studies import generate_study

    study_dir = folder / f"{kind}-1mm-seed0"
    if not (study_dir / "study.json").exists():
        generate_study(kind, study_dir, resolution=1, seed=0)
    files = json.loads((study_dir / "study.json").read_text())["files"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, _ = read_pair_plan(study_dir / files["mri"], study_dir / files["other"], modality=kind)
    out = []
    for batch in prepared_slices(plan):
        for _, pair in batch:
            a, b = (pad_to_multiple(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None])
                    for x in (pair.mri_y, pair.other_y))
            out.append((a, b))
    return out


def study_timing(model: torch.nn.Module, kinds: list[str], folder: Path, repeats: int,
                 dev: torch.device) -> dict:
    """ms per whole study, sparse ``auto`` against ``never`` (the dense masked body),
    alternating study by study so that load changes hit both alike; the median over
    ``repeats`` passes. Also the largest fused difference and the sparse body's use."""
    auto, dense = model.fold(sparse="auto"), model.fold(sparse="never")  # type: ignore[operator]
    out: dict = {}
    for kind in kinds:
        slices = [(a.to(dev), b.to(dev)) for a, b in study_slices(kind, folder)]
        diff, used = 0.0, {"mri": 0, "functional": 0}
        with torch.no_grad():
            for a, b in slices:
                fa = auto.fuse(a, b, return_bodies=False).fused
                fd = dense.fuse(a, b, return_bodies=False).fused
                diff = max(diff, float((fa - fd).abs().max()))
                for br in used:
                    used[br] += auto.last_body_paths.get(br, "").startswith("sparse (")
            times: dict[str, list[float]] = {"auto": [], "never": []}
            for r in range(repeats):
                order = ("auto", "never") if r % 2 == 0 else ("never", "auto")
                for name in order:
                    m = auto if name == "auto" else dense
                    t0 = time.perf_counter()
                    for a, b in slices:
                        m.fuse(a, b, return_bodies=False)
                    times[name].append(time.perf_counter() - t0)
        ms = {k: float(np.median(v)) * 1000 for k, v in times.items()}
        out[kind] = {"slices": len(slices), "slice_shape": list(slices[0][0].shape[-2:]),
                     "ms_per_study": ms, "saving": 1 - ms["auto"] / ms["never"],
                     "max_abs_fused_difference": diff,
                     "slices_with_sparse_body": used}
    return out


def report(weights: Path, data: Path, device: str = "cpu", repeats: int = 3,
           studies: list[str] | None = None, study_folder: Path | None = None) -> dict:
    from medfuse.engine import build_model, read_state_dict, select_device
    from medfuse.training.data import load_split
    from medfuse.training.losses import lattice_index, signal_support

    dev = select_device(device)
    val = load_split(data, "val")
    state = read_state_dict(weights)
    model = build_model(state, weights).to(dev)
    forced = build_model(forced_all_principal(state), weights).to(dev)
    counts = model.sparse_channel_counts()
    fused, mm, mf = fused_and_masks(model, val, dev)
    fused_forced, fm, ff = fused_and_masks(forced, val, dev)
    assert bool(fm.all()) and bool(ff.all())
    a = torch.from_numpy(val.mri).unsqueeze(1)
    b = torch.from_numpy(val.other).unsqueeze(1)
    sup = signal_support(a, b)
    out: dict = {
        "weights": str(weights),
        "sparse_channels": counts,
        "sparse_share": {k: float(np.mean(v) / model.FEATURES) for k, v in counts.items()},
        "lattice_index": {"mri": lattice_index(mm), "functional": lattice_index(mf),
                          "smooth_reference_support": lattice_index(sup)},
        "principal": {},
        "ablation_all_principal": {"learned": scores(val, fused), "all_principal": scores(val, fused_forced),
                                   **change(fused, fused_forced, mm, mf, sup)},
    }
    out["tied_share_of_support"] = tied_share(model, val, dev)
    for task in sorted(set(val.tasks)):
        idx = [k for k, t in enumerate(val.tasks) if t == task]
        s = sup[idx]
        out["principal"][task] = {
            f"{br}_{what}": float(v)
            for br, m in (("mri", mm[idx]), ("functional", mf[idx]))
            for what, v in (("of_image", m.mean()), ("of_support", (m * s).sum() / s.sum()),
                            ("outside_support", (m * (1 - s)).sum() / (1 - s).sum().clamp_min(1)))
        }
    folded = {
        "sparse": model.fold(sparse="always"),
        "dense_masked": model.fold(sparse="never"),
        "auto": model.fold(sparse="auto"),
        "all_principal": forced.fold(sparse="never"),
    }
    out["ms_per_pair"] = timing(folded, val, dev, repeats)
    if studies:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out["ms_per_study"] = study_timing(model, studies, study_folder or Path(tmp), repeats, dev)
    out["device"] = str(dev)
    out["threads"] = torch.get_num_threads()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", type=Path)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/harvard"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--study", action="append", choices=["pet", "spect", "ct"], default=[],
                    help="also time whole generated 1 mm studies of this kind")
    ap.add_argument("--study-folder", type=Path,
                    help="where the studies are kept (generated once); a temporary folder by default")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rep = report(a.weights, a.data, a.device, a.repeats, a.study, a.study_folder)
    text = json.dumps(rep, indent=1)
    if a.json:
        a.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
