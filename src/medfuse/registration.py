"""Is the pair registered? And registering it, when asked (``--register rigid|affine``).

**The registration score** is computed for every pair, registered by medfuse or not.
For two grey volumes it is 1 - the estimated misalignment / 20 mm: how far the best rigid
fit of the other image lies from where the headers put it
(:mod:`medfuse.prepare.alignment`; warned below its ALIGNMENT_WARN, 0.85: over 3 mm). For
2D pairs and colour second images, and in every record's detail, it is the *containment*
below: the share of the other image's *coloured* voxels (those above its transparency floor;
for CT, above its window floor) that fall inside the MRI's head, both on a coarse copy of
the MRI grid (at most :data:`SCORE_VOXELS` voxels). The MRI's head is its voxels brighter
than :data:`HEAD_LEVEL` of its window, holes filled (skull and CSF are dark in T1, but inside
the head), widened by :data:`MARGIN_MM` (PET and SPECT blur activity a few mm beyond the
brain). 1.0 means every coloured voxel lies on the head; a PET shifted off the head paints
colour over air and scores low. Why not the Dice overlap of the two masks: a correctly
registered PET shows the brain, the MRI the whole head, so their Dice is about 0.5 when all
is well; containment is 1.0 then. Higher is better registered. Below
:data:`REGISTRATION_WARN` medfuse warns, unless something registered the pair: one Frame of
Reference UID (a hybrid scanner) or ``--register``. "Coloured" always uses the transparency
floor's level, also under ``--floor none``: what the user colours does not change how well
the pair is registered, and counting the noise in air as colour scored a registered PET
0.80.

Two grey ordinary images are also compared by their head outlines
(:func:`outline_distance`): an MRI slice of one head and a CT slice of another both lie on
a centred head, so containment passes them, but their outlines differ.

**Registration** (optional extra ``register``: SimpleITK) moves the other image onto the
MRI: Mattes mutual information (the standard metric across MR, CT, PET and SPECT),
three resolutions (4x, 2x, 1x shrink, smoothed 2, 1, 0 mm), a regular-step gradient
descent on a rigid (Euler) transform, then, for ``affine``, an affine transform started from
the rigid result (two resolutions, steps of at most 1 mm). Rigid is right for a head: the
skull does not deform between scans; affine adds scaling and shear for scanners whose
calibration differs, at a cost: mutual information sees the blurred PET brain as larger
than the MRI's and shrinks it 1-2% (on a rigid 10 deg / 15 mm misalignment of generated
2 mm studies: rigid 0.1-0.5 mm, affine 0.3-1.0 mm error at the lesions).

The result is a 4x4 matrix in RAS mm (MRI world -> other's world); the plan applies it by
changing the other volume's affine, so its voxels are sampled once, by the same
trilinear resampling as any other pair. The ITK transform (LPS, fixed = MRI, moving =
other, ITK's convention) is kept as ``.tfm`` text for ``--save-transform`` and the record.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medfuse.errors import InputError, UsageError

if TYPE_CHECKING:
    from medfuse.io.volume import Volume

#: Below this containment (share of the other's coloured voxels inside the MRI head; the
#: score of 2D pairs and colour second images) medfuse warns.
#: Measured on generated 2 mm MNI studies (docs/checks.md): registered PET, SPECT and CT
#: 1.00; shifted 15 mm 0.90-1.00, 30 mm 0.79-0.96, 60 mm along any axis 0.52-0.80.
REGISTRATION_WARN = 0.85
#: Windowed MRI level above which a voxel belongs to the head.
HEAD_LEVEL = 0.1
#: Head mask widened by this much (partial voxels at the head's edge; rounded to whole
#: voxels of the coarse grid, so 0 to 1 voxel).
MARGIN_MM = 3.0
#: Voxels of the coarse MRI grid the score is computed on.
SCORE_VOXELS = 300_000
#: 2D pairs: the other slice's centre lying farther than this from the MRI's slice plane
#: shows different anatomy (a neighbouring slice is a few mm away; 82 mm is another head
#: region), and medfuse warns.
PLANE_DISTANCE_WARN_MM = 10.0
#: Two grey ordinary images whose head outlines lie farther apart than this share of the
#: MRI head's radius, on average, are plainly not one head's slices (docs/checks.md has
#: what it catches and its false alarms on the atlas pairs).
OUTLINE_WARN = 0.2
#: Registration methods of ``--register``.
METHODS = ("none", "rigid", "affine")
#: Install hint when SimpleITK is missing.
INSTALL_HINT = 'pip install "medfuse[register]"'


class RegistrationWarning(UserWarning):
    """The inputs do not look co-registered (low registration score, slices far apart,
    head outlines that differ, different patients or frames of reference, no geometry)."""


@dataclass
class RegistrationScore:
    """How well the other image sits on the MRI (higher is better registered), and whether
    that earned a warning."""

    score: float | None
    threshold: float = REGISTRATION_WARN
    method: str = "containment of the other's coloured voxels in the MRI head"
    detail: str = ""
    #: 2D pairs with geometry: distance of the other slice's centre from the MRI's plane.
    plane_distance_mm: float | None = None
    #: What registered the pair, when something did: ``--register`` or one Frame of
    #: Reference (a hybrid scanner). A registered pair is never warned about its score: a
    #: low score then says more about the threshold (no floor, noise in air) than the pair.
    registered_by: str | None = None
    #: Two grey ordinary images: mean distance between the two head outlines, as a share of
    #: the MRI head's radius (:func:`outline_distance`); None where it does not apply.
    outline_distance: float | None = None
    #: Volumes: how far (mm, mean over the head) the best rigid fit of the second image
    #: lies from where the headers place it (:mod:`medfuse.prepare.alignment`).
    misalignment_mm: float | None = None

    @property
    def low(self) -> bool:
        """The score is below its threshold on a pair nothing registered."""
        return (self.registered_by is None and self.score is not None
                and self.score < self.threshold)

    @property
    def far(self) -> bool:
        """2D slices lie far apart (different anatomy, registered or not)."""
        return (self.plane_distance_mm is not None
                and self.plane_distance_mm > PLANE_DISTANCE_WARN_MM)

    @property
    def outlines_differ(self) -> bool:
        """The two head outlines differ plainly (two heads, or two levels of one)."""
        return self.outline_distance is not None and self.outline_distance > OUTLINE_WARN

    @property
    def warned(self) -> bool:
        return self.low or self.far or self.outlines_differ

    def describe(self) -> str:
        text = "registration score " + (
            f"{self.score:.2f}" if self.score is not None else "n/a") + (
            f" (warn below {self.threshold:g}"
            + (f"; registered by {self.registered_by}, not warned" if self.registered_by
               else "") + ")")
        if self.plane_distance_mm is not None:
            text += f", slices {self.plane_distance_mm:.1f} mm apart"
        if self.outline_distance is not None:
            text += (f", head outlines {self.outline_distance:.2f} of the head radius apart "
                     f"(warn above {OUTLINE_WARN:g})")
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"score": self.score, "threshold": self.threshold, "method": self.method,
                "detail": self.detail, "plane_distance_mm": self.plane_distance_mm,
                "plane_distance_warn_mm": PLANE_DISTANCE_WARN_MM,
                "registered_by": self.registered_by,
                "outline_distance": self.outline_distance,
                "outline_warn": OUTLINE_WARN if self.outline_distance is not None else None,
                "misalignment_mm": self.misalignment_mm,
                "warned": self.warned}


def read_score(decisions: dict[str, Any]) -> dict[str, Any] | None:
    """The registration score of a provenance record's ``decisions``; records written
    before the score was renamed keep it under ``misregistration``."""
    found = decisions.get("registration_score", decisions.get("misregistration"))
    return found if isinstance(found, dict) else None


def head_mask(mri_windowed: np.ndarray, spacing_mm: tuple[float, ...],
              margin_mm: float = MARGIN_MM) -> np.ndarray:
    """The MRI's head on a (slice, row, column) grid with ``spacing_mm`` per axis: brighter
    than HEAD_LEVEL, holes filled slice by slice (a 3D fill misses heads cut open by the
    edge of the field of view), widened by ``margin_mm`` in-plane and across slices."""
    from scipy import ndimage

    mask = mri_windowed > HEAD_LEVEL
    for k in range(mask.shape[0]):
        mask[k] = ndimage.binary_fill_holes(mask[k])
    if margin_mm <= 0 or not mask.any():
        return mask
    in_plane = min(32, round(margin_mm / max(min(spacing_mm[1:]), 1e-6)))
    if in_plane > 0:
        cross = ndimage.generate_binary_structure(2, 1)[None]  # (1, 3, 3)
        mask = ndimage.binary_dilation(mask, structure=cross, iterations=in_plane)
    across = min(8, round(margin_mm / max(spacing_mm[0], 1e-6)))
    if mask.shape[0] > 1 and across > 0:
        line = np.ones((3, 1, 1), bool)
        mask = ndimage.binary_dilation(mask, structure=line, iterations=across)
    return mask


def containment(mri_windowed: np.ndarray, other_coloured: np.ndarray,
                spacing_mm: tuple[float, ...], total_coloured: float | None = None
                ) -> tuple[float | None, str]:
    """Share of the other image's coloured voxels inside the MRI head (see the module
    docstring), and a few words on what was counted.

    ``other_coloured`` is on the same (coarse) grid as ``mri_windowed``; ``total_coloured``
    is how many such voxels the other image holds in all, counted on its own grid and
    expressed in voxels of this grid. It matters: a PET shifted 60 mm is partly outside the
    MRI's field of view, and counting only what is inside would hide exactly that part
    (measured on a generated PET: 0.87 instead of 0.80 for a 60 mm anterior shift)."""
    inside_fov = float(other_coloured.sum())
    total = max(inside_fov, total_coloured or 0.0)
    if total == 0:
        return None, "the other image has nothing above its floor"
    head = head_mask(mri_windowed, spacing_mm)
    inside = float((other_coloured & head).sum())
    return min(1.0, inside / total), (
        f"{inside:.0f} of {total:.0f} coloured voxels (of {'x'.join(map(str, mri_windowed.shape))}"
        f" at {'x'.join(f'{v:.3g}' for v in spacing_mm)} mm) on the MRI head")


def outline_mask(plane: np.ndarray, level: float = HEAD_LEVEL) -> np.ndarray:
    """The head of one ordinary image (H, W) in [0, 1]: brighter than ``level``, thin arcs
    and specks opened away (a CT couch, text), small gaps closed, holes filled, the largest
    piece kept."""
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(2, 1)
    mask = ndimage.binary_opening(plane > level, cross, iterations=2)
    mask = ndimage.binary_closing(mask, cross, iterations=3, border_value=0)
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    return labels == 1 + int(np.argmax(sizes))


def outline_distance(mri: np.ndarray, other: np.ndarray) -> float | None:
    """Mean distance between the head outlines of two grey planes on one grid, both ways,
    as a share of the MRI head's radius (sqrt(area / pi)); None when either has no head.

    Why outlines and not the score alone: an MRI slice of one head beside a CT slice of
    another still puts nearly every CT pixel on the MRI's head (both are centred heads), so
    containment stays high while the fused image shows two skulls."""
    from scipy import ndimage

    a, b = outline_mask(mri), outline_mask(other)
    if a.sum() < 16 or b.sum() < 16:
        return None
    edge_a, edge_b = a & ~ndimage.binary_erosion(a), b & ~ndimage.binary_erosion(b)
    to_a = ndimage.distance_transform_edt(~edge_a)
    to_b = ndimage.distance_transform_edt(~edge_b)
    both = np.concatenate([to_a[edge_b], to_b[edge_a]])
    return float(both.mean() / np.sqrt(a.sum() / np.pi))


# -- registration -----------------------------------------------------------------------


@dataclass
class RegistrationResult:
    """What ``--register`` found: MRI world -> other's world, in RAS mm and as ITK text."""

    method: str
    matrix_ras: np.ndarray
    itk_transform: str
    metric: float
    iterations: list[int]
    seconds: float
    stop: str
    parameters: dict[str, Any] = field(default_factory=dict)
    score_before: float | None = None

    def describe(self) -> str:
        u, _, vt = np.linalg.svd(self.matrix_ras[:3, :3])
        rot = u @ vt  # the rotation part (polar decomposition), also of an affine
        angle = float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1))))
        shift = float(np.linalg.norm(self.matrix_ras[:3, 3]))
        return (f"registered {self.method} (Mattes MI {self.metric:.3f}, "
                f"{sum(self.iterations)} iterations, {self.seconds:.1f} s): about "
                f"{angle:.1f} deg and {shift:.1f} mm")

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "matrix_ras": self.matrix_ras.round(6).tolist(),
                "direction": "MRI world (RAS mm) -> other's world (RAS mm)",
                "itk_transform": self.itk_transform, "metric": "Mattes mutual information",
                "final_metric": self.metric, "iterations": self.iterations,
                "seconds": round(self.seconds, 3), "stop": self.stop,
                "parameters": self.parameters, "score_before": self.score_before}


