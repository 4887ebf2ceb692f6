"""``fuse_volume``: the in-memory form of the fusion path, Volume in, Volume out.

Notebooks, the napari plugin and anything else that already holds its images as
:class:`~medfuse.io.volume.Volume` objects call this instead of writing files for
:func:`medfuse.fusion.fuse_files`. It runs the same plan, the same prepared slices and the
same engine, and lays the fused slices out on the MRI grid exactly as the NIfTI writer does
(RGB as uint8, grey as uint16 with slope 1/65535), so the two agree voxel for voxel.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from medfuse.colour import DEFAULT_GAMUT_MAP
from medfuse.io.volume import Volume

if TYPE_CHECKING:
    from collections.abc import Callable

    from medfuse.engine import Engine
    from medfuse.prepare.plan import FusionPlan

#: Scale of a grey fused volume stored as uint16, as the NIfTI writer stores it.
GREY_SLOPE = 1.0 / 65535.0


def fuse_volume(
    mri: Volume,
    other: Volume,
    engine: Engine | None = None,
    *,
    modality: str | None = None,
    axis: str | None = None,
    colormap: str | None = None,
    window: str | None = None,
    mri_window: str | None = None,
    floor: str | None = None,
    register: str | None = None,
    gamut_map: str = DEFAULT_GAMUT_MAP,
    allow_non_mr: bool = False,
    stretch: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Volume:
    """Fuse two volumes in memory: the fused volume on the MRI grid with the MRI's affine.

    The options are the CLI's, as text where the CLI takes text (``window="suv:0:8"``,
    ``floor="none"``), so one spelling works everywhere. Colour results are ``(i, j, k, 3)``
    uint8; grey results (CT, ``colormap="none"``) ``(i, j, k)`` uint16 with
    ``slope = 1/65535``. Warnings raised while planning (a guessed modality, a doubtful
    registration) are re-issued as Python warnings and listed in ``extra["warnings"]``;
    ``extra["plan"]`` holds the plan's decisions (what the provenance record calls
    ``decisions``). ``progress`` is called with (slices done, slices in all).
    """
    from medfuse.fusion import DEFAULT_BATCH, fuse_prepared, parse_floor, prepared_slices
    from medfuse.io.geometry import stack_view
    from medfuse.io.images import to_uint
    from medfuse.prepare.plan import check_plan_options, plan_fusion
    from medfuse.prepare.windowing import parse_window

    check_plan_options(axis, modality, colormap, gamut_map)
    other_w = parse_window(window, "--window")
    mri_w = parse_window(mri_window, "--mri-window")
    floor_value, transparency = parse_floor(floor)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = plan_fusion(mri, other, axis, modality, colormap, mri_w, other_w,
                           allow_non_mr=allow_non_mr, floor=floor_value,
                           transparency=transparency, register=register, gamut_map=gamut_map)
    notes = [str(w.message) for w in caught]
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if engine is None:
        from medfuse.engine import load_model

        engine = load_model()
    data = _allocate(plan)
    views = [stack_view(v, plan.mri.affine, plan.axis)[0] for v in _channels(data)]
    n = 1 if plan.two_d else len(plan)
    done = 0
    size = getattr(engine, "batch_size", None) or DEFAULT_BATCH
    for chunk in prepared_slices(plan, None, size):
        results = fuse_prepared([p for _, p in chunk], engine, False, stretch)
        for (index, _), result in zip(chunk, results):
            _put(views, index, result.image, plan.colour, to_uint)
            done += 1
            if progress is not None:
                progress(done, n)
    return Volume(
        data=data, affine=np.asarray(plan.mri.affine, np.float64).copy(), path=None,
        format=plan.mri.format,
        modality=None, slope=1.0 if plan.colour else GREY_SLOPE,
        has_geometry=plan.mri.has_geometry, dicom=plan.mri.dicom,
        description=f"medfuse MRI+{plan.modality.upper()} fused",
        bit_depth=8 if plan.colour else 16,
        extra={"plan": plan.decisions(), "warnings": notes, "summary": plan.describe()},
    )


def mask_volumes(
    mri: Volume,
    other: Volume,
    engine: Engine,
    *,
    modality: str | None = None,
    axis: str | None = None,
    colormap: str | None = None,
    window: str | None = None,
    mri_window: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Both branches' hard spatial masks over the whole MRI grid (``medfuse masks`` gives
    one slice with overlays): ``(mri_mask, other_mask)``, uint8 volumes in the MRI's voxel
    order, 1 where the branch is principal and 2 where it is redundant (0 is left for
    "no label" in viewers that draw labels)."""
    from medfuse.fusion import fuse_plan
    from medfuse.io.geometry import stack_view
    from medfuse.prepare.plan import plan_fusion
    from medfuse.prepare.windowing import parse_window

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_fusion(mri, other, axis, modality, colormap,
                           parse_window(mri_window, "--mri-window"),
                           parse_window(window, "--window"))
    out = (np.zeros(plan.mri.shape, np.uint8), np.zeros(plan.mri.shape, np.uint8))
    views = [stack_view(v, plan.mri.affine, plan.axis)[0] for v in out]
    for index, result in fuse_plan(plan, engine, with_masks=True):
        for view, mask in zip(views, (result.mask_mri, result.mask_other)):
            assert mask is not None
            view[index] = np.where(mask > 0.5, 1, 2)
    return out


def _allocate(plan: FusionPlan) -> np.ndarray:
    shape = plan.mri.shape
    return np.zeros((*shape, 3), np.uint8) if plan.colour else np.zeros(shape, np.uint16)


def _channels(data: np.ndarray) -> list[np.ndarray]:
    return [data[..., c] for c in range(3)] if data.ndim == 4 else [data]


def _put(views: list[np.ndarray], index: int, image: np.ndarray, colour: bool,
         to_uint: Callable[[np.ndarray, int], np.ndarray]) -> None:
    """One fused slice into the stack views, quantised as the NIfTI writer quantises it."""
    if colour:
        rgb = to_uint(image if image.ndim == 3 else np.repeat(image[..., None], 3, -1), 8)
        for c, view in enumerate(views):
            view[index] = rgb[..., c]
    else:
        grey = image if image.ndim == 2 else image.mean(axis=-1)
        views[0][index] = to_uint(grey, 16)


__all__ = ["GREY_SLOPE", "fuse_volume", "mask_volumes"]
