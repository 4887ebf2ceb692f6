"""One output's QC page: a single HTML file that needs nothing but a browser.

The page carries its pixels inside itself (PNG data URIs: a canvas may read pixels of an
embedded image, while images loaded from ``file://`` taint it) and its script and style
inline, so it opens offline, from any folder, and makes no request. It shows:

* MRI | fused | other and a registration check, in three planes, one slider per plane, a
  linked cursor (a click in any panel moves the other planes there);
* an opacity slider from the MRI to the fused image;
* the MRI's edges over the other image, faded or as a checkerboard;
* a colour bar in the other image's units with the window used, and where colour stops;
* a maximum-intensity projection of a PET or SPECT;
* the provenance record's decisions and warnings in words.

The volumes come from :class:`~medfuse.report.collect.SliceCollector` (what was fused) and
the plan; the words from the provenance record.
"""

from __future__ import annotations

import base64
import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medfuse.report.collect import SliceCollector
from medfuse.report.words import decisions_in_words, inputs_in_words, score_of, score_threshold

if TYPE_CHECKING:
    from medfuse.fusion import FuseReport
    from medfuse.prepare.plan import FusionPlan

PLANES = ("axial", "coronal", "sagittal")
#: Longest side of the thumbnail the cohort index shows.
THUMB_SIDE = 96
#: Share of the MRI's strongest gradients drawn as its edges.
EDGE_FRACTION = 0.05


def _template(name: str) -> str:
    return resources.files("medfuse.report").joinpath("templates", name).read_text("utf-8")


def png_bytes(image: np.ndarray) -> bytes:
    """Grey (H, W) or RGB (H, W, 3) uint8 as PNG bytes (fast compression: these pages are
    written for every pair of a batch)."""
    import cv2

    pixels = image[..., ::-1] if image.ndim == 3 else image  # OpenCV writes BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def data_uri(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def mosaic(stack: np.ndarray) -> tuple[np.ndarray, int]:
    """A (slices, H, W[, 3]) stack tiled into one image, ``cols`` tiles a row (a browser
    canvas is limited in height, not in area)."""
    n, h, w = stack.shape[:3]
    cols = max(1, math.ceil(math.sqrt(n * h / max(w, 1))))
    rows = math.ceil(n / cols)
    out = np.zeros((rows * h, cols * w, *stack.shape[3:]), stack.dtype)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = stack[k]
    return out, cols


def _letter(vector: np.ndarray) -> str:
    """The patient direction a RAS vector points to most: R, L, A, P, S or I."""
    axis = int(np.argmax(np.abs(vector[:3])))
    return ("RL", "AP", "SI")[axis][0 if vector[axis] > 0 else 1]


def plane_maps(shape: tuple[int, int, int], affine: np.ndarray) -> list[dict[str, Any]]:
    """For each plane, how its (slice, row, column) indices map onto the collected stack's
    axes: JS computes a voxel's place from these, so a cursor set in one plane is found in
    the others. Taken from NumPy's own views, so the display convention of
    :func:`medfuse.io.geometry.stack_view` is followed, not re-derived."""
    from medfuse.io.geometry import stack_view, voxel_sizes

    base = np.zeros(shape, np.uint8)
    item = [shape[1] * shape[2], shape[2], 1]
    out = []
    for name in PLANES:
        view, aff = stack_view(base, affine, name)
        start = (view.__array_interface__["data"][0] - base.__array_interface__["data"][0])
        origin = list(np.unravel_index(start, shape)) if start else [0, 0, 0]
        axes, signs = [], []
        for st in view.strides:
            a = item.index(abs(st))
            axes.append(a)
            signs.append(1 if st > 0 else -1)
        sizes = voxel_sizes(aff)
        row, col = np.asarray(aff[:3, 1]), np.asarray(aff[:3, 2])
        out.append({
            "name": name, "shape": [int(v) for v in view.shape], "axes": axes, "signs": signs,
            "origin": [int(v) for v in origin], "spacing": [float(sizes[1]), float(sizes[2])],
            "letters": {"top": _letter(-row), "bottom": _letter(row), "left": _letter(-col),
                        "right": _letter(col)},
        })
    return out


def mri_edges(mri: np.ndarray) -> np.ndarray:
    """The MRI's strongest gradients (0 or 255), the outline drawn over the other image."""
    v = mri.astype(np.float32)
    if v.shape[0] > 1:
        grads = np.gradient(v)
    else:
        grads = np.gradient(v[0])
    mag = np.sqrt(sum(g * g for g in grads)).reshape(v.shape)
    nz = mag[mag > 0]
    if not nz.size:
        return np.zeros(mri.shape, np.uint8)
    level = float(np.quantile(nz, 1.0 - EDGE_FRACTION)) if nz.size > 10 else 0.0
    return np.where(mag > level, 255, 0).astype(np.uint8)


def units_of(plan: FusionPlan) -> str:
    """The other image's units as the colour bar states them."""
    if plan.in_suv:
        return "SUV"
    if plan.other.is_rgb or plan.other.format == "image":
        return "image intensity"
    if plan.modality == "ct":
        return "HU"
    facts = plan.other.suv
    units = str(getattr(facts, "units", "") or "").upper() if facts is not None else ""
    if units == "BQML":
        return "Bq/ml"
    if units:
        return units.lower()
    return "counts" if plan.modality == "spect" else "scanner units"


