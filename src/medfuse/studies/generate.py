"""Generate a study: an MRI and a PET, SPECT or CT of the same head, with known truth.

:func:`generate_study` writes, into one folder (staged, then renamed into place):

* ``mri.nii.gz``: T1 (or T2-like) on the anatomy grid (int16, 0..1000);
* ``pet.nii.gz`` (SUV, float32) | ``spect.nii.gz`` (counts, int16) | ``ct.nii.gz`` (HU, int16)
  on the modality's own grid: coarser, stored in another voxel order, optionally tilted;
* ``labels.nii.gz``: tissue labels on the MRI grid (0 air, 1 scalp, 2 skull, 3 CSF, 4 grey
  matter, 5 white matter; lesion *i* is ``LESION_LABEL + i``), what the benchmark scores in;
* with ``"dicom"`` in ``formats``: ``dicom/mri/`` (MR series), ``dicom/pet/`` (PET series in
  Bq/ml with everything SUV needs), ``dicom/spect.dcm`` (NM RECON TOMO multi-frame) or
  ``dicom/ct/``;
* ``study.json``: every fact above (lesions, grids, the misalignment, PET dose and times).

The functional image is the tissue mix of the anatomy (values from STUDIES.md) with lesions,
blurred to the modality's resolution, sampled onto its grid and given Poisson-like noise.
A misalignment is a rigid transform ``other_from_mri`` (world mm to world mm): the anatomy
at MRI-world point *p* appears in the functional file at ``other_from_mri @ p``. It is
applied to the functional file's affine (exact, no second interpolation).

Everything is deterministic by ``seed``: the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.errors import UsageError
from medfuse.studies.anatomy import TISSUES, Anatomy, load_anatomy

KINDS: tuple[str, ...] = ("pet", "spect", "ct")
FORMATS: tuple[str, ...] = ("nifti", "dicom")
#: Label of the first lesion in labels.nii.gz (lesion i is LESION_LABEL + i).
LESION_LABEL = 10
#: Where the head's centre is (MNI mm): the default centre of rotation of a misalignment.
HEAD_CENTRE = (0.0, -18.0, 16.0)

#: Tissue values per modality (STUDIES.md): FDG SUV at ~60 min, perfusion SPECT relative to
#: grey matter = 100, CT in HU; air is AIR[kind].
VALUES: dict[str, dict[str, float]] = {
    "pet": {"scalp": 1.0, "skull": 0.5, "csf": 0.35, "gm": 7.5, "wm": 2.5},
    "spect": {"scalp": 8.0, "skull": 6.0, "csf": 10.0, "gm": 100.0, "wm": 48.0},
    "ct": {"scalp": 10.0, "skull": 1200.0, "csf": 8.0, "gm": 40.0, "wm": 25.0},
}
AIR = {"pet": 0.0, "spect": 0.0, "ct": -1000.0}
UNITS = {"pet": "SUVbw", "spect": "counts", "ct": "HU"}
#: T2-like MR: the tissue remap (fluid brightest, white matter darker than grey).
T2_VALUES = {"scalp": 0.55, "skull": 0.04, "csf": 1.0, "gm": 0.62, "wm": 0.38}
#: Effective resolution (FWHM, mm) of the reconstructed functional image.
FWHM_MM = {"pet": 5.0, "spect": 10.0, "ct": 0.0}
#: Noise: coefficient of variation in grey matter (PET, SPECT), HU (CT), MR fraction of 1.
NOISE = {"pet": 0.10, "spect": 0.08, "ct": 4.0, "mri": 0.012}
#: SPECT counts per relative unit (grey matter ~2000 counts per voxel).
SPECT_COUNTS = 20.0
#: CT skull: cortical tables and diploe vary, +-350 HU around the table value.
SKULL_TEXTURE_HU = 350.0
#: MR values are stored as int16 of this many steps per unit of signal.
MR_SCALE = 1000.0
F18_HALF_LIFE_S = 6586.2


@dataclass(frozen=True)
class Rigid:
    """A rigid transform: rotations about x (left-right), then y (posterior-anterior), then
    z (inferior-superior), in degrees, about ``centre_mm``, then a translation in mm. RAS
    world coordinates throughout."""

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    centre_mm: tuple[float, float, float] = HEAD_CENTRE

    def matrix(self) -> np.ndarray:
        """The 4x4 world-to-world matrix: p' = R (p - c) + c + t."""
        ax, ay, az = (math.radians(a) for a in self.rotation_deg)
        rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
        ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
        rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
        r = rz @ ry @ rx
        c = np.asarray(self.centre_mm, np.float64)
        out = np.eye(4)
        out[:3, :3] = r
        out[:3, 3] = c - r @ c + np.asarray(self.translation_mm, np.float64)
        return out


