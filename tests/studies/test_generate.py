"""Generated studies: deterministic by seed, lesions where the study says (read back through
medfuse's readers, NIfTI and DICOM, incl. the NM file's geometry), SUV exactly recoverable
from the DICOM PET header, the misalignment recorded. Small phantom studies (4 mm MRI, coarse
functional grids) keep these fast; the MNI anatomy has one test of its own."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from medfuse.errors import UsageError
from medfuse.io.geometry import canonical_view, orientation_codes
from medfuse.io.read import read
from medfuse.studies import Grid, LesionSpec, Rigid, Study, generate_study
from medfuse.studies.anatomy import TISSUES, load_anatomy, nilearn_available
from medfuse.studies.generate import LESION_LABEL

RES = 4.0  # phantom MRI voxel size for tests
PET_GRID = Grid((6.0, 6.0, 6.0), "LPS")
MISALIGN = Rigid(rotation_deg=(4.0, -3.0, 7.0), translation_mm=(5.0, -4.0, 3.0))


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _world_centroid(volume, weights: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    idx = np.argwhere(weights > 0).astype(np.float64)
    w = weights[weights > 0].astype(np.float64)
    centre = (idx * w[:, None]).sum(axis=0) / w.sum()
    return (volume.affine @ np.append(centre, 1.0))[:3]


def _values(volume) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray(volume.data, np.float64) * volume.slope + volume.inter


def _near(volume, point: np.ndarray, radius: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Voxels of ``volume`` within ``radius`` mm of a world point."""
    idx = np.indices(volume.shape, dtype=np.float64).reshape(3, -1)
    world = volume.affine[:3, :3] @ idx + volume.affine[:3, 3:4]
    return (np.linalg.norm(world - point.reshape(3, 1), axis=0) <= radius).reshape(volume.shape)


@pytest.fixture(scope="module")
def pet_study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """A misaligned PET study, noise and blur off (exact tissue model), NIfTI and DICOM."""
    return generate_study("pet", tmp_path_factory.mktemp("pet") / "study", resolution=RES,
                          anatomy="phantom", seed=3, misalign=MISALIGN, grid=PET_GRID,
                          formats=("nifti", "dicom"), noise=False, blur=False)


def test_same_seed_gives_byte_identical_folders(tmp_path: Path) -> None:
    kw = dict(resolution=6.0, anatomy="phantom", grid=Grid((8.0, 8.0, 8.0), "LPS"))
    a = generate_study("pet", tmp_path / "a", seed=7, formats=("nifti", "dicom"), **kw)
    b = generate_study("pet", tmp_path / "b", seed=7, formats=("nifti", "dicom"), **kw)
    c = generate_study("pet", tmp_path / "c", seed=8, **kw)
    assert _digest(a.directory) == _digest(b.directory)
    assert _digest(a.directory)["pet.nii.gz"] != _digest(c.directory)["pet.nii.gz"]
    assert a.lesions[0].centre_mm != c.lesions[0].centre_mm  # seed-jittered lesions
    loaded = Study.load(b.directory)
    assert (loaded.lesions, loaded.pet, loaded.files) == (a.lesions, a.pet, a.files)


def test_hot_lesion_lands_where_the_study_says(pet_study: Study) -> None:
    hot = next(les for les in pet_study.lesions if les.kind == "hot")
    where = np.asarray(hot.centre_in_other_mm)
    assert not np.allclose(where, hot.centre_mm, atol=1.0)  # misaligned: it moved
    for role in ("other", "other_dicom"):
        vol = read(pet_study.path(role))
        suv = _values(vol) * (1.0 if role == "other" else pet_study.pet.suv_per_bqml)
        excess = np.where(_near(vol, where, 2 * hot.radius_mm), np.clip(suv - 7.5, 0, None), 0)
        assert excess.max() > 3.0, role
        np.testing.assert_allclose(_world_centroid(vol, excess), where, atol=1.0, err_msg=role)


def test_cold_lesion_lands_where_the_study_says(tmp_path: Path) -> None:
    cold = LesionSpec("cold", "cold", (-40.0, -24.0, 20.0), 10.0, 0.2, relative=True)
    kw = dict(resolution=RES, anatomy="phantom", grid=PET_GRID, noise=False, blur=False,
              misalign=MISALIGN)
    with_lesion = generate_study("pet", tmp_path / "a", lesions=[cold], **kw)
    without = generate_study("pet", tmp_path / "b", lesions=[], **kw)
    a, b = read(with_lesion.path("other")), read(without.path("other"))
    deficit = np.clip(_values(b) - _values(a), 0, None)
    assert deficit.max() > 2.0
    np.testing.assert_allclose(_world_centroid(a, deficit),
                               with_lesion.lesions[0].centre_in_other_mm, atol=1.0)
    assert with_lesion.lesions[0].centre_mm == list(cold.centre_mm)  # explicit: not jittered