def colour_bar(plan: FusionPlan) -> dict[str, Any] | None:
    """The colour bar: the map's 256 colours, the window's ends and the floor, in units."""
    from medfuse.prepare.colormaps import pseudo_colour

    if plan.other.is_rgb:
        return None
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :]
    lut = pseudo_colour(ramp, plan.modality, plan.colormap) if plan.colour else ramp
    rgb = np.repeat(lut[..., None], 3, -1) if lut.ndim == 2 else lut
    bar = np.repeat((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), 12, axis=0)
    w = plan.other_window
    factor = plan.suv.factor if plan.in_suv and plan.suv is not None else 1.0
    floor = None if plan.floor is None else float(plan.floor) * float(factor or 1.0)
    return {"image": data_uri(bar), "low": float(w.low) * factor, "high": float(w.high) * factor,
            "units": units_of(plan), "floor": floor, "source": w.source}


def mip(plan: FusionPlan) -> dict[str, Any] | None:
    """A coronal maximum-intensity projection of a grey PET/SPECT volume on its own grid,
    through its window, dark on white as nuclear medicine shows it."""
    from medfuse.io.geometry import stack_view, voxel_sizes
    from medfuse.prepare.windowing import apply_window
    from medfuse.vocabulary import FUNCTIONAL

    o = plan.other
    if plan.two_d or plan.modality not in FUNCTIONAL or o.is_rgb or o.format == "image":
        return None
    view, aff = stack_view(o.data, o.affine, "coronal")
    peak = np.nanmax(np.asarray(view, np.float32), axis=0) if np.issubdtype(
        view.dtype, np.floating) else np.asarray(view.max(axis=0), np.float32)
    values = peak * np.float32(o.slope) + np.float32(o.inter)
    shown = 1.0 - apply_window(values, plan.other_window)
    image = (np.clip(shown, 0, 1) * 255 + 0.5).astype(np.uint8)
    sizes = voxel_sizes(aff)
    return {"image": data_uri(image), "aspect": float(sizes[1] / sizes[2]),
            "size": [int(image.shape[0]), int(image.shape[1])],
            "left": _letter(-np.asarray(aff[:3, 2])), "top": _letter(-np.asarray(aff[:3, 1]))}


def thumbnail(fused: np.ndarray) -> np.ndarray:
    """The middle fused slice, at most THUMB_SIDE pixels a side."""
    import cv2

    mid = fused[fused.shape[0] // 2]
    h, w = mid.shape[:2]
    scale = THUMB_SIDE / max(h, w)
    if scale < 1:
        mid = cv2.resize(mid, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    return mid


def page_data(report: FuseReport, stacks: tuple[np.ndarray, np.ndarray, np.ndarray],
              step: int, title: str) -> dict[str, Any]:
    """Everything the page script draws, as JSON values; ``stacks`` are the collected MRI,
    other and fused stacks, thinned by ``step``."""
    plan = report.plan
    mri, other, fused = stacks
    s = max(1, step)
    affine = np.asarray(plan.mri_stack.affine, np.float64) @ np.diag([s, s, s, 1.0])
    planes = plane_maps(mri.shape, affine) if mri.shape[0] > 1 else plane_maps(
        mri.shape, affine)[:1]
    if mri.shape[0] == 1:
        planes[0]["name"] = "slice"
    images = {}
    cols = 1
    for key, stack in (("mri", mri), ("other", other), ("fused", fused),
                       ("edges", mri_edges(mri))):
        tiled, cols = mosaic(stack)
        images[key] = data_uri(tiled)
    record = report.provenance
    return {
        "title": title,
        "output": [str(p) for p in report.outputs],
        "created": record.get("created"),
        "modality": plan.modality,
        "dims": [int(v) for v in mri.shape],
        "tiles": cols,
        "step": s,
        "affine": affine.round(6).tolist(),
        "planes": planes,
        "images": images,
        "colorbar": colour_bar(plan),
        "mip": mip(plan),
        "score": score_of(record),
        "threshold": score_threshold(record),
        "summary": record.get("summary", ""),
        "decisions": decisions_in_words(record),
        "inputs": inputs_in_words(record),
        "warnings": list(record.get("warnings") or []),
        "timings": record.get("timings_s") or {},
        "weights_sha256": (record.get("engine") or {}).get("weights_sha256"),
    }


def render_page(data: dict[str, Any]) -> str:
    """The page as HTML text: template, style, script and data inline."""
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (_template("page.html")
            .replace("{{title}}", html.escape(str(data["title"])))
            .replace("{{style}}", _template("report.css"))
            .replace("{{script}}", _template("page.js"))
            .replace("{{data}}", payload))


def write_pair_page(report: FuseReport, collector: SliceCollector, folder: Path,
                    name: str, title: str) -> dict[str, Any]:
    """Write ``NAME.html`` and ``NAME.png`` (its thumbnail) into ``folder`` (a staging
    folder the caller renames into place) and return what the cohort index lists."""
    mri, other, fused, _ = collector.stacks(1 if report.plan.two_d else len(report.plan))
    data = page_data(report, (mri, other, fused), collector.step, title)
    page = folder / f"{name}.html"
    page.write_text(render_page(data), encoding="utf-8")
    (folder / f"{name}.png").write_bytes(png_bytes(thumbnail(fused)))
    return {"page": page.name, "thumb": f"{name}.png", "score": data["score"],
            "warnings": data["warnings"]}


__all__ = ["PLANES", "page_data", "plane_maps", "render_page", "write_pair_page"]