@dataclass(frozen=True)
class Grid:
    """A functional image's voxel grid: spacing (mm per voxel axis), the anatomical direction
    each voxel axis points to (``LPS``: i to the left, j posterior, k superior, as DICOM
    axial slices are stored) and a gantry-style tilt about the left-right axis (degrees;
    non-zero gives an oblique grid)."""

    spacing: tuple[float, float, float]
    orientation: str = "RAS"
    tilt_deg: float = 0.0

    def directions(self) -> np.ndarray:
        """Unit vectors (columns) of the voxel axes in RAS, tilt included."""
        unit = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0),
                "S": (0, 0, 1), "I": (0, 0, -1)}
        axis = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
        codes = self.orientation.upper()
        if len(codes) != 3 or any(c not in unit for c in codes) or {axis[c] for c in codes} != {0, 1, 2}:
            raise UsageError(f"grid orientation {self.orientation!r}: three letters naming "
                             "three different axes, e.g. RAS or LPS")
        d = np.array([unit[c] for c in codes], dtype=np.float64).T
        t = math.radians(self.tilt_deg)
        tilt = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
        return tilt @ d

    def layout(self, lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray]:
        """Shape and affine of a grid of this kind centred on, and covering, the world box
        ``lo``..``hi``."""
        d = self.directions()
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                            for z in (lo[2], hi[2])])
        centre = (np.asarray(lo) + np.asarray(hi)) / 2.0
        extent = np.ptp((corners - centre) @ d, axis=0)
        spacing = np.asarray(self.spacing, np.float64)
        shape = tuple(int(math.floor(e / s + 1e-6)) + 1 for e, s in zip(extent, spacing))
        lin = d * spacing
        affine = np.eye(4)
        affine[:3, :3] = lin
        affine[:3, 3] = centre - lin @ ((np.asarray(shape) - 1) / 2.0)
        return shape, affine  # type: ignore[return-value]


#: Default grids: PET 3 mm stored L-P-S (a flipped affine), SPECT 4 mm RAS, CT 1 mm in
#: plane with 2.5 mm slices stored L-P-I (slices from the top down).
DEFAULT_GRIDS = {
    "pet": Grid((3.0, 3.0, 3.0), "LPS"),
    "spect": Grid((4.0, 4.0, 4.0), "RAS"),
    "ct": Grid((1.0, 1.0, 2.5), "LPI"),
}


@dataclass(frozen=True)
class LesionSpec:
    """A spherical lesion asked for: centre in MRI-world (MNI) mm, radius, and its value:
    an absolute value in the modality's units, or (``relative``) a factor on the tissue
    there. ``mri_factor`` scales the T1 signal inside it (T2: the reciprocal)."""

    name: str
    kind: str  # "hot" or "cold"
    centre_mm: tuple[float, float, float]
    radius_mm: float
    value: float
    relative: bool = False
    mri_factor: float = 1.0