def test_spect_nm_file_geometry_and_lesion(tmp_path: Path) -> None:
    import pydicom

    hot = LesionSpec("hot", "hot", (30.0, 10.0, 30.0), 9.0, 400.0)
    study = generate_study("spect", tmp_path / "s", resolution=RES, anatomy="phantom",
                           grid=Grid((6.0, 6.0, 6.0), "RAS", tilt_deg=15.0), lesions=[hot],
                           formats=("nifti", "dicom"), noise=False, blur=False)
    ds = pydicom.dcmread(study.path("other_dicom"))
    assert ds.Modality == "NM" and ds.ImageType[2] == "RECON TOMO"
    assert "ImagePositionPatient" not in ds and "ImageOrientationPatient" not in ds
    assert "ImagePositionPatient" in ds.DetectorInformationSequence[0]
    assert ds.FrameIncrementPointer == 0x00540080
    assert list(ds.SliceVector) == list(range(1, int(ds.NumberOfFrames) + 1))
    nm, nifti = read(study.path("other_dicom")), read(study.path("other"))
    assert nm.modality == "spect"
    np.testing.assert_allclose(nm.affine, nifti.affine, atol=1e-3)  # oblique grid kept
    np.testing.assert_array_equal(_values(nm), _values(nifti))
    where = np.asarray(study.lesions[0].centre_in_other_mm)
    excess = np.where(_near(nm, where, 2 * hot.radius_mm), np.clip(_values(nm) - 2000, 0, None), 0)
    np.testing.assert_allclose(_world_centroid(nm, excess), where, atol=1.0)


