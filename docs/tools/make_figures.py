"""Make the figures in docs/ from the Harvard val split (not shipped; needs ../shared).

    python docs/tools/make_figures.py labels  --data ../shared/data/harvard
    python docs/tools/make_figures.py compare --data ../shared/data/harvard \\
        --ref ../shared/reference/reference-checkpoint.pth --ours weights/gesenet-medfuse.pt
    python docs/tools/make_figures.py masks   --data ../shared/data/harvard --ours weights/gesenet-medfuse.pt

Each figure is one row per task of captioned 256x256 tiles, drawn by medfuse.render (the
module behind the ``masks`` overlays and ``--preview`` montages) and written to docs/img/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medfuse.vocabulary import TABLE, TASKS

PICKS = {"MRI_CT": 0, "MRI_PET": 5, "MRI_SPECT": 3}  # one val pair per task (sorted index)
LABEL_COLOURS = np.array([[0, 0, 0], [40, 90, 200], [240, 200, 60], [230, 40, 40]], np.uint8)


def folder(task: str) -> str:
    """The other image's folder name in a task (CT, PET, SPECT)."""
    return TABLE[TASKS[task]].folder


def figure(rows: list[list[tuple[np.ndarray, str]]], out: Path) -> None:
    """Captioned tiles, one row per task, written as a PNG."""
    from medfuse.io.images import write_image
    from medfuse.render import montage

    tiles = [t for row in rows for t, _ in row]
    captions = [c for row in rows for _, c in row]
    write_image(out, montage(tiles, captions, columns=max(len(r) for r in rows)), force=True)
    print(out)


def val_pair(data: Path, task: str) -> tuple[Path, Path]:
    mdir = data / task / "val" / "MRI"
    name = sorted(p.name for p in mdir.glob("*.png"))[PICKS[task]]
    return mdir / name, data / task / "val" / folder(task) / name


def labels_figure(data: Path, out: Path) -> None:
    from medfuse.io.images import read_image
    from medfuse.prepare.pair import prepare_pair
    from medfuse.training.labels import pseudo_labels

    rows = []
    for task, modality in TASKS.items():
        m, o = val_pair(data, task)
        p = prepare_pair(m, o, modality=modality)
        lab = pseudo_labels(p.mri_y, p.other_y, modality, p.chroma[0] if p.chroma else None)
        rows.append([(p.mri_y, f"MRI {m.stem}"), (read_image(o).pixels, folder(task)),
                     (LABEL_COLOURS[lab], "pseudo-labels")])
    figure(rows, out / "pseudo_labels.png")


def compare_figure(data: Path, ref: Path, ours: Path, out: Path) -> None:
    from medfuse.engine import load_model
    from medfuse.fusion import fuse
    from medfuse.io.images import read_image

    e_ref, e_ours = load_model(ref, "cpu"), load_model(ours, "cpu")
    rows = []
    for task in TASKS:
        m, o = val_pair(data, task)
        rows.append([(read_image(m).pixels, f"MRI {m.stem}"), (read_image(o).pixels, folder(task)),
                     (fuse(m, o, e_ref).image, "reference checkpoint"),
                     (fuse(m, o, e_ours).image, "medfuse (bundled)")])
    figure(rows, out / "compare_val.png")


def masks_figure(data: Path, ours: Path, out: Path) -> None:
    """Both branches' hard spatial masks on one val pair per task, then on the slice
    through the hot lesion of a generated PET and SPECT study (default windows)."""
    from medfuse.engine import load_model
    from medfuse.fusion import fuse
    from medfuse.io.images import read_image
    from medfuse.render import overlay

    eng = load_model(ours, "cpu")
    rows = []
    for task in TASKS:
        m, o = val_pair(data, task)
        r = fuse(m, o, eng, with_masks=True)
        assert r.mask_mri is not None and r.mask_other is not None
        a, b = read_image(m).pixels, read_image(o).pixels
        rows.append([(overlay(a, r.mask_mri), f"MRI branch {r.mask_mri.mean():.0%}"),
                     (overlay(b, r.mask_other), f"{folder(task)} branch {r.mask_other.mean():.0%}"),
                     (r.mask_mri, "mask MRI"), (r.mask_other, f"mask {folder(task)}")])
    rows += study_mask_rows(eng)
    figure(rows, out / "masks_val.png")


def study_mask_rows(eng: object) -> list[list[tuple[np.ndarray, str]]]:
    """Mask rows for a 2 mm PET and SPECT study (MNI152 with nilearn, else the phantom),
    on the axial slice through each study's first lesion, through ``medfuse.masks``."""
    import tempfile

    from medfuse.io.images import read_image
    from medfuse.masks import region_masks
    from medfuse.studies import generate_study

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("pet", "spect"):
            study = generate_study(kind, Path(tmp) / kind, resolution=2, seed=0)
            inv = np.linalg.inv(np.asarray(study.mri_affine))
            centre = inv @ np.r_[np.asarray(study.lesions[0].centre_mm), 1.0]
            z = int(round(float(centre[2])))
            d = study.directory
            res = Path(tmp) / f"{kind}-masks"
            rep = region_masks(d / study.files["mri"], d / study.files["other"], res,
                               lambda: eng, slice_index=z, axis="axial")  # type: ignore[arg-type, return-value]
            f = rep.principal_fraction

            def tile(name: str, folder: Path = res) -> np.ndarray:  # 2 mm shown as 2x2 px
                px = read_image(folder / name).pixels
                return np.repeat(np.repeat(px, 2, axis=0), 2, axis=1)

            rows.append([
                (tile("overlay_mri.png"), f"study MRI {f['mri']:.0%}"),
                (tile("overlay_other.png"), f"study {kind.upper()} {f['other']:.0%}"),
                (tile("mask_mri.png"), "mask MRI"),
                (tile("mask_other.png"), f"mask {kind.upper()}")])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["labels", "compare", "masks"])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/harvard"))
    ap.add_argument("--ref", type=Path)
    ap.add_argument("--ours", type=Path, default=Path("weights/gesenet-medfuse.pt"))
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    a = ap.parse_args()
    if a.what == "labels":
        labels_figure(a.data, a.out)
    elif a.what == "compare":
        compare_figure(a.data, a.ref, a.ours, a.out)
    else:
        masks_figure(a.data, a.ours, a.out)


if __name__ == "__main__":
    main()