#: Default lesions: a hot one in the right frontal lobe, a cold one in the left
#: temporo-parietal cortex (FDG: tumour SUV 12 and 65% hypometabolism; SPECT: ictal
#: hyperperfusion x1.6 and a 70% perfusion defect; CT: a 65 HU haematoma in the right
#: putamen and a 14 HU infarct).
DEFAULT_LESIONS: dict[str, tuple[LesionSpec, ...]] = {
    "pet": (LesionSpec("hot", "hot", (38.0, 20.0, 34.0), 7.0, 12.0, mri_factor=0.85),
            LesionSpec("cold", "cold", (-44.0, -30.0, 14.0), 9.0, 0.35, relative=True)),
    "spect": (LesionSpec("hot", "hot", (38.0, 20.0, 34.0), 8.0, 1.6, relative=True),
              LesionSpec("cold", "cold", (-44.0, -30.0, 14.0), 10.0, 0.3, relative=True)),
    "ct": (LesionSpec("hot", "hot", (24.0, 2.0, 4.0), 8.0, 65.0),
           LesionSpec("cold", "cold", (-44.0, -30.0, 14.0), 10.0, 14.0)),
}
#: Seeded jitter of lesion centres (uniform, +-mm per axis), so seeds differ in more than noise.
LESION_JITTER_MM = 3.0


@dataclass
class Lesion:
    """A lesion as generated: where it is in the MRI's world and where it appears in the
    functional file's world (the same point unless the study is misaligned)."""

    name: str
    kind: str
    label: int
    centre_mm: list[float]
    centre_in_other_mm: list[float]
    radius_mm: float
    value: float
    relative: bool


@dataclass
class PetFacts:
    """The header facts SUVbw is computed from: SUV = C [Bq/ml] * weight [g] /
    (dose [Bq] * 2^(-(series time - injection time) / half-life))."""

    weight_kg: float
    injected_dose_bq: float
    injection_time: str  # HHMMSS
    series_time: str  # HHMMSS: the decay-correction reference (DecayCorrection START)
    study_date: str
    half_life_s: float = F18_HALF_LIFE_S

    @property
    def uptake_s(self) -> float:
        def secs(t: str) -> float:
            return int(t[:2]) * 3600 + int(t[2:4]) * 60 + float(t[4:])

        return secs(self.series_time) - secs(self.injection_time)

    @property
    def suv_per_bqml(self) -> float:
        """SUV of 1 Bq/ml."""
        decayed = self.injected_dose_bq * 2.0 ** (-self.uptake_s / self.half_life_s)
        return self.weight_kg * 1000.0 / decayed


