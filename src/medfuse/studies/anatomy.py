"""The head a study is generated from: tissue fractions and a T1 image on one RAS grid.

Two sources, one result type (:class:`Anatomy`):

* ``mni``: the MNI ICBM152 2009a symmetric templates that nilearn ships in its package data
  (T1, grey and white matter probabilities, brain mask; no download), so studies carry real
  cortical folding, deep nuclei and ventricles. The templates are skull-stripped, so CSF,
  skull and scalp are added as shells around a smoothed brain envelope (2 mm CSF, 6.5 mm
  skull, 5.5 mm scalp: adult values). nilearn is the optional extra ``medfuse[studies]``.
* ``phantom``: nested ellipsoids (scalp, skull, CSF, folded grey matter, white matter,
  ventricles) in the same world box, so everything works without nilearn and tests can
  use any voxel size (4 mm keeps them fast).

Both grids are the MNI box (x -98..98, y -134..98, z -72..116 mm, RAS, axis-aligned), so a
lesion placed at MNI coordinates lands in the brain whichever source is used.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import numpy as np

from medfuse.errors import UsageError

#: Tissue classes in label order (label = index); fractions exist for all but ``air``.
TISSUES: tuple[str, ...] = ("air", "scalp", "skull", "csf", "gm", "wm")
#: World box of the MNI152 grids (RAS mm, voxel centres), shared by the phantom.
MNI_ORIGIN = (-98.0, -134.0, -72.0)
MNI_EXTENT = (196.0, 232.0, 188.0)
#: Relative T1 signal of the tissues the templates lack (template scale: WM ~0.87, GM ~0.65).
T1_OUTER = {"csf": 0.25, "skull": 0.05, "scalp": 0.80}
#: Phantom T1 signal per tissue (same scale).
T1_PHANTOM = {"scalp": 0.80, "skull": 0.05, "csf": 0.25, "gm": 0.65, "wm": 0.87}
#: Shell boundaries outside the brain envelope, in mm from its surface.
CSF_MM, SKULL_MM, SCALP_MM = 2.0, 8.5, 14.0
#: nilearn is the optional extra that brings the MNI templates.
EXTRA = "studies"


@dataclass
class Anatomy:
    """Tissue fractions and a T1 image on one axis-aligned RAS grid.

    ``fractions`` maps each tissue but air to float32 partial-volume fractions in [0, 1]
    (their sum is at most 1; the rest is air); ``t1`` is a T1-weighted image in [0, 1];
    ``affine`` maps voxel indices to RAS mm.
    """

    t1: np.ndarray
    fractions: dict[str, np.ndarray]
    affine: np.ndarray
    source: str
    resolution: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.t1.shape)  # type: ignore[return-value]

    def labels(self) -> np.ndarray:
        """The dominant tissue of each voxel as a label (index into TISSUES), uint8."""
        stack = [1.0 - self.total()] + [self.fractions[t] for t in TISSUES[1:]]
        return np.argmax(np.stack(stack), axis=0).astype(np.uint8)

    def total(self) -> np.ndarray:
        """Sum of the tissue fractions (1 inside the head, 0 in air)."""
        return np.clip(sum(self.fractions[t] for t in TISSUES[1:]), 0.0, 1.0)  # type: ignore[return-value]

    def mix(self, values: dict[str, float], air: float = 0.0) -> np.ndarray:
        """Partial-volume image: each voxel the fraction-weighted sum of tissue values."""
        out = np.full(self.shape, air, dtype=np.float32) * (1.0 - self.total())
        for tissue in TISSUES[1:]:
            out += np.float32(values[tissue]) * self.fractions[tissue]
        return out.astype(np.float32)

    def world(self) -> np.ndarray:
        """RAS mm of every voxel centre, (3, i, j, k) float32."""
        idx = np.indices(self.shape, dtype=np.float32)
        a = self.affine.astype(np.float32)
        return np.einsum("ij,j...->i...", a[:3, :3], idx) + a[:3, 3].reshape(3, 1, 1, 1)


def nilearn_available() -> bool:
    """Whether the MNI templates can be loaded (nilearn installed)."""
    return importlib.util.find_spec("nilearn") is not None


def load_anatomy(resolution: float = 2, source: str = "auto") -> Anatomy:
    """The head at ``resolution`` mm: ``mni`` (needs nilearn, 1 or 2 mm), ``phantom`` (any
    voxel size), or ``auto`` (MNI when nilearn is installed and the size is 1 or 2 mm)."""
    key = source.strip().lower()
    if key == "auto":
        key = "mni" if nilearn_available() and float(resolution) in (1.0, 2.0) else "phantom"
    if key == "mni":
        if float(resolution) not in (1.0, 2.0):
            raise UsageError(f"the MNI templates come at 1 or 2 mm, not {resolution} mm")
        if not nilearn_available():
            raise UsageError("the MNI anatomy needs nilearn: pip install 'medfuse[studies]' "
                             "(or use the built-in phantom)")
        return mni_anatomy(int(resolution))
    if key == "phantom":
        if not 0.5 <= float(resolution) <= 8:
            raise UsageError(f"phantom resolution {resolution} mm: choose 0.5 to 8 mm")
        return phantom_anatomy(float(resolution))
    raise UsageError(f"anatomy {source!r}: choose auto, mni or phantom")


def _box_affine(resolution: float) -> tuple[tuple[int, int, int], np.ndarray]:
    shape = tuple(int(round(e / resolution)) + 1 for e in MNI_EXTENT)
    affine = np.diag([resolution, resolution, resolution, 1.0])
    affine[:3, 3] = MNI_ORIGIN
    return shape, affine  # type: ignore[return-value]


def _within(dist: np.ndarray, depth: float, resolution: float) -> np.ndarray:
    """Fraction of each voxel closer than ``depth`` mm to the surface that ``dist`` (mm of
    the voxel centre outside it, 0 inside) is measured from: a linear partial-volume ramp
    one voxel wide, centred on the boundary."""
    return np.clip(0.5 + (depth + 0.5 * resolution - dist) / resolution, 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=2)
def mni_anatomy(resolution: int = 2) -> Anatomy:
    """The MNI152 2009a templates with CSF, skull and scalp shells around the brain.

    Cached: loading and resampling the templates takes about 2 s at 2 mm, and tests and the
    benchmark generate several studies from one head.
    """
    from nilearn import datasets
    from scipy import ndimage

    t1_img = datasets.load_mni152_template(resolution=resolution)
    affine = np.asarray(t1_img.affine, dtype=np.float64)
    t1 = np.asarray(t1_img.get_fdata(), dtype=np.float32)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=resolution).get_fdata(),
                    dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=resolution).get_fdata(),
                    dtype=np.float32)
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=resolution).get_fdata()) > 0.5
    gm = np.clip(gm, 0, 1) * mask
    wm = np.clip(wm, 0, 1) * mask
    over = np.maximum(gm + wm, 1.0)
    gm, wm = gm / over, wm / over
    # The envelope: the brain with its sulci closed (what the inner skull surface follows).
    sigma = 3.0 / resolution
    envelope = ndimage.binary_fill_holes((ndimage.gaussian_filter(mask.astype(np.float32), sigma)
                                          > 0.3) | mask)
    outside = ndimage.distance_transform_edt(~envelope, sampling=resolution).astype(np.float32)
    csf_in = np.where(envelope, 1.0 - gm - wm, 0.0).astype(np.float32)
    csf_shell = np.where(envelope, 0.0, _within(outside, CSF_MM, resolution))
    skull = np.where(envelope, 0.0, _within(outside, SKULL_MM, resolution)) - csf_shell
    scalp = (np.where(envelope, 0.0, _within(outside, SCALP_MM, resolution))
             - csf_shell - skull)
    fractions = {
        "scalp": np.clip(scalp, 0, 1).astype(np.float32),
        "skull": np.clip(skull, 0, 1).astype(np.float32),
        "csf": np.clip(csf_in + csf_shell, 0, 1).astype(np.float32),
        "gm": gm.astype(np.float32),
        "wm": wm.astype(np.float32),
    }
    # T1: the template inside the brain mask (its own contrast and detail), tissue values
    # elsewhere.
    t1_full = np.where(mask, t1 / max(float(t1.max()), 1e-6), 0.0).astype(np.float32)
    for tissue, value in T1_OUTER.items():
        part = fractions[tissue] if tissue != "csf" else np.where(mask, 0.0, fractions["csf"])
        t1_full += np.float32(value) * part.astype(np.float32)
    return Anatomy(np.clip(t1_full, 0, 1), fractions, affine, "mni152-2009a", float(resolution))


def _ellipsoid(world: np.ndarray, centre: tuple[float, float, float],
               axes: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm, along the ray from the centre) of each point outside the ellipsoid,
    negative inside: a signed distance that is exact on the axes and close elsewhere."""
    rel = world - np.asarray(centre, np.float32).reshape(3, 1, 1, 1)
    rho = np.sqrt(sum((rel[i] / axes[i]) ** 2 for i in range(3)))
    radial = np.sqrt((rel**2).sum(axis=0))
    return (radial * (1.0 - 1.0 / np.maximum(rho, 1e-6))).astype(np.float32)


