"""Voxel grids in world space: affines, the canonical (RAS) orientation, slicing and resampling.

Conventions (the same for every reader and writer, so no function guesses geometry back):

* An affine is a 4x4 matrix mapping voxel indices ``(i, j, k, 1)`` to world millimetres in
  **RAS+**, as NIfTI and nibabel use: +x points to the patient's right, +y anterior, +z
  superior. DICOM's LPS is converted on reading and writing, never kept.
* Arrays are indexed ``data[i, j, k]`` (nibabel order), with an optional trailing RGB axis.
* The canonical orientation is RAS: axis 0 runs left to right, axis 1 posterior to anterior,
  axis 2 inferior to superior. It is reached by flips and transposes only, which NumPy does
  as *views*, so reorienting never copies a volume.
* A *stack* is the canonical volume cut along one anatomical axis and laid out as
  ``(slice, row, column)`` in the radiological display convention DICOM viewers use:
  axial and coronal images show the patient's right on the image's left; axial images have
  anterior at the top; coronal and sagittal images have superior at the top; sagittal images
  have anterior on the left. ``--axis X --slice N`` therefore means the same thing for every
  file, whatever order its voxels were stored in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medfuse.errors import InputError, UsageError

AXES = ("axial", "coronal", "sagittal")
#: Canonical (RAS) array axis that each anatomical slicing direction runs along.
AXIS_INDEX = {"sagittal": 0, "coronal": 1, "axial": 2}
#: RAS <-> LPS: DICOM stores patient coordinates in LPS.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

# How each stack is laid out from the canonical (RAS) array: the canonical axes that become
# (slice, row, column), and which of the row/column axes are reversed for display.
_STACK_LAYOUT = {
    # rows run anterior->posterior (reversed y), columns right->left (reversed x)
    "axial": ((2, 1, 0), (False, True, True)),
    # rows run superior->inferior (reversed z), columns right->left (reversed x)
    "coronal": ((1, 2, 0), (False, True, True)),
    # rows run superior->inferior (reversed z), columns anterior->posterior (reversed y)
    "sagittal": ((0, 2, 1), (False, True, True)),
}


def check_affine(affine: np.ndarray, label: str = "volume") -> np.ndarray:
    """Return ``affine`` as float64 4x4, or raise InputError if it cannot place voxels in space
    (non-finite, or a zero/singular 3x3 part that would collapse the grid)."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise InputError(f"{label}: affine must be 4x4, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{label}: the affine holds NaN or infinite values")
    lin = a[:3, :3]
    scale = float(np.abs(lin).max())
    if scale == 0.0 or abs(float(np.linalg.det(lin))) < (1e-6 * scale) ** 3:
        raise InputError(
            f"{label}: the affine is zero or singular, so voxel positions in space are unknown"
        )
    return a


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Length in mm of one step along each voxel axis."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def flip_axis(data: np.ndarray, affine: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Reverse one voxel axis (a view) and adjust the affine so every voxel keeps its place."""
    n = data.shape[axis]
    out = affine.copy()
    out[:, 3] = affine[:, 3] + affine[:, axis] * (n - 1)
    out[:, axis] = -affine[:, axis]
    return np.flip(data, axis=axis), out