def _sitk() -> Any:
    try:
        import SimpleITK as sitk
    except ImportError:
        raise UsageError(f"--register needs SimpleITK, which is not installed: {INSTALL_HINT}"
                         ) from None
    return sitk


_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS


def to_sitk_image(volume: Volume) -> Any:
    """A grey volume as a float32 SimpleITK image in LPS, voxels in scanner units, NaN set
    to the lowest finite value (ITK has no "no data")."""
    sitk = _sitk()
    data = volume.data
    if volume.is_rgb:
        from medfuse.colour import luminance

        data = luminance(np.asarray(data, np.float32))
    arr = np.asarray(data, dtype=np.float32) * np.float32(volume.slope) + np.float32(volume.inter)
    finite = np.isfinite(arr)
    if not finite.all():
        arr = np.where(finite, arr, float(arr[finite].min()) if finite.any() else 0.0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    lps = _FLIP @ np.asarray(volume.affine, np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in lps[:3, 3]])
    image.SetDirection([float(v) for v in direction.ravel()])
    return image


def matrix_of(transform: Any) -> np.ndarray:
    """4x4 RAS matrix of an ITK matrix-offset transform (fixed LPS -> moving LPS)."""
    a = np.asarray(transform.GetMatrix(), np.float64).reshape(3, 3)
    c = np.asarray(transform.GetCenter(), np.float64)
    t = np.asarray(transform.GetTranslation(), np.float64)
    lps = np.eye(4)
    lps[:3, :3] = a
    lps[:3, 3] = c + t - a @ c
    return _FLIP @ lps @ _FLIP