def _inside(signed: np.ndarray, resolution: float) -> np.ndarray:
    return np.clip(0.5 - signed / resolution, 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=4)
def phantom_anatomy(resolution: float = 2.0) -> Anatomy:
    """An analytic head in the MNI box: ellipsoidal scalp, skull and CSF, a grey-matter
    ribbon whose surfaces are folded (sulci and white-matter gyri), two ventricles, and a
    fixed smooth texture in the T1 so gradients have structure to follow."""
    from scipy import ndimage

    shape, affine = _box_affine(resolution)
    idx = np.indices(shape, dtype=np.float32)
    world = np.einsum("ij,j...->i...", affine[:3, :3].astype(np.float32), idx) + np.asarray(
        MNI_ORIGIN, np.float32).reshape(3, 1, 1, 1)
    del idx
    c = (0.0, -18.0, 16.0)
    rng = np.random.default_rng(12345)
    # Gyri: a fixed smooth random field (about 12 mm blobs) pushing surfaces in and out.
    fold = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape).astype(np.float32),
                                   4.0 / resolution)
    fold = np.tanh(fold / max(float(fold.std()), 1e-6)).astype(np.float32)
    head = _inside(_ellipsoid(world, c, (78, 98, 84)), resolution)
    skull_out = _inside(_ellipsoid(world, c, (72, 92, 78)), resolution)
    csf_out = _inside(_ellipsoid(world, c, (66, 86, 72)), resolution)
    # Folding only moves surfaces inwards, so every tissue stays nested in the one outside.
    brain = np.minimum(_inside(_ellipsoid(world, c, (65, 85, 71)) + 2.5 * (1 + fold), resolution),
                       csf_out)
    white = np.minimum(_inside(_ellipsoid(world, c, (55, 74, 60)) + 3.0 * (1 - fold), resolution),
                       brain)
    vents = np.maximum(_inside(_ellipsoid(world, (11, -12, 22), (6, 24, 10)), resolution),
                       _inside(_ellipsoid(world, (-11, -12, 22), (6, 24, 10)), resolution))
    vents = np.minimum(vents, white)
    fractions = {
        "scalp": np.clip(head - skull_out, 0, 1),
        "skull": np.clip(skull_out - csf_out, 0, 1),
        "csf": np.clip(csf_out - brain + vents, 0, 1),
        "gm": np.clip(brain - white, 0, 1),
        "wm": np.clip(white - vents, 0, 1),
    }
    fractions = {k: v.astype(np.float32) for k, v in fractions.items()}
    anatomy = Anatomy(np.zeros(shape, np.float32), fractions, affine, "phantom", resolution)
    texture = rng.normal(0.0, 1.0, shape).astype(np.float32)
    texture = ndimage.gaussian_filter(texture, 3.0 / resolution)
    texture *= np.float32(0.04 / max(float(texture.std()), 1e-6))
    anatomy.t1 = np.clip(anatomy.mix(T1_PHANTOM) + texture * anatomy.total(), 0, 1).astype(np.float32)
    return anatomy


__all__ = [
    "EXTRA",
    "TISSUES",
    "Anatomy",
    "load_anatomy",
    "mni_anatomy",
    "nilearn_available",
    "phantom_anatomy",
]