@dataclass
class Study:
    """A generated study: where its files are and the truth they were made from.

    ``files`` maps roles (``mri``, ``other``, ``labels``, ``mri_dicom``, ``other_dicom``) to
    paths relative to ``directory``; ``other_from_mri`` is the rigid misalignment (identity
    when aligned); ``other_affine`` is the functional NIfTI's affine as written.
    """

    kind: str
    directory: Path
    seed: int
    resolution: float
    anatomy: str
    mri_contrast: str
    units: str
    files: dict[str, str]
    lesions: list[Lesion]
    other_from_mri: list[list[float]]
    misalignment: dict[str, Any] | None
    mri_affine: list[list[float]]
    mri_shape: list[int]
    other_affine: list[list[float]]
    grid: dict[str, Any]
    values: dict[str, float]
    pet: PetFacts | None = None
    labels_legend: dict[str, str] = field(default_factory=dict)
    #: False: the MRI is skull-stripped (zero outside the brain and its CSF), as many
    #: research MRIs and the MNI templates are; True: scalp and skull are in it.
    mri_skull: bool = True

    @property
    def name(self) -> str:
        """The study's case name: the kind, then ``-t2`` and ``-stripped`` when they apply
        (``pet``, ``pet-t2``, ``spect-stripped``): what tables and pictures are keyed by."""
        return (self.kind + ("-t2" if self.mri_contrast == "t2" else "")
                + ("" if self.mri_skull else "-stripped"))

    def path(self, role: str) -> Path:
        if role not in self.files:
            raise UsageError(f"this {self.kind} study has no {role} file (has: "
                             f"{', '.join(self.files)})")
        return self.directory / self.files[role]

    @property
    def mri_path(self) -> Path:
        """The MRI file to fuse: NIfTI when written, else the DICOM series."""
        return self.path("mri" if "mri" in self.files else "mri_dicom")

    @property
    def other_path(self) -> Path:
        return self.path("other" if "other" in self.files else "other_dicom")

    @property
    def transform(self) -> np.ndarray:
        return np.asarray(self.other_from_mri, np.float64)

    def label_map(self) -> np.ndarray:
        """Labels on the MRI grid, (i, j, k) uint8 with ``mri_affine``."""
        import nibabel as nib

        return np.asarray(nib.load(self.path("labels")).dataobj, dtype=np.uint8)

    def masks(self) -> dict[str, np.ndarray]:
        """Boolean masks on the MRI grid: ``head``, ``air``, ``brain`` (grey, white matter,
        CSF inside the skull and lesions), each tissue, and ``lesion:<name>``."""
        labels = self.label_map()
        out = {"head": labels > 0, "air": labels == 0,
               "brain": np.isin(labels, (3, 4, 5)) | (labels >= LESION_LABEL)}
        for i, tissue in enumerate(TISSUES[1:], start=1):
            out[tissue] = labels == i
        for lesion in self.lesions:
            out[f"lesion:{lesion.name}"] = labels == lesion.label
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything but the folder (a study stays valid when moved, and one seed gives
        byte-identical folders wherever they are written)."""
        data = asdict(self)
        del data["directory"]
        return data

    def save(self, folder: Path | None = None) -> Path:
        """Write study.json into ``folder`` (default: the study's own)."""
        path = (folder or self.directory) / "study.json"
        path.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Study:
        """A study written by :func:`generate_study` (its study.json), wherever it now is."""
        d = Path(directory)
        data = json.loads((d / "study.json").read_text())
        data["directory"] = d
        data["lesions"] = [Lesion(**x) for x in data["lesions"]]
        data["pet"] = PetFacts(**data["pet"]) if data.get("pet") else None
        return cls(**data)

    def describe(self) -> str:
        lines = [f"{self.kind.upper()} study (seed {self.seed}, {self.anatomy} anatomy at "
                 f"{self.resolution:g} mm, {self.mri_contrast.upper()} MRI"
                 f"{'' if self.mri_skull else ', skull-stripped'}) in {self.directory}"]
        for role, rel in self.files.items():
            lines.append(f"  {role:<12} {rel}")
        for les in self.lesions:
            c = ", ".join(f"{v:.1f}" for v in les.centre_mm)
            lines.append(f"  lesion {les.name} ({les.kind}) at ({c}) mm, radius {les.radius_mm:g}")
        if self.misalignment:
            lines.append(f"  misaligned: {self.misalignment}")
        return "\n".join(lines)


# -- building blocks -----------------------------------------------------------------------


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent random streams per purpose, so adding a lesion never changes the noise."""
    names = ("lesions", "mri", "other", "texture", "pet")
    seqs = np.random.SeedSequence([int(seed), 20240315]).spawn(len(names))
    return {n: np.random.default_rng(s) for n, s in zip(names, seqs)}


def _lesions(kind: str, specs: tuple[LesionSpec, ...] | list[LesionSpec] | None,
             rng: np.random.Generator, transform: np.ndarray) -> list[tuple[LesionSpec, Lesion]]:
    chosen = DEFAULT_LESIONS[kind] if specs is None else tuple(specs)
    out = []
    for i, spec in enumerate(chosen):
        if spec.kind not in ("hot", "cold"):
            raise UsageError(f"lesion {spec.name!r}: kind must be hot or cold, not {spec.kind!r}")
        jitter = rng.uniform(-LESION_JITTER_MM, LESION_JITTER_MM, 3) if specs is None else np.zeros(3)
        centre = np.asarray(spec.centre_mm, np.float64) + jitter
        centre = np.round(centre, 3)
        moved = (transform @ np.append(centre, 1.0))[:3]
        out.append((spec, Lesion(spec.name, spec.kind, LESION_LABEL + i,
                                 [float(v) for v in centre], [float(v) for v in np.round(moved, 6)],
                                 float(spec.radius_mm), float(spec.value), bool(spec.relative))))
    return out


def _sphere_fraction(anatomy: Anatomy, lesion: Lesion) -> tuple[tuple[slice, ...], np.ndarray]:
    """Partial-volume fraction of a spherical lesion, computed only in its bounding box
    (the index box and the fractions there): a 1 mm head has 8.6 M voxels, a lesion ~3000."""
    inv = np.linalg.inv(anatomy.affine)
    centre = inv[:3, :3] @ np.asarray(lesion.centre_mm) + inv[:3, 3]
    reach = (lesion.radius_mm + 2 * anatomy.resolution) / anatomy.resolution
    box = tuple(slice(max(0, int(np.floor(c - reach))), min(n, int(np.ceil(c + reach)) + 1))
                for c, n in zip(centre, anatomy.shape))
    idx = np.indices(tuple(b.stop - b.start for b in box), dtype=np.float64)
    idx += np.array([b.start for b in box], np.float64).reshape(3, 1, 1, 1)
    world = np.einsum("ij,j...->i...", anatomy.affine[:3, :3], idx)
    world += anatomy.affine[:3, 3].reshape(3, 1, 1, 1)
    dist = np.sqrt(sum((world[i] - lesion.centre_mm[i]) ** 2 for i in range(3)))
    frac = np.clip(0.5 - (dist - lesion.radius_mm) / anatomy.resolution, 0.0, 1.0)
    return box, frac.astype(np.float32)


def _apply_lesion(image: np.ndarray, box: tuple[slice, ...], frac: np.ndarray,
                  lesion: Lesion) -> None:
    part = image[box]
    if lesion.relative:
        part *= 1.0 - frac * (1.0 - np.float32(lesion.value))
    else:
        part *= 1.0 - frac
        part += frac * np.float32(lesion.value)


def _correlated_noise(shape: tuple[int, ...], rng: np.random.Generator, sigma_vox: float) -> np.ndarray:
    """Unit-variance Gaussian noise correlated over ``sigma_vox`` voxels, as reconstructed
    emission images have (white noise would look like no scanner's)."""
    from scipy import ndimage

    noise = rng.standard_normal(shape, dtype=np.float32)
    if sigma_vox > 0:
        noise = ndimage.gaussian_filter(noise, sigma_vox)
    return (noise / max(float(noise.std()), 1e-6)).astype(np.float32)


def _sample(image: np.ndarray, image_affine: np.ndarray, shape: tuple[int, int, int],
            affine: np.ndarray, outside: float) -> np.ndarray:
    """Trilinear samples of ``image`` at the voxel centres of another grid (``outside``
    beyond the image)."""
    from scipy import ndimage

    to_image = np.linalg.inv(image_affine) @ affine
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    coords = to_image[:3, :3].astype(np.float32) @ idx + to_image[:3, 3:4].astype(np.float32)
    del idx
    out = ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=outside,
                                  output=np.float32, prefilter=False)
    return out.reshape(shape)


def _functional_truth(kind: str, anatomy: Anatomy, lesions: list[Lesion],
                      rng: np.random.Generator) -> np.ndarray:
    """The functional image on the anatomy grid, before blurring: tissue mix plus lesions
    (CT: with a textured skull)."""
    from scipy import ndimage

    image = anatomy.mix(VALUES[kind], air=AIR[kind])
    if kind == "ct":
        tex = ndimage.gaussian_filter(rng.standard_normal(anatomy.shape, dtype=np.float32),
                                      2.0 / anatomy.resolution)
        tex /= max(float(np.abs(tex).max()), 1e-6)
        image += anatomy.fractions["skull"] * tex * np.float32(SKULL_TEXTURE_HU)
    for lesion in lesions:
        _apply_lesion(image, *_sphere_fraction(anatomy, lesion), lesion)
    return image.astype(np.float32)


def _mri(anatomy: Anatomy, contrast: str, lesions: list[tuple[LesionSpec, Lesion]],
         rng: np.random.Generator, skull: bool = True) -> np.ndarray:
    if contrast == "t1":
        image = anatomy.t1.copy()
    elif contrast == "t2":
        image = anatomy.mix(T2_VALUES)
    else:
        raise UsageError(f"MRI contrast {contrast!r}: choose t1 or t2")
    for spec, lesion in lesions:
        if spec.mri_factor != 1.0:
            factor = spec.mri_factor if contrast == "t1" else 1.0 / spec.mri_factor
            box, frac = _sphere_fraction(anatomy, lesion)
            image[box] *= 1.0 - frac * np.float32(1.0 - factor)
    if not skull:
        # Skull-stripped: what a brain-extraction tool leaves (brain and the CSF around it),
        # with the partial-volume edge of that mask; the noise floor stays in the air.
        f = anatomy.fractions
        image *= np.clip(f["gm"] + f["wm"] + f["csf"], 0.0, 1.0)
    # Magnitude images: noise on the signal, then the magnitude (Rician-like in the air).
    noisy = np.abs(image + rng.standard_normal(image.shape, dtype=np.float32)
                   * np.float32(NOISE["mri"]))
    return np.clip(np.rint(noisy * MR_SCALE), 0, 32767).astype(np.int16)


def _labels(anatomy: Anatomy, lesions: list[Lesion]) -> np.ndarray:
    labels = anatomy.labels()
    for lesion in lesions:
        box, frac = _sphere_fraction(anatomy, lesion)
        part = labels[box]
        part[(frac >= 0.5) & (part > 0)] = lesion.label
    return labels


def _pet_facts(rng: np.random.Generator) -> PetFacts:
    weight = round(float(rng.uniform(55.0, 95.0)), 1)
    dose = round(float(rng.uniform(185e6, 370e6)), -5)
    uptake = 3600 + int(rng.integers(-300, 900))
    start = 9 * 3600 + 30 * 60
    scan = start + uptake

    def hms(t: int) -> str:
        return f"{t // 3600:02d}{t // 60 % 60:02d}{t % 60:02d}"

    return PetFacts(weight, dose, hms(start), hms(scan), "20240315")


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, description: str) -> None:
    """NIfTI with sform/qform "scanner"; gzip without a timestamp or a file name in its
    header, so one seed gives byte-identical files (the study folder is staged, so a plain
    write is enough)."""
    import gzip

    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, np.float64))
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    img.header.set_xyzt_units(xyz="mm")
    img.header["descrip"] = description[:79].encode("ascii", "replace")
    path.write_bytes(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0))