def _method(sitk: Any, shrink: list[int], sigmas: list[float], sampling: list[float],
            iterations: int, threads: int | None, bounded: bool = False) -> Any:
    """One registration run. ``bounded``: a gradient descent whose learning rate is
    re-estimated every iteration with steps of at most 1 mm, for the affine stage: the
    regular-step descent that suits 6 rigid parameters wandered off (40 degrees, 10 mm at
    the lesion) with 12 affine ones for some sampling seeds; the bounded one did not."""
    reg = sitk.ImageRegistrationMethod()
    # 64 bins for the affine stage: with 32, the blurred PET edge pulled the scale 3-4%
    # small (the brain looks bigger in PET); 64 halves that bias
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=64 if bounded else 32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentagePerLevel(sampling, 20250101)  # seeded: deterministic
    reg.SetInterpolator(sitk.sitkLinear)
    if bounded:
        reg.SetOptimizerAsGradientDescent(
            learningRate=1.0, numberOfIterations=iterations, convergenceMinimumValue=1e-6,
            convergenceWindowSize=10, estimateLearningRate=reg.EachIteration,
            maximumStepSizeInPhysicalUnits=1.0)
    else:
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=2.0, minStep=1e-3, numberOfIterations=iterations,
            relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(sigmas)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    if threads:
        reg.SetNumberOfThreads(threads)
    return reg


