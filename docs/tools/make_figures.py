"""Make the figures in docs/ from the Harvard val split (not shipped; needs ../shared).

    python docs/tools/make_figures.py labels  --data ../shared/data/harvard
    python docs/tools/make_figures.py compare --data ../shared/data/harvard \
        --ref ../shared/reference/reference-checkpoint.pth --ours weights/gesenet-medfuse.pt
    python docs/tools/make_figures.py masks   --data ../shared/data/harvard --ours weights/gesenet-medfuse.pt

Each figure is a grid of labelled 256x256 tiles written to docs/img/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from medfuse.training.data import TASKS

PICKS = {"MRI_CT": 0, "MRI_PET": 5, "MRI_SPECT": 3}  # one val pair per task (sorted index)
LABEL_COLOURS = np.array([[0, 0, 0], [40, 90, 200], [240, 200, 60], [230, 40, 40]], np.uint8)


def tile(img: np.ndarray, caption: str) -> Image.Image:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(arr).convert("RGB")
    ImageDraw.Draw(im).text((4, 4), caption, fill=(255, 255, 255))
    return im


def grid(rows: list[list[Image.Image]], out: Path) -> None:
    h, w = rows[0][0].height, rows[0][0].width
    canvas = Image.new("RGB", (w * max(len(r) for r in rows), h * len(rows)))
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            canvas.paste(im, (j * w, i * h))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    print(out)


def val_pair(data: Path, task: str) -> tuple[Path, Path]:
    mdir = data / task / "val" / "MRI"
    name = sorted(p.name for p in mdir.glob("*.png"))[PICKS[task]]
    return mdir / name, data / task / "val" / TASKS[task] / name


def labels_figure(data: Path, out: Path) -> None:
    from medfuse.io.images import read_image
    from medfuse.prepare.pair import prepare_pair
    from medfuse.training.labels import pseudo_labels

    rows = []
    for task in TASKS:
        m, o = val_pair(data, task)
        p = prepare_pair(m, o, modality=TASKS[task].lower())
        lab = pseudo_labels(p.mri_y, p.other_y, TASKS[task].lower(), p.chroma[0] if p.chroma else None)
        rows.append([tile(p.mri_y, f"MRI {m.stem}"), tile(read_image(o).pixels, TASKS[task]),
                     tile(LABEL_COLOURS[lab], "pseudo-labels")])
    grid(rows, out / "pseudo_labels.png")


def compare_figure(data: Path, ref: Path, ours: Path, out: Path) -> None:
    from medfuse.engine import load_model
    from medfuse.io.images import read_image
    from medfuse.prepare.pair import fuse

    e_ref, e_ours = load_model(ref, "cpu"), load_model(ours, "cpu")
    rows = []
    for task in TASKS:
        m, o = val_pair(data, task)
        rows.append([tile(read_image(m).pixels, f"MRI {m.stem}"), tile(read_image(o).pixels, TASKS[task]),
                     tile(fuse(m, o, e_ref).image, "reference checkpoint"),
                     tile(fuse(m, o, e_ours).image, "medfuse (bundled)")])
    grid(rows, out / "compare_val.png")


def masks_figure(data: Path, ours: Path, out: Path) -> None:
    from medfuse.cli.fusion import _overlay
    from medfuse.engine import load_model
    from medfuse.io.images import read_image
    from medfuse.prepare.pair import fuse

    eng = load_model(ours, "cpu")
    rows = []
    for task in TASKS:
        m, o = val_pair(data, task)
        r = fuse(m, o, eng, with_masks=True)
        a, b = read_image(m).pixels, read_image(o).pixels
        rows.append([tile(_overlay(a, r.mask_mri), f"MRI branch {r.mask_mri.mean():.0%}"),
                     tile(_overlay(b, r.mask_functional), f"{TASKS[task]} branch {r.mask_functional.mean():.0%}"),
                     tile(r.mask_mri, "mask MRI"), tile(r.mask_functional, f"mask {TASKS[task]}")])
    grid(rows, out / "masks_val.png")


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