def generate_study(
    kind: str,
    out_dir: str | Path,
    *,
    resolution: float = 2,
    seed: int = 0,
    misalign: Rigid | None = None,
    formats: tuple[str, ...] | list[str] = ("nifti",),
    anatomy: str = "auto",
    mri_contrast: str = "t1",
    mri_skull: bool = True,
    grid: Grid | None = None,
    lesions: tuple[LesionSpec, ...] | list[LesionSpec] | None = None,
    noise: bool = True,
    blur: bool = True,
    force: bool = False,
) -> Study:
    """Write an MRI + ``kind`` (pet, spect, ct) study into ``out_dir`` and describe it.

    ``resolution``: MRI voxel size (1 or 2 mm for the MNI anatomy, any for the phantom);
    ``anatomy``: ``auto`` (MNI152 when nilearn is installed), ``mni`` or ``phantom``;
    ``grid``: the functional image's grid (default :data:`DEFAULT_GRIDS`); ``lesions``:
    None for the defaults (seed-jittered), ``()`` for none; ``mri_skull`` False gives a
    skull-stripped MRI (the functional image keeps its skull and scalp); ``noise``/``blur`` off give the
    exact tissue model (tests of geometry). The folder is written whole or not at all.
    """
    from medfuse.io.outputs import StagedFolder

    kind = kind.strip().lower()
    if kind not in KINDS:
        raise UsageError(f"study kind {kind!r}: choose one of {', '.join(KINDS)}")
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"formats {list(formats)}: choose from {', '.join(FORMATS)}")
    if mri_contrast not in ("t1", "t2"):
        raise UsageError(f"MRI contrast {mri_contrast!r}: choose t1 or t2")
    anat = load_anatomy(resolution, anatomy)
    rng = _streams(seed)
    transform = misalign.matrix() if misalign is not None else np.eye(4)
    placed = _lesions(kind, lesions, rng["lesions"], transform)
    found = [les for _, les in placed]
    grid = grid or DEFAULT_GRIDS[kind]

    # Functional image: truth on the anatomy grid, blurred, sampled on its own grid, noisy.
    from scipy import ndimage

    truth = _functional_truth(kind, anat, found, rng["texture"])
    if blur and FWHM_MM[kind] > 0:
        sigma = FWHM_MM[kind] / (2.0 * math.sqrt(2.0 * math.log(2.0))) / anat.resolution
        air = AIR[kind]
        truth = ndimage.gaussian_filter(truth - air, sigma, mode="constant") + air
    lo, hi = anat.affine[:3, 3], anat.affine[:3, 3] + anat.affine[:3, :3] @ (np.asarray(anat.shape) - 1)
    shape, grid_affine = grid.layout(lo, hi)
    values = _sample(truth, anat.affine, shape, grid_affine, AIR[kind])
    del truth
    if noise:
        field_ = _correlated_noise(shape, rng["other"], 0.7 if kind != "ct" else 0.0)
        if kind == "ct":
            values += field_ * np.float32(NOISE["ct"])
        else:
            gm = VALUES[kind]["gm"]
            values += field_ * np.float32(NOISE[kind]) * np.sqrt(np.maximum(values, 0) * gm)
            np.maximum(values, 0, out=values)
    if kind == "spect":
        values *= np.float32(SPECT_COUNTS)  # relative units -> counts, NIfTI and DICOM alike
    other_affine = transform @ grid_affine
    mri = _mri(anat, mri_contrast, placed, rng["mri"], skull=mri_skull)
    labels = _labels(anat, found)
    pet = _pet_facts(rng["pet"]) if kind == "pet" else None

    files: dict[str, str] = {"labels": "labels.nii.gz"}
    out = Path(out_dir)
    with StagedFolder(out, force=force, label="study folder") as staged:
        root = staged.tmp
        _write_nifti(root / "labels.nii.gz", labels, anat.affine, "medfuse study labels")
        if "nifti" in formats:
            files["mri"] = "mri.nii.gz"
            files["other"] = f"{kind}.nii.gz"
            _write_nifti(root / files["mri"], mri, anat.affine, f"synthetic {mri_contrast.upper()}")
            stored = (values.astype(np.float32) if kind == "pet"
                      else np.clip(np.rint(values), -32768, 32767).astype(np.int16))
            _write_nifti(root / files["other"], stored, other_affine,
                         f"synthetic {kind.upper()} in {UNITS[kind]}")
        if "dicom" in formats:
            files.update(_write_dicom(root, kind, seed, mri, anat.affine, values, other_affine,
                                      pet, mri_contrast, aligned=misalign is None))
        study = Study(
            kind=kind, directory=out, seed=int(seed), resolution=float(anat.resolution),
            anatomy=anat.source, mri_contrast=mri_contrast, units=UNITS[kind], files=files,
            lesions=found, other_from_mri=transform.tolist(),
            misalignment=asdict(misalign) if misalign is not None else None,
            mri_affine=anat.affine.tolist(), mri_shape=list(anat.shape),
            other_affine=other_affine.tolist(),
            grid=asdict(grid), pet=pet,
            values=dict(VALUES[kind], air=AIR[kind])
            | ({"counts_per_unit": SPECT_COUNTS} if kind == "spect" else {}),
            labels_legend={str(i): t for i, t in enumerate(TISSUES)}
            | {str(les.label): f"lesion {les.name} ({les.kind})" for les in found},
            mri_skull=bool(mri_skull),
        )
        study.save(root)
    return study


