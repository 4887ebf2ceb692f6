"""How far the second volume lies from where it best fits the MRI: the 3D registration score.

Why not the share of the other image's coloured voxels on the MRI's head (the score 2D
pairs still use, :func:`medfuse.registration.containment`): a PET or CT moved 10-15 mm, or
rotated 10 degrees, still lies almost entirely on the head (it scored 0.88-1.00), and a head
CT against a skull-stripped MRI puts its scalp and skull off the MRI's "head" (0.75) however
well aligned it is. What matters to a reader is whether the anatomy lines up, so this
measure asks the images themselves: starting from the alignment the headers give, a small
rigid search (three shifts, three rotations, steps 16 mm down to 1 mm) climbs the normalised
mutual information of the two images inside the MRI's head (or brain, for a skull-stripped
MRI) widened by :data:`MASK_MARGIN_MM`; the mean distance that the best rigid move carries
the head's voxels is the *estimated misalignment* in mm. A registered pair sits at the peak
already (0-1.5 mm); a pair shifted 10 mm or rotated 5 degrees climbs 3.7 mm or more.

Normalised mutual information because it needs no model of how MRI intensities map to PET,
SPECT or CT (the same reason registration uses Mattes mutual information), and a local
search because only the *position* of the peak is asked, not its height, which differs
between modalities and between skull-stripped and with-skull MRI.

The search runs on a coarse copy (:data:`STEP_MM` voxels, at most :data:`MAX_POINTS` points
inside the mask; the MRI smoothed to that scale), so it costs a fraction of a second per
volume (docs/checks.md has the measured cost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Mask around the MRI's head (or brain) in which the images are compared: wide enough to
#: hold the skull and scalp a skull-stripped MRI has lost, and the edge of a PET brain.
MASK_MARGIN_MM = 10.0
#: The MRI's grid must span this much along every axis for the search: a head, not a slab
#: of a few slices (too thin to pin a rotation; two unrelated textures in a 64 x 64 x 24 mm
#: slab climbed 5 mm). Thinner volumes keep the containment score.
MIN_EXTENT_MM = 80.0
#: Spacing of the coarse grid the search runs on.
STEP_MM = 4.0
#: At most this many mask points are compared (a regular subsample beyond it).
MAX_POINTS = 40_000
#: Histogram bins per image for the mutual information.
BINS = 32
#: Search steps (mm for shifts; the rotation step in degrees is the same number, capped at
#: 8: one degree moves the head's edge about 1 mm).
SEARCH_STEPS_MM = (16.0, 8.0, 4.0, 2.0, 1.0)
#: Estimated misalignment (mm) at which the score reaches 0.
SCALE_MM = 20.0
#: Below this score medfuse warns: an estimated misalignment over 3 mm. On the generated
#: studies registered pairs estimate 0-1.5 mm, a 5 degree rotation 3.7-6.0 mm and a 10 mm
#: shift 10 mm (docs/checks.md has the sweep that chose it).
ALIGNMENT_WARN = 0.85


@dataclass(frozen=True)
class Alignment:
    """What the search found: the estimated misalignment and the move that fits best."""

    misalignment_mm: float
    shift_mm: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]
    nmi_before: float
    nmi_after: float
    evaluations: int
    points: int

    @property
    def score(self) -> float:
        """Higher is better registered: 1 - misalignment / SCALE_MM, within 0..1."""
        return float(min(1.0, max(0.0, 1.0 - self.misalignment_mm / SCALE_MM)))

    def describe(self) -> str:
        s, r = self.shift_mm, self.rotation_deg
        return (f"best rigid fit {self.misalignment_mm:.1f} mm away (shift "
                f"{s[0]:+.0f},{s[1]:+.0f},{s[2]:+.0f} mm, rotation {r[0]:+.0f},{r[1]:+.0f},"
                f"{r[2]:+.0f} deg; NMI {self.nmi_before:.3f} -> {self.nmi_after:.3f}; "
                f"{self.evaluations} evaluations on {self.points} points)")


def _rotation(deg: np.ndarray) -> np.ndarray:
    ax, ay, az = np.radians(deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _nmi(a_bins: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information (H(A) + H(B)) / H(A, B), 1 (independent) to 2."""
    b_bins = np.clip((b * BINS).astype(np.int64), 0, BINS - 1)
    joint = np.bincount(a_bins * BINS + b_bins, minlength=BINS * BINS).astype(np.float64)
    joint /= joint.sum()
    pa, pb = joint.reshape(BINS, BINS).sum(1), joint.reshape(BINS, BINS).sum(0)

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    h_ab = entropy(joint)
    return (entropy(pa) + entropy(pb)) / h_ab if h_ab > 0 else 1.0