def transpose_axes(
    data: np.ndarray, affine: np.ndarray, order: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Permute the three spatial axes (a view); a trailing RGB axis stays last."""
    full = tuple(order) + tuple(range(3, data.ndim))
    out = affine.copy()
    out[:, :3] = affine[:, list(order)]
    return data.transpose(full), out


def orientation_codes(affine: np.ndarray) -> str:
    """Three letters naming the world direction each voxel axis points to, e.g. ``LPS``."""
    import nibabel as nib

    return "".join(nib.orientations.aff2axcodes(affine))


def canonical_view(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The RAS-oriented view of ``data`` and its affine (closest canonical orientation;
    oblique grids keep their obliqueness in the affine)."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    if np.isnan(ornt).any():
        raise InputError("cannot work out the orientation of a grid with a degenerate affine")
    view, aff = data, np.asarray(affine, dtype=np.float64)
    for axis, (_, sign) in enumerate(ornt):
        if sign < 0:
            view, aff = flip_axis(view, aff, axis)
    order = tuple(int(i) for i in np.argsort(ornt[:, 0]))
    return transpose_axes(view, aff, order)  # type: ignore[arg-type]


def check_axis(axis: str) -> str:
    axis = (axis or "axial").strip().lower()
    if axis not in AXES:
        raise UsageError(f"--axis {axis!r}: expected one of {', '.join(AXES)}")
    return axis


def stack_view(data: np.ndarray, affine: np.ndarray, axis: str) -> tuple[np.ndarray, np.ndarray]:
    """``(slice, row, column[, rgb])`` view of a volume in the display convention above, and
    the affine mapping ``(slice, row, column)`` indices to RAS mm."""
    canon, aff = canonical_view(data, affine)
    order, flips = _STACK_LAYOUT[check_axis(axis)]
    view, aff = transpose_axes(canon, aff, order)
    for ax, flip in enumerate(flips):
        if flip:
            view, aff = flip_axis(view, aff, ax)
    return view, aff


def thin_axis(shape: tuple[int, ...], affine: np.ndarray) -> str | None:
    """The anatomical axis along which a single-slice grid is one voxel thick, if any."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    for axis in range(3):
        if shape[axis] == 1:
            return {0: "sagittal", 1: "coronal", 2: "axial"}[int(ornt[axis, 0])]
    return None


@dataclass(frozen=True)
class SlicePlane:
    """Where one 2D slice of a stack lies, in the terms DICOM's Image Plane module uses."""

    position_lps: tuple[float, float, float]  # centre of the first transmitted pixel
    row_cosine_lps: tuple[float, float, float]  # direction of increasing column index
    column_cosine_lps: tuple[float, float, float]  # direction of increasing row index
    pixel_spacing: tuple[float, float]  # (between rows, between columns) in mm
    slice_spacing: float  # distance to the next slice of the stack in mm

    @property
    def normal_lps(self) -> np.ndarray:
        return np.cross(self.row_cosine_lps, self.column_cosine_lps)


def slice_plane(stack_affine: np.ndarray, index: int) -> SlicePlane:
    """Image Plane geometry of slice ``index`` of a stack with ``stack_affine``."""
    lps = RAS_TO_LPS @ np.asarray(stack_affine, dtype=np.float64)
    origin = lps @ np.array([index, 0.0, 0.0, 1.0])
    row_step, col_step, slice_step = lps[:3, 2], lps[:3, 1], lps[:3, 0]
    col_spacing, row_spacing = float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))
    return SlicePlane(
        position_lps=tuple(float(v) for v in origin[:3]),  # type: ignore[arg-type]
        row_cosine_lps=tuple(float(v) for v in row_step / col_spacing),  # type: ignore[arg-type]
        column_cosine_lps=tuple(float(v) for v in col_step / row_spacing),  # type: ignore[arg-type]
        pixel_spacing=(row_spacing, col_spacing),
        slice_spacing=float(np.linalg.norm(slice_step)),
    )


def patient_orientation(plane: SlicePlane) -> tuple[str, str]:
    """DICOM Patient Orientation letters (row direction, column direction), e.g. ("L", "P"),
    naming the dominant patient directions; for images whose IOD has no Image Plane module."""

    def letters(v: tuple[float, float, float]) -> str:
        names = (("L", "R"), ("P", "A"), ("H", "F"))
        vec = np.asarray(v)
        out = ""
        for axis in np.argsort(-np.abs(vec)):
            if abs(vec[axis]) > 0.3 and len(out) < 3:
                out += names[axis][0] if vec[axis] > 0 else names[axis][1]
        return out

    return letters(plane.row_cosine_lps), letters(plane.column_cosine_lps)