def register(mri: Volume, other: Volume, method: str = "rigid", *,
             threads: int | None = None) -> RegistrationResult:
    """Register ``other`` onto ``mri`` (see the module docstring); 3D volumes only."""
    if method not in METHODS[1:]:
        raise UsageError(f"--register {method!r}: expected one of {', '.join(METHODS)}")
    if mri.is_2d or other.is_2d:
        raise UsageError("--register works on volumes; one input is a single slice")
    if not (mri.has_geometry and other.has_geometry):
        raise InputError("--register needs both inputs to have a position in space; "
                         f"{mri.label if not mri.has_geometry else other.label} has none")
    sitk = _sitk()
    start = time.perf_counter()
    fixed, moving = to_sitk_image(mri), to_sitk_image(other)
    # Start from the headers' alignment (identity), rotating about the MRI's centre of mass:
    # scanner coordinates are rarely far off, and the centre of mass of a PET brain and of
    # an MRI head differ by centimetres, which a moments initialiser would add as an error.
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(_centre_of_mass(fixed, sitk))
    shrink, sigmas = [4, 2, 1], [2.0, 1.0, 0.0]
    reg = _method(sitk, shrink, sigmas, [0.2, 0.05, 0.01], 200, threads)
    reg.SetInitialTransform(rigid, inPlace=True)
    try:
        reg.Execute(fixed, moving)
        metric = reg.GetMetricValue()
    except RuntimeError as exc:
        raise InputError(f"registration failed: {' '.join(str(exc).split())[:300]}") from exc
    iterations = [int(reg.GetOptimizerIteration())]
    stop = str(reg.GetOptimizerStopConditionDescription())
    final: Any = rigid
    if method == "affine":
        affine = sitk.AffineTransform(3)
        affine.SetCenter(rigid.GetCenter())
        affine.SetMatrix(rigid.GetMatrix())
        affine.SetTranslation(rigid.GetTranslation())
        reg = _method(sitk, [2, 1], [1.0, 0.0], [0.1, 0.03], 100, threads, bounded=True)
        reg.SetInitialTransform(affine, inPlace=True)
        try:
            reg.Execute(fixed, moving)
            metric = reg.GetMetricValue()
        except RuntimeError as exc:
            raise InputError(f"registration failed: {' '.join(str(exc).split())[:300]}") from exc
        iterations.append(int(reg.GetOptimizerIteration()))
        stop = str(reg.GetOptimizerStopConditionDescription())
        final = affine
    with tempfile.TemporaryDirectory(prefix="medfuse-tfm-") as tmp:
        path = Path(tmp) / "transform.tfm"
        sitk.WriteTransform(final, str(path))
        text = path.read_text()
    return RegistrationResult(
        method=method, matrix_ras=matrix_of(final), itk_transform=text, metric=float(metric),
        iterations=iterations, seconds=time.perf_counter() - start, stop=stop,
        parameters={"metric": "MattesMutualInformation, 32 bins (affine stage 64), "
                              "seeded random sampling",
                    "shrink_factors": shrink, "smoothing_mm": sigmas,
                    "optimizer": "RegularStepGradientDescent" + (
                        ", then GradientDescent (steps <= 1 mm)" if method == "affine" else ""),
                    "transform": type(final).__name__,
                    "simpleitk": str(sitk.Version_VersionString())},
    )