def test_suv_round_trip_from_the_dicom_pet_header(tmp_path: Path) -> None:
    import pydicom

    study = generate_study("pet", tmp_path / "p", resolution=RES, anatomy="phantom", seed=2,
                           grid=PET_GRID, formats=("nifti", "dicom"))
    files = sorted(study.path("other_dicom").glob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    assert (ds.Units, ds.DecayCorrection) == ("BQML", "START")
    drug = ds.RadiopharmaceuticalInformationSequence[0]
    assert float(drug.RadionuclideHalfLife) == 6586.2

    def seconds(t: str) -> float:
        return int(t[:2]) * 3600 + int(t[2:4]) * 60 + float(t[4:])

    dt = seconds(str(ds.SeriesTime)) - seconds(str(drug.RadiopharmaceuticalStartTime))
    dose = float(drug.RadionuclideTotalDose) * 2.0 ** (-dt / float(drug.RadionuclideHalfLife))
    suv_per_bqml = float(ds.PatientWeight) * 1000.0 / dose
    slopes = {float(pydicom.dcmread(f, stop_before_pixels=True).RescaleSlope) for f in files}
    assert len(slopes) > 1 and ds.pixel_array.dtype == np.int16  # per-slice scaling
    bqml, suv = read(study.path("other_dicom")), read(study.path("other"))
    (a, a_aff), (b, b_aff) = (canonical_view(_values(v), v.affine) for v in (bqml, suv))
    np.testing.assert_allclose(a_aff, b_aff, atol=1e-3)
    np.testing.assert_allclose(a * suv_per_bqml, b, rtol=1e-3, atol=1e-4 * float(b.max()))
    assert abs(suv_per_bqml / study.pet.suv_per_bqml - 1) < 1e-9


def test_misalignment_is_recorded(pet_study: Study) -> None:
    m = MISALIGN.matrix()
    np.testing.assert_allclose(pet_study.transform, m)
    assert list(pet_study.misalignment["rotation_deg"]) == list(MISALIGN.rotation_deg)
    np.testing.assert_allclose(read(pet_study.path("other")).affine, pet_study.other_affine,
                               atol=1e-5)
    for les in pet_study.lesions:
        np.testing.assert_allclose(m @ np.append(les.centre_mm, 1), [*les.centre_in_other_mm, 1],
                                   atol=1e-5)
    loaded = Study.load(pet_study.directory)
    np.testing.assert_allclose(loaded.transform, m)
    # A rotation of 90 degrees about z through the centre: right becomes anterior.
    quarter = Rigid((0.0, 0.0, 90.0), (1.0, 2.0, 3.0), (10.0, 0.0, 0.0)).matrix()
    np.testing.assert_allclose(quarter @ [11.0, 0.0, 0.0, 1.0], [11.0, 3.0, 3.0, 1.0], atol=1e-9)


def test_aligned_study_has_identity_and_one_frame_of_reference(tmp_path: Path) -> None:
    import pydicom

    study = generate_study("ct", tmp_path / "c", resolution=RES, anatomy="phantom",
                           grid=Grid((4.0, 4.0, 5.0), "LPI"), formats=("dicom",))
    assert study.misalignment is None and np.allclose(study.transform, np.eye(4))
    assert study.mri_path == study.path("mri_dicom")
    mri = pydicom.dcmread(next(study.path("mri_dicom").glob("*.dcm")), stop_before_pixels=True)
    ct = pydicom.dcmread(next(study.path("other_dicom").glob("*.dcm")), stop_before_pixels=True)
    assert mri.FrameOfReferenceUID == ct.FrameOfReferenceUID
    vol = read(study.path("other_dicom"))
    hu = _values(vol)
    assert vol.modality == "ct" and hu.min() < -900 and hu.max() > 700  # air and skull


def test_labels_masks_and_grids(pet_study: Study) -> None:
    labels = pet_study.label_map()
    assert labels.shape == tuple(pet_study.mri_shape)
    inv = np.linalg.inv(pet_study.mri_affine)
    for les in pet_study.lesions:
        i, j, k = np.rint(inv[:3, :3] @ les.centre_mm + inv[:3, 3]).astype(int)
        assert labels[i, j, k] == les.label >= LESION_LABEL
    masks = pet_study.masks()
    assert masks["head"].sum() > masks["brain"].sum() > masks["gm"].sum() > 0
    assert not (masks["head"] & masks["air"]).any()
    assert orientation_codes(read(pet_study.path("mri")).affine) == "RAS"
    assert orientation_codes(np.asarray(pet_study.other_affine)) != "RAS"  # LPS, then rotated
    with pytest.raises(UsageError):
        Grid((3.0, 3.0, 3.0), "LLS").directions()
    with pytest.raises(UsageError):
        generate_study("mr", pet_study.directory.parent / "x", resolution=RES, anatomy="phantom")
    with pytest.raises(UsageError):  # an existing folder is not overwritten without force
        generate_study("pet", pet_study.directory, resolution=RES, anatomy="phantom")


def test_phantom_anatomy_fractions() -> None:
    anat = load_anatomy(RES, "phantom")
    total = anat.total()
    assert float(sum(anat.fractions[t] for t in TISSUES[1:]).max()) <= 1.0 + 1e-5
    assert (total[0, 0, 0], total[tuple(s // 2 for s in anat.shape)]) == (0.0, 1.0)
    assert set(np.unique(anat.labels())) == set(range(len(TISSUES)))


def test_mni_anatomy_needs_nilearn(monkeypatch: pytest.MonkeyPatch) -> None:
    from medfuse.studies import anatomy

    monkeypatch.setattr(anatomy, "nilearn_available", lambda: False)
    with pytest.raises(UsageError, match="nilearn"):
        anatomy.load_anatomy(2, "mni")
    assert anatomy.load_anatomy(RES, "auto").source == "phantom"
    with pytest.raises(UsageError):
        anatomy.load_anatomy(3, "mni")


@pytest.mark.slow  # loading and resampling the templates takes 3-4 s
@pytest.mark.skipif(not nilearn_available(), reason="nilearn (medfuse[studies]) not installed")
def test_mni_anatomy_at_2mm() -> None:
    anat = load_anatomy(2, "mni")
    assert anat.source == "mni152-2009a" and anat.shape == (99, 117, 95)
    litres = {t: float(anat.fractions[t].sum()) * 8e-6 for t in TISSUES[1:]}
    assert 1.0 < litres["gm"] + litres["wm"] < 1.8  # an adult brain
    assert litres["skull"] > 0.3 and litres["scalp"] > 0.3
    assert float(anat.total().max()) <= 1.0 + 1e-5


def test_skull_stripped_and_t2_mri(tmp_path: Path) -> None:
    """A skull-stripped MRI is the noise floor over skull and scalp and keeps the brain;
    a T2-like one has white matter darker than grey. The names key tables and pictures."""
    kw = dict(resolution=RES, anatomy="phantom", formats=("nifti",), lesions=())
    full = generate_study("pet", tmp_path / "full", **kw)
    bare = generate_study("pet", tmp_path / "bare", mri_skull=False, **kw)
    t2 = generate_study("spect", tmp_path / "t2", mri_contrast="t2", mri_skull=False, **kw)
    assert (full.name, bare.name, t2.name) == ("pet", "pet-stripped", "spect-t2-stripped")
    assert Study.load(bare.directory).mri_skull is False
    masks = full.masks()
    a, b = _values(read(full.mri_path)), _values(read(bare.mri_path))
    scalp = masks["scalp"]
    assert a[scalp].mean() > 0.5 * 1000 and b[scalp].mean() < 0.05 * 1000
    np.testing.assert_allclose(b[masks["wm"]].mean(), a[masks["wm"]].mean(), rtol=0.02)
    c = _values(read(t2.mri_path))
    assert c[masks["wm"]].mean() < c[masks["gm"]].mean()