def world_box(shape: tuple[int, ...], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned RAS bounding box (min, max corners) of a grid's voxel centres, widened
    by half a voxel so a one-slice grid still has thickness."""
    ranges = [(-0.5, n - 0.5) for n in shape[:3]]
    corners = np.array(
        [[x, y, z, 1.0] for x in ranges[0] for y in ranges[1] for z in ranges[2]]
    )
    pts = (np.asarray(affine, dtype=np.float64) @ corners.T)[:3].T
    return pts.min(axis=0), pts.max(axis=0)


def box_overlap(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> float:
    """Volume of the intersection of two boxes over the volume of the smaller one (0 to 1)."""
    lo = np.maximum(a[0], b[0])
    hi = np.minimum(a[1], b[1])
    inter = float(np.prod(np.clip(hi - lo, 0.0, None)))
    smaller = min(float(np.prod(a[1] - a[0])), float(np.prod(b[1] - b[0])))
    return inter / smaller if smaller > 0 else 0.0


def same_grid(
    shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...], affine_b: np.ndarray,
    tolerance_mm: float = 1e-3,
) -> bool:
    """True when two grids have the same voxel count and put every voxel at the same place."""
    if tuple(shape_a[:3]) != tuple(shape_b[:3]):
        return False
    return bool(np.allclose(affine_a, affine_b, atol=tolerance_mm, rtol=0))


def resample_slab(
    source: np.ndarray,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    start: int,
    stop: int,
    plane_shape: tuple[int, int],
) -> np.ndarray:
    """Trilinearly sample ``source`` (i, j, k[, rgb]) at the voxel centres of slices
    ``start:stop`` of a target stack, returning ``(stop-start, rows, cols[, rgb])`` float32.

    Points outside the source grid come back as NaN ("no data"), which windowing turns into
    background. Only one slab of coordinates exists at a time, so memory stays bounded.
    """
    from scipy import ndimage

    rows, cols = plane_shape
    to_source = np.linalg.inv(np.asarray(source_affine, np.float64)) @ np.asarray(
        target_affine, np.float64
    )
    n_idx, r_idx, c_idx = np.meshgrid(
        np.arange(start, stop, dtype=np.float64),
        np.arange(rows, dtype=np.float64),
        np.arange(cols, dtype=np.float64),
        indexing="ij",
    )
    coords = np.einsum(
        "ij,j...->i...", to_source[:3, :3], np.stack([n_idx, r_idx, c_idx])
    ) + to_source[:3, 3].reshape(3, 1, 1, 1)
    del n_idx, r_idx, c_idx
    # A voxel centre lying exactly on the outer face of the grid (within rounding) counts as
    # inside; beyond half a voxel there is no data.
    shape = np.asarray(source.shape[:3]).reshape(3, 1, 1, 1)
    eps = 1e-6
    coords = np.where((coords > -eps) & (coords < 0), 0.0, coords)
    coords = np.where((coords > shape - 1) & (coords < shape - 1 + eps), shape - 1.0, coords)
    out_shape = (stop - start, rows, cols)

    def sample(channel: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(
            channel, coords, order=1, mode="constant", cval=np.nan,
            output=np.float32, prefilter=False,
        ).reshape(out_shape)

    if source.ndim == 4:
        return np.stack([sample(source[..., c]) for c in range(source.shape[3])], axis=-1)
    return sample(source)


class DeviceResampler:
    """:func:`resample_slab` on a torch device: the same geometry, trilinear weights and
    NaN-outside rule, computed by ``torch.nn.functional.grid_sample``.

    Why: scipy's ``map_coordinates`` runs on one core, and for a 1 mm head beside a 2 mm
    PET it took 0.67 s of a 1.7 s non-network pipeline on the benchmark CPU, which a GPU
    pipeline would otherwise wait on. The source volume is uploaded once (float32) and
    each slab is sampled where it lies; the voxel coordinates are computed in float64 on
    the device exactly as :func:`resample_slab` computes them, so "outside" is decided
    identically. The interpolation runs in ``dtype``: float64 by default, like scipy, so a
    target voxel centre that falls on a source voxel centre samples exactly that voxel
    (in float32 the grid's normalisation moves it by ~1e-7 voxel, onto the neighbour's
    cell, and a NaN neighbour then spreads one voxel further than in scipy); float32
    halves the memory of the uploaded volume and stays within 1e-5 of scipy on values in
    [0, 1]. Tested against :func:`resample_slab` on CPU torch.
    """

    def __init__(
        self,
        source: np.ndarray,
        source_affine: np.ndarray,
        target_affine: np.ndarray,
        plane_shape: tuple[int, int],
        device: object = "cpu",
        dtype: object = None,
    ) -> None:
        import torch

        self.device = torch.device(str(device))
        self.dtype = dtype if dtype is not None else torch.float64
        src = np.asarray(source)
        self.shape = tuple(int(n) for n in src.shape[:3])
        self.rgb = src.ndim == 4
        vol = torch.from_numpy(np.ascontiguousarray(src))
        vol = vol.permute(3, 0, 1, 2) if self.rgb else vol[None]  # (C, I, J, K)
        # grid_sample's 5D input is (N, C, D, H, W): D, H, W are the source's i, j, k.
        # Uploaded as stored (int16 CT is a quarter of float64), converted on the device.
        self.volume = vol[None].to(self.device).to(self.dtype)
        self.to_source = np.linalg.inv(np.asarray(source_affine, np.float64)) @ np.asarray(
            target_affine, np.float64)
        self.plane_shape = (int(plane_shape[0]), int(plane_shape[1]))

    def coordinates(self, start: int, stop: int) -> Any:
        """Source voxel coordinates (3, n, rows, cols) float64 of the target slab's voxel
        centres, snapped onto the grid's faces within 1e-6 as :func:`resample_slab` does."""
        import torch

        kw = {"dtype": torch.float64, "device": self.device}
        rows, cols = self.plane_shape
        n = torch.arange(start, stop, **kw).view(-1, 1, 1)
        r = torch.arange(rows, **kw).view(1, -1, 1)
        c = torch.arange(cols, **kw).view(1, 1, -1)
        m = self.to_source
        eps = 1e-6
        out = []
        for axis in range(3):
            x = (n * float(m[axis, 0]) + r * float(m[axis, 1])) + c * float(m[axis, 2])
            x = x + float(m[axis, 3])
            top = float(self.shape[axis] - 1)
            x = torch.where((x > -eps) & (x < 0), torch.zeros_like(x), x)
            x = torch.where((x > top) & (x < top + eps), torch.full_like(x, top), x)
            out.append(x)
        return torch.stack(out)

    def slab_tensor(self, start: int, stop: int) -> Any:
        """Slices ``start:stop`` as a float32 tensor on the device, ``(n, rows, cols)`` or
        ``(n, rows, cols, 3)``, NaN where a point lies outside the source grid (NaN in
        the source spreads to its trilinear neighbourhood, as in scipy)."""
        import torch
        import torch.nn.functional as F

        coords = self.coordinates(start, stop)
        outside = torch.zeros(coords.shape[1:], dtype=torch.bool, device=self.device)
        norm = []
        for axis in range(3):
            x = coords[axis]
            top = self.shape[axis] - 1
            outside |= (x < 0) | (x > top)
            norm.append(x * (2.0 / top) - 1.0 if top > 0 else torch.zeros_like(x))
        # grid_sample's last grid axis is (x, y, z) = (W, H, D) = (k, j, i).
        grid = torch.stack([norm[2], norm[1], norm[0]], dim=-1).to(self.dtype)[None]
        out = F.grid_sample(self.volume, grid, mode="bilinear", padding_mode="border",
                            align_corners=True)[0].to(torch.float32)  # (C, n, rows, cols)
        out[:, outside] = float("nan")
        return out.permute(1, 2, 3, 0) if self.rgb else out[0]

    def slab(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` as :func:`resample_slab` returns them (host float32)."""
        return self.slab_tensor(start, stop).cpu().numpy()


def resample_slab_device(
    source: np.ndarray,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    start: int,
    stop: int,
    plane_shape: tuple[int, int],
    device: object = "cpu",
    dtype: object = None,
) -> np.ndarray:
    """One slab through :class:`DeviceResampler` (which keeps the source on the device
    across slabs; use it directly for more than one)."""
    return DeviceResampler(source, source_affine, target_affine, plane_shape, device,
                           dtype).slab(start, stop)


__all__ = [
    "AXES",
    "AXIS_INDEX",
    "RAS_TO_LPS",
    "DeviceResampler",
    "SlicePlane",
    "box_overlap",
    "canonical_view",
    "check_affine",
    "check_axis",
    "flip_axis",
    "orientation_codes",
    "patient_orientation",
    "resample_slab",
    "resample_slab_device",
    "same_grid",
    "slice_plane",
    "stack_view",
    "thin_axis",
    "transpose_axes",
    "voxel_sizes",
    "world_box",
]