def _write_dicom(root: Path, kind: str, seed: int, mri: np.ndarray, mri_affine: np.ndarray,
                 values: np.ndarray, other_affine: np.ndarray, pet: PetFacts | None,
                 contrast: str, aligned: bool) -> dict[str, str]:
    """The DICOM side of a study; one frame of reference when aligned (as a hybrid scanner
    writes), two when misaligned (separate scanners)."""
    from medfuse.studies import dicom_out as dc

    key = f"{kind}-{seed}"
    date = pet.study_date if pet is not None else "20240315"
    ctx = dc.DicomContext.create(key, f"medfuse synthetic MRI + {kind.upper()}", date, "091500",
                                 pet.weight_kg if pet is not None else None)
    mri_frame = dc.make_uid(key, "frame", "mri")
    other_frame = mri_frame if aligned else dc.make_uid(key, "frame", kind)
    files = {"mri_dicom": "dicom/mri"}
    p99 = float(np.percentile(mri, 99.5))

    def mr_extra(ds: Any, k: int) -> None:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence = "GR" if contrast == "t1" else "SE"
        ds.SequenceVariant = "SP"
        ds.MRAcquisitionType = "3D"
        ds.MagneticFieldStrength = dc.ds_value(3.0)
        ds.RepetitionTime = dc.ds_value(2300.0 if contrast == "t1" else 3200.0)
        ds.EchoTime = dc.ds_value(2.98 if contrast == "t1" else 409.0)
        ds.WindowCenter = dc.ds_value(p99 / 2.0)
        ds.WindowWidth = dc.ds_value(p99)

    dc.write_series(root / "dicom" / "mri", mri, mri_affine, "MR", ctx, series_number=1,
                    description=f"synthetic {contrast.upper()}", frame_uid=mri_frame,
                    extra=mr_extra)
    if kind == "pet":
        assert pet is not None
        bqml = values / np.float32(pet.suv_per_bqml)
        oriented, aff = dc.dicom_order(bqml, other_affine)
        stored, slopes = dc.quantise_per_slice(oriented)
        dc.write_series(root / "dicom" / "pet", stored, aff, "PT", ctx, series_number=2,
                        description="synthetic FDG PET (Bq/ml)", frame_uid=other_frame,
                        slopes=slopes, extra=dc.pet_attributes(pet, stored.shape[2]))
        files["other_dicom"] = "dicom/pet"
    elif kind == "spect":
        counts = np.clip(np.rint(values), 0, 65535).astype(np.uint16)
        dc.write_nm(root / "dicom" / "spect.dcm", counts, other_affine, ctx, series_number=2,
                    description="synthetic perfusion SPECT", frame_uid=other_frame)
        files["other_dicom"] = "dicom/spect.dcm"
    else:
        stored = np.clip(np.rint(values) + 1024, 0, 32767).astype(np.int16)

        def ct_extra(ds: Any, k: int) -> None:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.KVP = dc.ds_value(120.0)
            ds.RescaleType = "HU"
            ds.WindowCenter = [dc.ds_value(40.0), dc.ds_value(600.0)]
            ds.WindowWidth = [dc.ds_value(80.0), dc.ds_value(2800.0)]

        dc.write_series(root / "dicom" / "ct", stored, other_affine, "CT", ctx, series_number=2,
                        description="synthetic head CT", frame_uid=other_frame, intercept=-1024.0,
                        extra=ct_extra)
        files["other_dicom"] = "dicom/ct"
    return files


__all__ = [
    "AIR",
    "DEFAULT_GRIDS",
    "DEFAULT_LESIONS",
    "FORMATS",
    "KINDS",
    "LESION_LABEL",
    "UNITS",
    "VALUES",
    "Grid",
    "Lesion",
    "LesionSpec",
    "PetFacts",
    "Rigid",
    "Study",
    "generate_study",
]
