"""Region masks: where each branch of GeSeNet marks its input as principal.

The network's region mask module splits each branch's feature map into a principal region
(processed by every channel) and a redundant one (processed only by the channels a layer
keeps dense). :func:`region_masks` runs one slice of any supported pair through the one
fusion path with the masks switched on and writes what a reader needs to judge them: both
hard masks, each overlaid on its input, and ``masks.json`` with the principal fractions and
the number of sparse channels per masked layer.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medfuse.errors import OutputError, UsageError

if TYPE_CHECKING:
    from medfuse.engine import Engine

#: Files ``region_masks`` writes into its output folder.
MASK_FILES = ("mask_mri.png", "mask_other.png", "overlay_mri.png", "overlay_other.png",
              "masks.json")
#: masks.json keys written before the second input was called "other" everywhere; still read.
LEGACY_KEYS = {"functional_branch": "other_branch"}


@dataclass
class MaskReport:
    """What :func:`region_masks` found and wrote."""

    mri: str
    other: str
    modality: str
    weights: str
    shape: tuple[int, int]
    slice_index: int | None
    axis: str
    principal_fraction: dict[str, float]  # branch ("mri", "other") -> fraction
    sparse_channels: dict[str, list[int]]  # branch -> sparse channels per masked layer
    channels_per_layer: int
    outputs: list[Path] = field(default_factory=list)
    #: Warnings raised while planning (a guessed modality, a doubtful registration).
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The masks.json schema."""
        return {
            "mri": self.mri,
            "other": self.other,
            "modality": self.modality,
            "weights": self.weights,
            "shape": list(self.shape),
            "slice": self.slice_index,
            "axis": self.axis,
            **{
                f"{branch}_branch": {
                    "principal_fraction": self.principal_fraction[branch],
                    "sparse_channels_per_layer": self.sparse_channels[branch],
                }
                for branch in ("mri", "other")
            },
            "channels_per_layer": self.channels_per_layer,
        }


def read_mask_json(path: str | Path) -> dict[str, Any]:
    """Read a masks.json, also one written with the older key ``functional_branch``."""
    data = json.loads(Path(path).read_text())
    for old, new in LEGACY_KEYS.items():
        if old in data and new not in data:
            data[new] = data.pop(old)
    return data


def _sparse_counts(engine: Engine) -> tuple[dict[str, list[int]], int]:
    """Sparse channels per masked layer of each branch, and channels per layer."""
    counts = engine.model.sparse_channel_counts()
    other = counts.get("other", counts.get("functional", []))
    width = int(engine.model.FEATURES)
    return {"mri": list(counts["mri"]), "other": list(other)}, width


def region_masks(
    mri: Path,
    other: Path,
    output: Path,
    engine_loader: Callable[[], Engine],
    *,
    modality: str | None = None,
    resize: bool = False,
    slice_index: int | None = None,
    axis: str | None = None,
    window: str | None = None,
    mri_window: str | None = None,
    colormap: str | None = None,
    series: tuple[str, ...] = (),
    volume_index: int | None = None,
    force: bool = False,
) -> MaskReport:
    """Write both branches' hard spatial masks for one slice of a pair, their overlays and
    masks.json into ``output`` (a folder). Volumes without ``slice_index`` use their middle
    slice. The five files are staged and committed as one set: all five or none."""
    from medfuse.fusion import fuse_plan, read_pair_plan
    from medfuse.io.images import write_image
    from medfuse.io.outputs import OutputSet, check_output
    from medfuse.render import overlay

    if output.exists() and not output.is_dir():
        raise UsageError(f"{output} exists and is not a folder")
    inputs = (mri, other)
    for name in MASK_FILES:
        check_output(output / name, force, inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, fixed = read_pair_plan(
            mri, other, modality=modality, axis=axis, slice_index=slice_index,
            colormap=colormap, window=window, mri_window=mri_window, series=series,
            volume_index=volume_index, resize=resize,
        )
    index = 0 if plan.two_d else (fixed[0] if fixed else len(plan) // 2)
    engine = engine_loader()
    [(_, res)] = list(fuse_plan(plan, engine, [index], with_masks=True))
    assert res.mask_mri is not None and res.mask_other is not None
    mri_plane = plan.mri_slab(index, index + 1)[0]
    other_plane = plan.other_slab(index, index + 1)[0]
    counts, width = _sparse_counts(engine)
    report = MaskReport(
        mri=str(mri), other=str(other), modality=plan.modality,
        weights=str(getattr(engine, "weights_path", None) or ""),
        shape=(int(mri_plane.shape[0]), int(mri_plane.shape[1])),
        slice_index=None if plan.two_d else index, axis=plan.axis,
        principal_fraction={"mri": float(res.mask_mri.mean()),
                            "other": float(res.mask_other.mean())},
        sparse_channels=counts, channels_per_layer=width,
        warnings=[str(w.message) for w in caught],
    )
    # All five are staged, then renamed as one set: a failure on any of them (a full
    # disk, an immutable file) leaves none written and what was there before in place.
    together = OutputSet()
    try:
        staged = {name: together.path_for(output / name) for name in MASK_FILES}
        write_image(staged["mask_mri.png"], res.mask_mri)
        write_image(staged["mask_other.png"], res.mask_other)
        write_image(staged["overlay_mri.png"], overlay(mri_plane, res.mask_mri))
        write_image(staged["overlay_other.png"], overlay(other_plane, res.mask_other))
        try:
            staged["masks.json"].write_text(json.dumps(report.to_json(), indent=2) + "\n")
        except OSError as exc:
            raise OutputError(f"cannot write {output / 'masks.json'}: "
                              f"{exc.strerror or exc}") from exc
        report.outputs = together.commit()
    except BaseException:
        together.abort()
        raise
    return report


__all__ = ["MASK_FILES", "MaskReport", "read_mask_json", "region_masks"]