def _centre_of_mass(image: Any, sitk: Any) -> tuple[float, ...]:
    """Intensity-weighted centre (LPS mm) of the positive voxels of ``image``."""
    arr = sitk.GetArrayViewFromImage(image)
    step = max(1, int(np.ceil((arr.size / 500_000) ** (1 / 3))))
    sub = np.asarray(arr[::step, ::step, ::step], np.float64)
    weights = np.clip(sub - np.percentile(sub, 5), 0, None)
    if weights.sum() <= 0:
        size = image.GetSize()
        return image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in size])
    idx = np.indices(sub.shape).reshape(3, -1).astype(np.float64) * step
    mean = (idx * weights.ravel()).sum(axis=1) / weights.sum()  # (z, y, x)
    return image.TransformContinuousIndexToPhysicalPoint([float(mean[2]), float(mean[1]),
                                                          float(mean[0])])


__all__ = [
    "HEAD_LEVEL",
    "INSTALL_HINT",
    "MARGIN_MM",
    "METHODS",
    "OUTLINE_WARN",
    "REGISTRATION_WARN",
    "RegistrationScore",
    "RegistrationWarning",
    "PLANE_DISTANCE_WARN_MM",
    "RegistrationResult",
    "containment",
    "head_mask",
    "matrix_of",
    "outline_distance",
    "read_score",
    "register",
    "to_sitk_image",
]
