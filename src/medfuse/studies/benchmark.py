"""How fusion methods do on generated studies: anatomy kept, function kept, air kept black.

Why another benchmark: the Harvard-slice metrics (``medfuse eval``) score 8-bit atlas
pictures against themselves; they cannot say whether a PET lesion is still visible after
fusion, or whether the air around the head stays black, because the atlas has no ground
truth. A generated study (:mod:`medfuse.studies.generate`) has tissue labels and lesion
positions on the MRI grid, so each method is scored where it matters:

* **anatomy retention**: Pearson correlation of the Sobel gradient magnitude of the fused
  luminance with that of the MRI, over the head (1: every MRI edge kept at its strength);
* **function retention**: per lesion, the CIELAB distance between the mean colour of the
  lesion core (within 0.75 radius) and of a shell around it (radius + 3 mm to + 10 mm,
  inside the brain), in the fused image over the same in the coloured functional image
  (1: the lesion stands out as much as in the functional image alone; 0: it vanished);
  and **colour error** ΔE (CIE76) between the fused and the coloured functional image where
  the windowed functional value is high (at least ``high_level`` of its window);
* **background**: mean fused luminance in the air at least ``air_margin_mm`` from the head
  (0-255 scale) and the fraction of those pixels that are not black: any channel above
  5/255 (a dark blue glow from a colour map's low end has almost no luminance, but it is
  not black).

Every method goes through the real fusion path: the pair is read and planned by
:func:`medfuse.fusion.read_pair_plan` with the default windows and colour maps (or those in
:class:`BenchSettings`, so old and new defaults can be compared), slices come from
:func:`medfuse.fusion.prepared_slices`, GeSeNet weights run through
:func:`medfuse.fusion.fuse_prepared`. The two non-network methods are the usual references:
``composite`` (fused luminance = the MRI's, chroma from the coloured functional image
through the same chroma rule: anatomy exact by construction) and ``alpha`` (the functional
colour blended at ``alpha`` over the grey MRI where the windowed functional value is above
``alpha_threshold``, MRI grey elsewhere: what most viewers show).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medfuse.errors import UsageError

if TYPE_CHECKING:
    from medfuse.prepare.pair import PreparedPair
    from medfuse.studies.generate import Study

#: Luminance above which an air pixel counts as not black (0-1 scale).
AIR_LEVEL = 5.0 / 255.0
#: Built-in non-network methods.
REFERENCE_METHODS = ("composite", "alpha")


@dataclass(frozen=True)
class BenchSettings:
    """The choices a user could make differently: windows and colour maps per study kind
    (None: medfuse's defaults), which files to fuse, and the overlay's parameters."""

    label: str = "defaults"
    windows: dict[str, str] = field(default_factory=dict)
    mri_window: str | None = None
    colormaps: dict[str, str] = field(default_factory=dict)
    source: str = "dicom"  # which of a study's files are fused: "dicom" or "nifti"
    #: Further keyword arguments of :func:`medfuse.fusion.read_pair_plan` (options that
    #: newer planners add), passed as they are.
    plan_options: dict[str, Any] = field(default_factory=dict)
    alpha: float = 0.5
    alpha_threshold: float = 0.25
    high_level: float = 0.5
    air_margin_mm: float = 4.0


@dataclass(frozen=True)
class Method:
    """A fusion method: GeSeNet weights (``weights``), a reference rule (``composite``,
    ``alpha``) or a classical rule of :mod:`medfuse.baselines` (``rule``)."""

    name: str
    kind: str  # "weights", "composite", "alpha" or "rule"
    weights: Path | None = None
    #: Research variants of the colour path for ``weights`` methods (see
    #: :func:`variant_luminance`): ``gamut_map`` (fit, clip), ``luminance`` (what the
    #: functional image brings into the network: ``map``, the colour map's own; ``value``,
    #: the windowed value; ``matched``/``matched-value``, :func:`medfuse.colour.matched_luminance`
    #: of either), ``combine`` (``network``; ``detail``, the MRI's detail over the network's
    #: low frequencies; ``skip``, the chosen luminance without the network), ``strength``.
    options: dict[str, Any] = field(default_factory=dict, hash=False)


def default_methods(reference: Path | None = None, weights: Path | None = None) -> list[Method]:
    """medfuse's weights, the authors' checkpoint when given, composite and alpha."""
    from medfuse.engine import resolve_weights

    out = [Method("medfuse", "weights", resolve_weights(weights))]
    if reference is not None:
        out.append(Method("reference", "weights", Path(reference)))
    return out + [Method("composite", "composite"), Method("alpha", "alpha")]


# -- colour ----------------------------------------------------------------------------------

_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in [0, 1], (..., 3) -> (..., 3); grey (...) is taken as
    R = G = B. Display images are sRGB-encoded, so this is the colour a viewer shows."""
    arr = np.asarray(rgb, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    arr = np.clip(arr, 0.0, 1.0)
    linear = np.where(arr <= 0.04045, arr / 12.92, ((arr + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _WHITE_D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIE76 colour difference of two Lab arrays."""
    return np.sqrt(((np.asarray(a) - np.asarray(b)) ** 2).sum(axis=-1))


def luminance_of(image: np.ndarray) -> np.ndarray:
    """BT.601 luminance of an RGB image, the grey image itself otherwise."""
    from medfuse.colour import luminance

    return luminance(image) if image.ndim == 3 else np.asarray(image)


# -- the metrics, on plain arrays (tested on hand-made cases) ----------------------------------


def sobel_magnitude(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a 2-D image."""
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    return np.hypot(ndimage.sobel(img, 0, mode="nearest"), ndimage.sobel(img, 1, mode="nearest"))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (no edges to compare)."""
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / den if den > 0 else float("nan")


def anatomy_retention(fused_y: np.ndarray, mri_y: np.ndarray, mask: np.ndarray) -> float:
    """Correlation of the Sobel magnitudes of fused and MRI luminance inside ``mask``."""
    m = np.asarray(mask, bool)
    return pearson(sobel_magnitude(fused_y)[m], sobel_magnitude(mri_y)[m])


def lesion_contrast(image: np.ndarray, core: np.ndarray, shell: np.ndarray) -> float:
    """CIELAB distance between the mean colours of ``core`` and ``shell`` pixels."""
    lab = rgb_to_lab(image)
    return float(delta_e(lab[np.asarray(core, bool)].mean(axis=0),
                         lab[np.asarray(shell, bool)].mean(axis=0)))


def function_retention(fused: np.ndarray, other: np.ndarray, core: np.ndarray,
                       shell: np.ndarray) -> float:
    """Lesion contrast in the fused image over that in the coloured functional image."""
    ref = lesion_contrast(other, core, shell)
    return lesion_contrast(fused, core, shell) / ref if ref > 0 else float("nan")


def colour_error(fused: np.ndarray, other: np.ndarray, mask: np.ndarray) -> float:
    """Mean CIE76 ΔE between fused and functional colours inside ``mask``."""
    m = np.asarray(mask, bool)
    return float(delta_e(rgb_to_lab(fused)[m], rgb_to_lab(other)[m]).mean()) if m.any() else float("nan")


def background(fused: np.ndarray, air: np.ndarray, level: float = AIR_LEVEL) -> tuple[float, float]:
    """(mean luminance on a 0-255 scale, fraction of pixels with any channel above
    ``level``) over the ``air`` pixels of a grey or RGB image."""
    image = np.asarray(fused, np.float64)
    m = np.asarray(air, bool)
    if not m.any():
        return float("nan"), float("nan")
    peak = image.max(axis=-1) if image.ndim == 3 else image
    return float(luminance_of(image)[m].mean() * 255.0), float((peak[m] > level).mean())


def composite(pair: PreparedPair) -> np.ndarray:
    """The MRI's luminance coloured with the functional image's chroma (the chroma rule),
    each channel clipped: what any viewer's colour composite shows, whichever gamut map
    the fused image uses (a map that lowers luminance would change the baseline's
    anatomy)."""
    import dataclasses

    from medfuse.prepare.pair import colourise

    return colourise(pair.mri_y, dataclasses.replace(pair, gamut_map="clip"))


def alpha_overlay(mri_y: np.ndarray, other_image: np.ndarray, other_grey: np.ndarray,
                  alpha: float = 0.5, threshold: float = 0.25) -> np.ndarray:
    """The functional colour blended at ``alpha`` over the grey MRI where the windowed
    functional value exceeds ``threshold``; MRI grey elsewhere. RGB float32."""
    grey = np.repeat(np.asarray(mri_y, np.float32)[..., None], 3, axis=-1)
    colour = other_image if other_image.ndim == 3 else np.repeat(other_image[..., None], 3, -1)
    blend = (1.0 - alpha) * grey + alpha * colour.astype(np.float32)
    return np.where((np.asarray(other_grey) > threshold)[..., None], blend, grey).astype(np.float32)


# -- pooling over slices -----------------------------------------------------------------------


@dataclass
class _Pool:
    """Running sums of one method's metrics over the scored slices."""

    fused_grad: list[np.ndarray] = field(default_factory=list)
    mri_grad: list[np.ndarray] = field(default_factory=list)
    lab_sums: dict[str, np.ndarray] = field(default_factory=dict)
    de_sum: float = 0.0
    de_n: int = 0
    air_sum: float = 0.0
    air_above: int = 0
    air_n: int = 0
    lum_f: list[np.ndarray] = field(default_factory=list)
    lum_m: list[np.ndarray] = field(default_factory=list)
    edge_f: list[np.ndarray] = field(default_factory=list)
    edge_m: list[np.ndarray] = field(default_factory=list)
    #: Sums of fused and MRI luminance and pixel counts: grey matter, white matter, skull.
    tissue: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.tissue[key] = self.tissue.get(key, 0.0) + float(value)

    def add_lab(self, key: str, lab: np.ndarray, mask: np.ndarray) -> None:
        part = np.concatenate([lab[mask].sum(axis=0), [float(mask.sum())]])
        self.lab_sums[key] = self.lab_sums.get(key, np.zeros(4)) + part

    def mean_lab(self, key: str) -> np.ndarray | None:
        s = self.lab_sums.get(key)
        return None if s is None or s[3] == 0 else s[:3] / s[3]


@dataclass
class Scores:
    """One method on one study."""

    study: str
    method: str
    anatomy_r: float
    lesion_ratio: dict[str, float]
    delta_e_high: float
    background_mean: float
    air_above: float
    slices: int
    #: Mean CIELAB (L*, a*, b*) of each lesion's core and shell in the fused image and in
    #: the coloured functional image ("other_core", "other_shell"): shows which of
    #: lightness and colour a lesion ratio below 1 lost.
    lesion_lab: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: Pearson r of the fused luminance with the MRI's inside the brain (what a reader
    #: sees as "the MRI is still there"; edges alone do not see an inverted contrast).
    luminance_r: float = float("nan")
    #: Pearson r of the Sobel magnitudes (per slice, pooled) inside the brain.
    edge_r: float = float("nan")
    #: White-minus-grey mean fused luminance over the MRI's own (1: the step kept at its
    #: size; negative: inverted tissue contrast).
    step_kept: float = float("nan")
    #: Mean fused luminance in the skull over the functional image's shown luminance there
    #: (CT: is bone still white?).
    bone_kept: float = float("nan")
    #: The method's options (variants), for the record.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Case:
    """The masks of one scored slice, on the MRI grid's stack."""

    head: np.ndarray
    air: np.ndarray
    cores: dict[str, np.ndarray]
    shells: dict[str, np.ndarray]
    labels: np.ndarray | None = None  # the slice's tissue labels (0 air ... 5 white matter)

    @property
    def brain(self) -> np.ndarray:
        from medfuse.studies.generate import LESION_LABEL

        assert self.labels is not None
        return np.isin(self.labels, (3, 4, 5)) | (self.labels >= LESION_LABEL)


def _study_masks(study: Study, plan: Any, settings: BenchSettings) -> tuple[np.ndarray, ...]:
    """Head, far-air and brain masks, the labels and the stack affine, as (slice, row, column) stacks
    in the plan's display order (the MRI grid the plan fuses on)."""
    from scipy import ndimage

    from medfuse.io.geometry import stack_view
    from medfuse.studies.generate import LESION_LABEL

    labels = study.label_map()
    affine = np.asarray(study.mri_affine)
    voxel = float(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).min())
    far = ndimage.distance_transform_edt(labels == 0, sampling=voxel) > settings.air_margin_mm
    brain = np.isin(labels, (3, 4, 5)) | (labels >= LESION_LABEL)
    views = [stack_view(m, affine, plan.axis)[0] for m in (labels > 0, far, brain, labels)]
    stack_affine = stack_view(labels, affine, plan.axis)[1]
    if views[0].shape != (len(plan), *plan.plane_shape) or not np.allclose(
            stack_affine, plan.mri_stack.affine, atol=1e-3):
        raise UsageError(f"{study.directory}: labels.nii.gz is not on the MRI grid the plan "
                         "fuses on")
    return (*views, stack_affine)


def _lesion_masks(study: Study, stack_affine: np.ndarray, index: int, shape: tuple[int, int],
                  brain: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Core and shell of every lesion on slice ``index``, where the lesion shows in the
    fused image: its position in the functional file's world (moved when misaligned)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    pts = (stack_affine[:3, 0:1] * index + stack_affine[:3, 3:4])
    world = (stack_affine[:3, 1:2] @ rows.reshape(1, -1) + stack_affine[:3, 2:3] @ cols.reshape(1, -1)
             + pts)
    cores, shells = {}, {}
    for les in study.lesions:
        d = np.linalg.norm(world - np.asarray(les.centre_in_other_mm).reshape(3, 1), axis=0)
        d = d.reshape(shape)
        cores[les.name] = d <= 0.75 * les.radius_mm
        shells[les.name] = (d >= les.radius_mm + 3.0) & (d <= les.radius_mm + 10.0) & brain
    return cores, shells


def select_slices(study: Study, head: np.ndarray, stack_affine: np.ndarray,
                  count: int = 24) -> list[int]:
    """About ``count`` evenly spaced slices through the head (``head`` is the head mask as a
    slice stack), plus every slice that cuts a lesion core (so lesion scores pool the whole
    lesion)."""
    with_head = [i for i in range(head.shape[0]) if head[i].any()]
    if not with_head:
        raise UsageError(f"{study.directory}: no head in the MRI grid")
    step = max(1, len(with_head) // max(1, count))
    chosen = set(with_head[::step])
    inv = np.linalg.inv(stack_affine)
    spacing = float(np.linalg.norm(stack_affine[:3, 0]))
    for les in study.lesions:
        centre = inv @ np.append(les.centre_in_other_mm, 1.0)
        reach = 0.75 * les.radius_mm / spacing
        lo, hi = int(math.ceil(centre[0] - reach)), int(math.floor(centre[0] + reach))
        chosen.update(i for i in range(lo, hi + 1) if 0 <= i < head.shape[0])
    return sorted(chosen)


def lesion_slices(study: Study, stack_affine: np.ndarray, n: int) -> dict[str, int]:
    """The slice through each lesion's centre (for pictures)."""
    inv = np.linalg.inv(stack_affine)
    out = {}
    for les in study.lesions:
        k = int(round(float((inv @ np.append(les.centre_in_other_mm, 1.0))[0])))
        out[les.name] = min(max(k, 0), n - 1)
    return out


@dataclass
class StudyRun:
    """A study's scores per method and its picture rows."""

    scores: list[Scores]
    picture: list[list[np.ndarray]]
    picture_rows: list[str]
    plan: str


def score_study(
    study: Study,
    methods: Sequence[Method],
    settings: BenchSettings,
    engines: dict[str, Any],
    slices: Iterable[int] | None = None,
    batch_size: int = 8,
    count: int = 24,
) -> StudyRun:
    """Fuse the chosen slices of ``study`` with every method and score them (see the module
    docstring); ``engines`` maps method names of kind ``weights`` to loaded engines."""
    from medfuse import baselines
    from medfuse.fusion import fuse_prepared, prepared_slices, read_pair_plan

    mri, other = _files(study, settings.source)
    kind = study.kind
    common = dict(modality=kind, window=settings.windows.get(kind), mri_window=settings.mri_window,
                  **settings.plan_options)
    plan, _ = read_pair_plan(mri, other, colormap=settings.colormaps.get(kind), **common)
    grey_plan, _ = read_pair_plan(mri, other, colormap="none", **common)
    head, far_air, brain, labels, stack_affine = _study_masks(study, plan, settings)
    indices = sorted(slices) if slices is not None else select_slices(study, head, stack_affine, count)
    shown = lesion_slices(study, stack_affine, len(plan))
    pools = {m.name: _Pool() for m in methods}
    reference = _Pool()
    picture: dict[int, list[np.ndarray]] = {}
    for chunk, grey_chunk in zip(prepared_slices(plan, indices, batch_size),
                                 prepared_slices(grey_plan, indices, batch_size)):
        pairs = [p for _, p in chunk]
        greys = [g for _, g in grey_chunk]
        outputs: dict[str, list[np.ndarray]] = {}
        for m in methods:
            if m.kind == "weights" and m.options:
                outputs[m.name] = variant_fuse(pairs, greys, engines[m.name], m.options)
            elif m.kind == "weights":
                outputs[m.name] = [r.image for r in fuse_prepared(pairs, engines[m.name])]
            elif m.kind == "rule":
                outputs[m.name] = [r.image for r in baselines.fuse_prepared(pairs, m.name)]
            elif m.kind == "composite":
                outputs[m.name] = [composite(p) for p in pairs]
            elif m.kind == "alpha":
                outputs[m.name] = [alpha_overlay(p.mri_y, _shown_other(p), g.other_y,
                                                 settings.alpha, settings.alpha_threshold)
                                   for p, g in zip(pairs, greys)]
            else:
                raise UsageError(f"method {m.name}: unknown kind {m.kind!r}")
        for n, ((index, pair), grey) in enumerate(zip(chunk, greys)):
            case = _Case(head[index], far_air[index], *_lesion_masks(
                study, stack_affine, index, plan.plane_shape, brain[index]), labels[index])
            other_image = _shown_other(pair)
            other_lab = rgb_to_lab(other_image)
            high = (grey.other_y >= settings.high_level) & case.head
            for key, mask in (*(("core:" + k, v) for k, v in case.cores.items()),
                              *(("shell:" + k, v) for k, v in case.shells.items())):
                reference.add_lab(key, other_lab, mask)
            skull = case.labels == 2
            reference.add("skull_f", luminance_of(other_image)[skull].sum())
            mri_grad = sobel_magnitude(pair.mri_y)
            for m in methods:
                _accumulate(pools[m.name], outputs[m.name][n], other_lab, pair.mri_y, mri_grad,
                            case, high)
            if index in shown.values():
                picture[index] = [pair.mri_y, other_image] + [outputs[m.name][n] for m in methods]
    scores = [_finish(pools[m.name], reference, study, m, len(indices)) for m in methods]
    rows = [i for i in sorted(set(shown.values())) if i in picture]
    names = [", ".join(k for k, v in shown.items() if v == i) for i in rows]
    return StudyRun(scores, [picture[i] for i in rows],
                    [f"{study.name} {name} (slice {i})" for name, i in zip(names, rows)],
                    plan.describe())


#: Gaussian width (pixels, at least) of the ``detail`` combination's low-pass: the
#: network's luminance below this scale, the MRI's above it.
DETAIL_SIGMA = 3.0


def variant_luminance(pair: PreparedPair, grey: PreparedPair, options: dict[str, Any]) -> np.ndarray:
    """The luminance a variant gives the network as the functional input (see
    :attr:`Method.options`)."""
    from medfuse.colour import matched_luminance

    choice = str(options.get("luminance", "map"))
    base = grey.other_y if choice in ("value", "matched-value") else pair.other_y
    if choice in ("map", "value"):
        return base
    if choice in ("matched", "matched-value"):
        return matched_luminance(pair.mri_y, base, float(options.get("strength", 1.0)),
                                 options.get("radius"))
    raise UsageError(f"variant luminance {choice!r}: map, value, matched or matched-value")


def variant_fuse(pairs: Sequence[PreparedPair], greys: Sequence[PreparedPair], engine: Any,
                 options: dict[str, Any]) -> list[np.ndarray]:
    """Fuse with a variant of the colour path: the functional luminance the network sees,
    how its output meets the MRI's luminance, and the gamut map (:attr:`Method.options`)."""
    import dataclasses

    import cv2

    from medfuse.prepare.pair import check_gamut_map, colourise

    others = [variant_luminance(p, g, options) for p, g in zip(pairs, greys)]
    combine = str(options.get("combine", "network"))
    if combine == "skip":
        fused = others
    elif combine == "mri":
        fused = [p.mri_y for p in pairs]
    else:
        out, _, _ = engine.fuse_luminance(np.stack([p.mri_y for p in pairs]), np.stack(others))
        fused = list(out)
    if combine == "detail":
        def low(x: np.ndarray) -> np.ndarray:
            sigma = max(DETAIL_SIGMA, max(x.shape) / 64)
            return cv2.GaussianBlur(np.asarray(x, np.float32), (0, 0), sigma,
                                    borderType=cv2.BORDER_REFLECT)

        fused = [np.clip(p.mri_y - low(p.mri_y) + low(f), 0, 1) for p, f in zip(pairs, fused)]
    elif combine not in ("network", "skip", "mri"):
        raise UsageError(f"variant combine {combine!r}: network, detail, skip or mri")
    if options.get("gamut_map") == "desaturate":
        return [_desaturated(np.asarray(f, np.float32), p) for p, f in zip(pairs, fused)]
    gamut = check_gamut_map(options["gamut_map"]) if "gamut_map" in options else None
    return [colourise(np.asarray(f, np.float32),
                      dataclasses.replace(p, gamut_map=gamut) if gamut else p)
            for p, f in zip(pairs, fused)]


def _desaturated(fused_y: np.ndarray, pair: PreparedPair) -> np.ndarray:
    """:func:`medfuse.prepare.pair.colourise` with the chroma pulled in until it fits at
    the fused luminance (:func:`medfuse.colour.desaturate_to_fit`) instead of a gamut map
    that changes the luminance."""
    import dataclasses

    from medfuse.colour import desaturate_to_fit
    from medfuse.prepare.pair import colourise

    if not pair.colour:
        return colourise(fused_y, pair)
    y = np.where(pair.transparent, pair.mri_y, fused_y) if pair.transparent is not None else fused_y
    chroma = [desaturate_to_fit(y, cb, cr) for cb, cr in pair.chroma]
    return colourise(fused_y, dataclasses.replace(pair, chroma=chroma, gamut_map="clip"))


def _files(study: Study, source: str) -> tuple[Path, Path]:
    if source == "dicom":
        return study.path("mri_dicom"), study.path("other_dicom")
    if source == "nifti":
        return study.path("mri"), study.path("other")
    raise UsageError(f"source {source!r}: choose dicom or nifti")


def _shown_other(pair: PreparedPair) -> np.ndarray:
    """The functional plane as the user sees it (window and colour map applied)."""
    return pair.other_image if pair.other_image is not None else pair.other_y


def _accumulate(pool: _Pool, fused: np.ndarray, other_lab: np.ndarray, mri_y: np.ndarray,
                mri_grad: np.ndarray, case: _Case, high: np.ndarray) -> None:
    fused_y = luminance_of(fused)
    fused_grad = sobel_magnitude(fused_y)
    pool.fused_grad.append(fused_grad[case.head].astype(np.float32))
    pool.mri_grad.append(mri_grad[case.head].astype(np.float32))
    if case.labels is not None:
        brain = case.brain
        pool.lum_f.append(fused_y[brain].astype(np.float32))
        pool.lum_m.append(np.asarray(mri_y)[brain].astype(np.float32))
        pool.edge_f.append(fused_grad[brain].astype(np.float32))
        pool.edge_m.append(mri_grad[brain].astype(np.float32))
        for key, label in (("gm", 4), ("wm", 5), ("skull", 2)):
            m = case.labels == label
            pool.add(f"{key}_f", fused_y[m].sum())
            pool.add(f"{key}_m", np.asarray(mri_y)[m].sum())
            pool.add(f"{key}_n", m.sum())
    lab = rgb_to_lab(fused)
    for name, core in case.cores.items():
        pool.add_lab("core:" + name, lab, core)
        pool.add_lab("shell:" + name, lab, case.shells[name])
    if high.any():
        pool.de_sum += float(delta_e(lab[high], other_lab[high]).sum())
        pool.de_n += int(high.sum())
    air = fused_y[case.air]
    peak = fused.max(axis=-1) if fused.ndim == 3 else fused
    pool.air_sum += float(air.sum())
    pool.air_above += int((peak[case.air] > AIR_LEVEL).sum())
    pool.air_n += int(air.size)


def grey_white_step(pool: _Pool, source: str = "f") -> float:
    """Mean white-matter minus mean grey-matter luminance (``f`` fused, ``m`` MRI)."""
    t = pool.tissue
    if not t.get("gm_n") or not t.get("wm_n"):
        return float("nan")
    return t[f"wm_{source}"] / t["wm_n"] - t[f"gm_{source}"] / t["gm_n"]


def _cat_r(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return pearson(np.concatenate(a), np.concatenate(b)) if a else float("nan")


def _finish(pool: _Pool, reference: _Pool, study: Study, method: Method, n: int) -> Scores:
    ratios, labs = {}, {}
    for les in study.lesions:
        parts = [p.mean_lab(f"{k}:{les.name}") for p in (pool, reference) for k in ("core", "shell")]
        if any(p is None for p in parts):
            ratios[les.name] = float("nan")
            continue
        labs[les.name] = {k: [round(float(v), 2) for v in p] for k, p in
                          zip(("core", "shell", "other_core", "other_shell"), parts)}
        fused_c = float(delta_e(parts[0], parts[1]))
        other_c = float(delta_e(parts[2], parts[3]))
        ratios[les.name] = fused_c / other_c if other_c > 0 else float("nan")
    grad_f = np.concatenate(pool.fused_grad) if pool.fused_grad else np.zeros(0)
    grad_m = np.concatenate(pool.mri_grad) if pool.mri_grad else np.zeros(0)
    step_m = grey_white_step(pool, "m")
    skull_other = reference.tissue.get("skull_f", 0.0)
    return Scores(
        study=study.name, method=method.name,
        anatomy_r=pearson(grad_f, grad_m) if grad_f.size else float("nan"),
        lesion_ratio=ratios,
        lesion_lab=labs,
        delta_e_high=pool.de_sum / pool.de_n if pool.de_n else float("nan"),
        background_mean=pool.air_sum / pool.air_n * 255.0 if pool.air_n else float("nan"),
        air_above=pool.air_above / pool.air_n if pool.air_n else float("nan"),
        slices=n,
        luminance_r=_cat_r(pool.lum_f, pool.lum_m),
        edge_r=_cat_r(pool.edge_f, pool.edge_m),
        step_kept=(grey_white_step(pool, "f") / step_m
                   if math.isfinite(step_m) and abs(step_m) > 1e-6 else float("nan")),
        bone_kept=(pool.tissue.get("skull_f", 0.0) / skull_other
                   if skull_other > 0 and study.kind == "ct" else float("nan")),
        options=dict(method.options),
    )


#: The goals a default is held to (all at once), per study kind.
GOALS = {"luminance_r": 0.9, "edge_r": 0.95, "step_kept": 0.75, "lesion": 1.0,
         "ct_lesion": 0.5, "bone_kept": 0.75, "composite_margin": 0.02}


def goals_met(score: Scores, composite_score: Scores | None) -> dict[str, bool]:
    """Which goals ``score`` meets: anatomy (luminance r, edge r, grey/white step kept
    with its sign; within ``composite_margin`` of the composite's luminance r), and per
    lesion a ratio of at least 1 (CT: at least 0.5, with bone kept white) and at least the
    composite's."""
    g = GOALS
    out = {
        "luminance r": score.luminance_r >= g["luminance_r"],
        "edge r": score.edge_r >= g["edge_r"],
        "grey/white step": score.step_kept >= g["step_kept"],
    }
    if composite_score is not None:
        out["anatomy vs composite"] = (score.luminance_r
                                       >= composite_score.luminance_r - g["composite_margin"])
    ct = score.study.startswith("ct")
    for name, ratio in score.lesion_ratio.items():
        floor = g["ct_lesion"] if ct else g["lesion"]
        out[f"{name} lesion"] = ratio >= floor
        if composite_score is not None and not ct:
            out[f"{name} vs composite"] = ratio >= composite_score.lesion_ratio.get(name, math.inf)
    if ct:
        out["bone white"] = score.bone_kept >= g["bone_kept"]
    return out


# -- the whole benchmark -----------------------------------------------------------------------


@dataclass
class BenchmarkResult:
    """Scores of every method on every study, the settings, and the plans' descriptions."""

    settings: BenchSettings
    scores: list[Scores]
    plans: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"settings": asdict(self.settings), "meta": self.meta, "plans": self.plans,
                "scores": [asdict(s) for s in self.scores]}

    def write_json(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1, allow_nan=True) + "\n")
        return path

    def markdown(self) -> str:
        """The table: one row per study and method, the composite's values beside each."""
        head = ("| study | method | luminance r | edge r | grey/white step kept | lesions "
                "(ratio; composite) | bone kept | goals met | ΔE where high | air not black |")
        lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
        comp = {s.study: s for s in self.scores if s.method == "composite"}

        def num(v: float | None, fmt: str = ".3f") -> str:
            return "n/a" if v is None or not math.isfinite(v) else format(v, fmt)

        for s in self.scores:
            c = comp.get(s.study)
            les = ", ".join(
                f"{k} {num(v, '.2f')}"
                + (f" ({num(c.lesion_ratio.get(k), '.2f')})" if c is not None and c is not s else "")
                for k, v in s.lesion_ratio.items())
            met = goals_met(s, c)
            lines.append(
                f"| {s.study} | {s.method} | {num(s.luminance_r)} | {num(s.edge_r)} | "
                f"{num(s.step_kept, '.2f')} | {les} | {num(s.bone_kept, '.2f')} | "
                f"{sum(met.values())}/{len(met)} | {num(s.delta_e_high, '.1f')} | "
                f"{num(100 * s.air_above, '.1f')}% |")
        return "\n".join(lines) + "\n"


def run_benchmark(
    studies: Sequence[Study],
    methods: Sequence[Method],
    settings: BenchSettings,
    engine_loader: Callable[[Method], Any],
    picture_dir: Path | None = None,
    slices: dict[str, list[int]] | None = None,
    progress: Callable[[str], None] | None = None,
    count: int = 24,
    montage_dir: Path | None = None,
    montage_method: str | None = None,
) -> BenchmarkResult:
    """Score every method on every study; with ``picture_dir``, one PNG per study (rows:
    the slices through its lesions; columns: MRI | functional | each method); with
    ``montage_dir``, ``study-<name>.png`` per study: MRI | composite | fused
    (``montage_method``, default the first weights method) | functional."""
    from medfuse.io.images import write_image
    from medfuse.render import labelled_grid

    engines: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    for m in methods:
        if m.kind == "weights":
            key = str(m.weights)
            if key not in loaded:  # variants of one checkpoint share its engine
                loaded[key] = engine_loader(m)
            engines[m.name] = loaded[key]
    scores: list[Scores] = []
    plans: dict[str, str] = {}
    names = [m.name for m in methods]
    fused_name = montage_method or next((m.name for m in methods if m.kind == "weights"), None)
    for study in studies:
        run = score_study(study, methods, settings, engines,
                          None if slices is None else slices.get(study.name), count=count)
        scores += run.scores
        plans[study.name] = run.plan
        if progress is not None:
            progress(f"{study.name}: {run.scores[0].slices} slices scored")
        if picture_dir is not None and run.picture:
            picture_dir.mkdir(parents=True, exist_ok=True)
            grid = labelled_grid(run.picture, ["MRI", study.kind.upper()] + names,
                                 run.picture_rows)
            write_image(picture_dir / f"{study.name}.png", grid, force=True)
        if montage_dir is not None and run.picture and fused_name in names and "composite" in names:
            montage_dir.mkdir(parents=True, exist_ok=True)
            pick = [0, 2 + names.index("composite"), 2 + names.index(fused_name), 1]
            rows = [[row[i] for i in pick] for row in run.picture]
            grid = labelled_grid(rows, ["MRI", "composite", f"fused ({fused_name})",
                                        study.kind.upper()], run.picture_rows)
            write_image(montage_dir / f"study-{study.name}.png", grid, force=True)
    return BenchmarkResult(settings, scores, plans)


__all__ = [
    "AIR_LEVEL",
    "BenchSettings",
    "BenchmarkResult",
    "Method",
    "Scores",
    "StudyRun",
    "alpha_overlay",
    "anatomy_retention",
    "background",
    "colour_error",
    "composite",
    "default_methods",
    "delta_e",
    "function_retention",
    "goals_met",
    "grey_white_step",
    "lesion_contrast",
    "pearson",
    "rgb_to_lab",
    "run_benchmark",
    "score_study",
    "select_slices",
    "sobel_magnitude",
    "variant_fuse",
    "variant_luminance",
]