def estimate_alignment(mri_windowed: np.ndarray, head: np.ndarray, grid_affine: np.ndarray,
                       other: np.ndarray, other_affine: np.ndarray,
                       to_windowed: object) -> Alignment | None:
    """Search the rigid move of ``other`` that best fits the MRI (see the module docstring).

    ``mri_windowed`` (slice, row, column) is the MRI windowed to 0..1 on a grid whose voxel
    indices ``grid_affine`` maps to world mm, ``head`` its head (or brain) mask there;
    ``other`` is the second volume's stored voxels (i, j, k) and ``other_affine`` their
    world position; ``to_windowed`` maps its stored values to its window's 0..1. None when
    the MRI shows no head or its grid spans less than MIN_EXTENT_MM along some axis.
    """
    from scipy import ndimage

    spacing = np.linalg.norm(np.asarray(grid_affine, np.float64)[:3, :3], axis=0)
    stride = [max(1, round(STEP_MM / s)) for s in spacing]
    extent = np.asarray(mri_windowed.shape) * spacing
    if extent.min() < MIN_EXTENT_MM or not head.any():
        return None
    sigma = [max(0.0, (st - 1) / 2) for st in stride]
    mri_s = ndimage.gaussian_filter(np.nan_to_num(mri_windowed.astype(np.float32)), sigma)
    sl = tuple(slice(0, None, st) for st in stride)
    mri_c = np.clip(mri_s[sl], 0.0, 1.0)
    coarse = np.asarray(grid_affine, np.float64) @ np.diag([*stride, 1.0])
    spacing_c = spacing * np.asarray(stride)
    mask = head[sl]
    grow = max(1, round(MASK_MARGIN_MM / float(spacing_c.min())))
    mask = ndimage.binary_dilation(mask, ndimage.generate_binary_structure(3, 1), grow)
    idx = np.argwhere(mask)
    if len(idx) > MAX_POINTS:
        idx = idx[:: math.ceil(len(idx) / MAX_POINTS)]
    world = coarse[:3, :3] @ idx.T.astype(np.float64) + coarse[:3, 3:4]
    centre = world.mean(axis=1, keepdims=True)
    a_bins = np.clip((mri_c[tuple(idx.T)] * BINS).astype(np.int64), 0, BINS - 1)
    data = np.asarray(other, np.float32)
    finite = np.isfinite(data)
    air = float(data[finite].min()) if finite.any() else 0.0
    if not finite.all():
        data = np.where(finite, data, air)
    to_voxel = np.linalg.inv(np.asarray(other_affine, np.float64))
    # what the other image shows outside its own grid: its lowest value (air), windowed
    air_w = float(np.clip(to_windowed(np.full(1, air, np.float32))[0], 0.0, 1.0))  # type: ignore[operator]

    def moved(params: np.ndarray) -> np.ndarray:
        r = _rotation(params[3:])
        return r @ (world - centre) + centre + params[:3, None]

    def value(params: np.ndarray) -> float:
        p = moved(params)
        vox = to_voxel[:3, :3] @ p + to_voxel[:3, 3:4]
        sampled = ndimage.map_coordinates(data, vox, order=1, mode="constant", cval=np.nan)
        w = np.clip(np.nan_to_num(to_windowed(sampled), nan=air_w), 0.0, 1.0)  # type: ignore[operator]
        return _nmi(a_bins, w)

    best = np.zeros(6)
    best_value = before = value(best)
    evaluations = 1
    for step in SEARCH_STEPS_MM:
        deltas = [step] * 3 + [min(step, 8.0)] * 3
        improved = True
        rounds = 0
        while improved and rounds < 8:
            improved, rounds = False, rounds + 1
            for axis in range(6):
                for sign in (1.0, -1.0):
                    trial = best.copy()
                    trial[axis] += sign * deltas[axis]
                    v = value(trial)
                    evaluations += 1
                    if v > best_value + 1e-6:
                        best, best_value, improved = trial, v, True
    shift = float(np.linalg.norm(moved(best) - world, axis=0).mean())
    return Alignment(misalignment_mm=shift, shift_mm=tuple(float(v) for v in best[:3]),
                     rotation_deg=tuple(float(v) for v in best[3:]), nmi_before=before,
                     nmi_after=best_value, evaluations=evaluations, points=len(idx))


__all__ = ["ALIGNMENT_WARN", "Alignment", "MASK_MARGIN_MM", "SCALE_MM", "estimate_alignment"]
