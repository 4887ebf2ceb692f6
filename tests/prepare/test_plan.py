"""medfuse.prepare.plan: every decision about a pair made once (grid, windows, modality,
colour map), on tiny synthetic volumes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers.synth import MR_AFFINE, MR_SHAPE, PET_AFFINE, pet_values, pet_volume, write_mr_series
from medfuse.errors import InputError, UsageError
from medfuse.io.read import read
from medfuse.io.volume import Volume, image_volume
from medfuse.prepare.colormaps import DEFAULT_COLORMAP
from medfuse.prepare.plan import (
    ModalityWarning,
    RegistrationWarning,
    guess_modality,
    parse_slices,
    plan_fusion,
    take_slice,
)
from medfuse.prepare.windowing import Window


@pytest.fixture
def mri(tmp_path: Path) -> Volume:
    return read(write_mr_series(tmp_path / "mr"))


def peak(img: np.ndarray) -> np.ndarray:
    """Centroid of the marker: voxels above 70% of the maximum (robust to a flat-topped
    ball on the fine grid and a blurred one on the coarse grid)."""
    return np.argwhere(img >= 0.7 * img.max()).mean(axis=0)


def test_pet_on_coarser_grid_is_resampled_onto_mri(mri: Volume) -> None:
    plan = plan_fusion(mri, pet_volume(), "axial", modality="pet", colormap="none")
    assert plan.resampled and not plan.colour and len(plan) == 8
    k = 3  # z = 9 mm, the marker's slice
    mri_slice = plan.mri_slab(k, k + 1)[0]
    pet_slice = plan.other_slab(k, k + 1)[0]
    assert pet_slice.shape == mri_slice.shape == (32, 32)
    assert np.isfinite(pet_slice).all()
    # the PET marker (4 mm voxels) lands within a pixel or so of the MRI marker (2 mm)
    assert np.abs(peak(pet_slice) - peak(mri_slice)).max() <= 1.0
    # display convention: the marker is at patient right (image left), posterior (lower half)
    r, c = peak(mri_slice)
    assert c < 16 and r > 16
    assert "resampled onto the MRI grid" in plan.describe()


@pytest.mark.parametrize("axis", ["coronal", "sagittal"])
def test_other_axes_keep_alignment(mri: Volume, axis: str) -> None:
    plan = plan_fusion(mri, pet_volume(), axis, modality="pet", colormap="none")
    mri_all = plan.mri_slab(0, len(plan))
    pet_all = plan.other_slab(0, len(plan))
    assert np.abs(peak(pet_all) - peak(mri_all)).max() <= 1.0


def test_same_grid_is_not_resampled(mri: Volume) -> None:
    vals = np.random.default_rng(0).random(MR_SHAPE).astype(np.float32)
    # noise over the whole grid paints air too: rightly not taken for a registered PET
    with pytest.warns(RegistrationWarning, match="does not look registered"):
        plan = plan_fusion(mri, pet_volume(MR_AFFINE, vals), modality="pet")
    assert not plan.resampled
    assert plan.colour and plan.colormap == DEFAULT_COLORMAP["pet"]
    assert plan.other_slab(0, 2).shape == (2, 32, 32, 3)
    assert "modality pet; colour map rainbow" in plan.describe()


def test_no_overlap_is_refused(mri: Volume) -> None:
    far = PET_AFFINE.copy()
    far[0, 3] += 500.0
    with pytest.raises(InputError, match="do not overlap in space.*does not register"):
        plan_fusion(mri, pet_volume(far), modality="pet")


def test_poor_overlap_warns(mri: Volume) -> None:
    shifted = PET_AFFINE.copy()
    shifted[0, 3] += 45.0
    with pytest.warns(RegistrationWarning, match="co-registered"):
        plan = plan_fusion(mri, pet_volume(shifted), modality="pet")
    assert plan.registration_score is not None and plan.registration_score.warned
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegistrationWarning)
        plan = plan_fusion(mri, pet_volume(), modality="pet")  # aligned: no warning
    score = plan.registration_score
    assert score is not None and score.score is not None and score.score > 0.95
    assert f"registration score {score.score:.2f}" in plan.describe()


def test_missing_geometry(mri: Volume) -> None:
    vals = np.random.default_rng(0).random(MR_SHAPE).astype(np.float32)
    same_size = Volume(data=vals, affine=np.eye(4), has_geometry=False)
    with pytest.warns(RegistrationWarning) as caught:
        plan = plan_fusion(mri, same_size, modality="pet")
    said = [str(w.message) for w in caught]
    assert any("no position/orientation" in m for m in said), said
    assert any("does not look registered" in m for m in said), said  # noise in air
    assert not plan.resampled
    other_size = Volume(data=pet_values(), affine=np.eye(4), has_geometry=False)
    with pytest.raises(InputError, match="cannot be placed on the MRI grid"):
        plan_fusion(mri, other_size, modality="pet")


def test_2d_against_3d(mri: Volume) -> None:
    flat = image_volume(np.zeros((32, 32), np.float32))
    with pytest.raises(InputError, match="2D image.*3D volume.*--slice"):
        plan_fusion(flat, mri)
    with pytest.raises(InputError, match="2D image.*3D volume.*--slice"):
        plan_fusion(mri, flat)
    one = take_slice(mri, "axial", 3)
    assert one.is_2d and one.shape[0] == 1
    np.testing.assert_array_equal(one.stack("axial").data[0], mri.stack("axial").data[3])
    with pytest.raises(UsageError, match="slices 0 to 7"):
        take_slice(mri, "axial", 8)


def test_slice_of_a_volume_beside_an_image(mri: Volume) -> None:
    """A slice cut from a volume keeps its place in space and plans as a 2D pair."""
    one = take_slice(mri, "axial", 3)
    np.testing.assert_allclose(one.affine @ [0, 0, 0, 1], mri.stack("axial").affine @ [3, 0, 0, 1])
    # a flat grey square is not a head: the MRI slice's head holds only part of it
    with pytest.warns(RegistrationWarning, match="does not look registered"):
        plan = plan_fusion(one, image_volume(np.full((32, 32), 0.5, np.float32)))
    assert plan.two_d and plan.modality == "ct" and plan.plane_shape == (32, 32)


def test_2d_pairs(tmp_path: Path) -> None:
    grey = image_volume(np.random.default_rng(0).random((16, 16), dtype=np.float32))
    colour = image_volume(np.random.default_rng(1).random((16, 16, 3), dtype=np.float32))
    plan = plan_fusion(grey, colour)
    assert plan.two_d and plan.modality == "pet" and plan.colour and plan.colormap is None
    assert plan.describe().startswith("2D pair; modality pet")
    np.testing.assert_allclose(plan.other_slab(0, 1)[0], colour.pixels, atol=1e-6)
    small = image_volume(np.zeros((8, 12), np.float32))
    with pytest.raises(InputError, match="size mismatch"):
        plan_fusion(grey, small)
    resized = plan_fusion(grey, small, resize=True)
    assert resized.other_slab(0, 1).shape == (1, 16, 16)
    assert "resized onto the MRI grid" in resized.describe()
    tiny = image_volume(np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="8x8 or more"):
        plan_fusion(tiny, image_volume(np.ones((4, 4), np.float32)))


def test_grey_mri_rule() -> None:
    """An RGB MRI whose channels agree is grey content stored as colour; real colour is not."""
    g = np.random.default_rng(2).random((16, 16), dtype=np.float32)
    as_rgb = image_volume(np.stack([g, g, g], -1))
    plan = plan_fusion(as_rgb, image_volume(g))
    np.testing.assert_allclose(plan.mri_slab(0, 1)[0], g, atol=1e-6)
    coloured = np.stack([g, g, g], -1)
    coloured[..., 0] = 1.0
    with pytest.raises(InputError, match="MRI must be grey"):
        plan_fusion(image_volume(coloured), image_volume(g))


def test_slab_windows_nan_to_background(mri: Volume) -> None:
    plan = plan_fusion(mri, pet_volume(MR_AFFINE, np.full(MR_SHAPE, np.nan, np.float32)),
                       modality="pet", other_window=Window(0.5, 1.0), colormap="none")
    slab = plan.other_slab(0, 8)
    assert np.isfinite(slab).all() and slab.max() == 0.0


def test_modality_guess_and_windows(mri: Volume) -> None:
    ct = pet_volume(MR_AFFINE, np.where(np.ones(MR_SHAPE), -1000.0, 0).astype(np.float32))
    ct.data[8:24, 8:24, :] = 40.0
    mod, note = guess_modality(ct, None)
    assert mod == "ct" and "CT" in (note or "")
    with pytest.warns(ModalityWarning, match="look like CT"):
        plan = plan_fusion(mri, ct)
    assert plan.notes and "look like CT" in plan.notes[0]
    assert plan.other_window.source == "CT default: preset brain"
    assert plan.mri_window.source == "DICOM header"
    assert not plan.colour
    assert guess_modality(pet_volume(), None)[0] == "pet"
    assert guess_modality(pet_volume(), "spect") == ("spect", None)
    tagged = pet_volume()
    tagged.modality = "spect"
    assert guess_modality(tagged, None) == ("spect", None)  # the DICOM Modality
    assert guess_modality(image_volume(np.zeros((8, 8))), None) == ("ct", None)
    assert guess_modality(image_volume(np.zeros((8, 8, 3))), None) == ("pet", None)
    with pytest.raises(UsageError):
        guess_modality(pet_volume(), "xray")


def test_explicit_windows_win(mri: Volume) -> None:
    w = Window(100.0, 50.0, "explicit")
    plan = plan_fusion(mri, pet_volume(), modality="pet", mri_window=w, other_window=w)
    assert plan.mri_window == w and plan.other_window == w


def test_parse_slices() -> None:
    assert parse_slices(None, 4) == [0, 1, 2, 3]
    assert parse_slices("  ", 4) == [0, 1, 2, 3]
    assert parse_slices("3", 10) == [3]
    assert parse_slices("2:5,8", 10) == [2, 3, 4, 8]
    assert parse_slices("0:10:4", 10) == [0, 4, 8]
    assert parse_slices(":2", 10) == [0, 1]
    assert parse_slices("8:", 10) == [8, 9]
    assert parse_slices("3,3,1", 10) == [1, 3]
    for bad, needle in (("12", "out of range"), ("5:20", "out of range"), ("a", "cannot read"),
                        ("1:5:0", "cannot read"), ("-1", "out of range"), (",", "no slices"),
                        ("1:2:3:4", "cannot read")):
        with pytest.raises(UsageError, match=needle):
            parse_slices(bad, 10)


# -- input checks ---------------------------------------------------------------------------


def test_first_input_must_be_an_mri(tmp_path: Path) -> None:
    ct = read(write_mr_series(tmp_path / "ct", modality="CT"))
    with pytest.raises(UsageError, match=r"first input must be the MRI.*is a CT \(DICOM "
                       r"Modality CT\).*--allow-non-mr"):
        plan_fusion(ct, pet_volume(), modality="pet")
    plan = plan_fusion(ct, pet_volume(), modality="pet", allow_non_mr=True)
    assert plan.modality == "pet"
    nifti_mri = Volume(data=ct.data, affine=ct.affine)  # no Modality stated: taken as given
    plan_fusion(nifti_mri, pet_volume(), modality="pet")


def test_mr_as_the_other_image_is_named_and_refused(mri: Volume, tmp_path: Path) -> None:
    other_mr = read(write_mr_series(tmp_path / "mr2"))
    with pytest.raises(UsageError, match=r"is an MR image \(DICOM Modality MR\).*--modality"):
        plan_fusion(mri, other_mr)
    other_mr.data = np.ascontiguousarray(other_mr.data[::-1])  # not the MRI's own pixels
    plan = plan_fusion(mri, other_mr, modality="pet")
    assert plan.modality == "pet" and plan.modality_source == "--modality"
    ot = read(write_mr_series(tmp_path / "ot", modality="OT"))
    with pytest.warns(ModalityWarning, match="DICOM Modality OT is none of CT, PT, NM; "
                      "treated as PET"):
        plan = plan_fusion(mri, ot)
    assert plan.modality == "pet" and "OT" in plan.modality_source


def test_pydicom_mr_small_as_second_input(tmp_path: Path) -> None:
    """The issue's example: MR_small.dcm as the second input said 'modality not stated;
    treated as PET' although its Modality is MR."""
    from helpers.synth import pydicom_sample

    mr = read(pydicom_sample("MR_small.dcm"))
    with pytest.raises(UsageError, match="MR_small.dcm is an MR image"):
        plan_fusion(mr, read(pydicom_sample("MR_small.dcm")))


def test_patient_and_frame_of_reference(tmp_path: Path) -> None:
    from helpers.functional import write_pt_series

    mri = read(write_mr_series(tmp_path / "mr"))
    same = read(write_pt_series(tmp_path / "pt"))  # one template: one frame of reference
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegistrationWarning)
        plan = plan_fusion(mri, same)
    assert plan.checks["frame_of_reference"]["same"] is True
    assert plan.checks["patient_id"] == {"mri": "ID-42", "other": "ID-42", "same": True}
    assert any("hybrid scanner" in line for line in plan.info)

    def elsewhere(ds):  # type: ignore[no-untyped-def]
        ds.PatientID = "ID-7"
        ds.FrameOfReferenceUID = "1.2.3.4"

    other = read(write_pt_series(tmp_path / "pt2", edit=elsewhere))
    with pytest.warns(RegistrationWarning) as caught:
        plan = plan_fusion(mri, other)
    text = " ".join(str(w.message) for w in caught)
    assert "different Patient IDs ('ID-42' and 'ID-7')" in text
    assert "different Frame of Reference UIDs" in text
    assert plan.checks["patient_id"]["same"] is False and not plan.info


def test_2d_slices_82_mm_apart_warn_with_resize() -> None:
    """pydicom's MR_small (z = 6.6 mm) and CT_small (z = -75.7 mm): different patients and
    slices 82 mm apart; --resize puts them on one grid, and both facts are warned."""
    from helpers.synth import pydicom_sample

    mr, ct = read(pydicom_sample("MR_small.dcm")), read(pydicom_sample("CT_small.dcm"))
    with pytest.warns(RegistrationWarning) as caught:
        plan = plan_fusion(mr, ct, resize=True)
    text = " ".join(str(w.message) for w in caught)
    assert "82 mm apart" in text and "different Patient IDs" in text
    assert plan.registration_score is not None
    assert plan.registration_score.plane_distance_mm == pytest.approx(82.34, abs=0.01)
    flipped = read(pydicom_sample("MR_small.dcm"))
    flipped.data = np.ascontiguousarray(flipped.data[::-1])  # same plane, other pixels
    with warnings.catch_warnings():  # one slice position twice: no distance warning
        warnings.simplefilter("error", RegistrationWarning)
        plan = plan_fusion(mr, flipped, modality="ct")
    assert plan.registration_score is not None
    assert plan.registration_score.plane_distance_mm == pytest.approx(0.0)


# -- windows, SUV and the transparency floor ------------------------------------------------


def test_pet_in_suv_gets_the_fixed_window(tmp_path: Path) -> None:
    from helpers.functional import SUV_FACTOR, write_pt_series

    mri = read(write_mr_series(tmp_path / "mr"))
    plan = plan_fusion(mri, read(write_pt_series(tmp_path / "pt")))
    assert plan.in_suv and plan.suv is not None
    assert plan.suv.factor == pytest.approx(SUV_FACTOR, rel=1e-6)
    assert plan.other_window.low == 0.0
    assert plan.other_window.high * SUV_FACTOR == pytest.approx(12.0)
    assert plan.floor is not None and plan.floor * SUV_FACTOR == pytest.approx(1.5)
    assert plan.floor_text() == "SUV 1.5"
    text = plan.describe()
    assert "SUV 0 to 12" in text and "transparent at or below SUV 1.5" in text
    # an explicit window and floor are in SUV too
    explicit = plan_fusion(mri, plan.other, other_window=Window(3.0, 6.0, "explicit"), floor=2.0)
    assert explicit.other_window.high * SUV_FACTOR == pytest.approx(6.0)
    assert explicit.floor is not None and explicit.floor * SUV_FACTOR == pytest.approx(2.0)
    assert explicit.floor_source == "--floor, in SUV"


def test_pet_without_suv_facts_says_why(tmp_path: Path) -> None:
    from helpers.functional import write_pt_series

    def no_weight(ds):  # type: ignore[no-untyped-def]
        del ds.PatientWeight

    mri = read(write_mr_series(tmp_path / "mr"))
    plan = plan_fusion(mri, read(write_pt_series(tmp_path / "pt", edit=no_weight)))
    assert plan.suv is not None and not plan.in_suv
    assert "PatientWeight missing" in plan.suv.reason
    assert plan.other_window.source.startswith("PET default: 0 to 1.6 x grey-matter level")
    assert "no SUV: PatientWeight" in plan.describe()
    nifti = plan_fusion(mri, pet_volume(), modality="pet")
    assert nifti.suv is not None and "NIFTI states no SUV facts" in nifti.suv.reason


@pytest.mark.parametrize("modality", ["pet", "spect"])
def test_ct_presets_refused_for_functional_images(mri: Volume, modality: str) -> None:
    from medfuse.prepare.windowing import parse_window

    with pytest.raises(UsageError, match=f"--window bone is a CT preset.*{modality.upper()}"):
        plan_fusion(mri, pet_volume(), modality=modality, other_window=parse_window("bone"))


def test_transparency_floor_marks_air_low_uptake_and_no_data(mri: Volume) -> None:
    plan = plan_fusion(mri, pet_volume(), modality="pet")
    assert plan.floor is not None and plan.floor == pytest.approx(
        plan.other_window.low + 0.125 * plan.other_window.width)
    planes, below = plan.other_planes(0, len(plan))
    assert below is not None and below.shape == planes.shape[:3]
    values = plan.other_values(0, len(plan))
    np.testing.assert_array_equal(below, ~(values > plan.floor))
    assert below[~np.isfinite(values)].all()  # outside the PET's field of view: transparent
    assert not below[values > plan.floor].any()
    assert "transparent at or below" in plan.describe()
    none = plan_fusion(mri, pet_volume(), modality="pet", transparency=False)
    assert none.floor is None and none.other_planes(0, 1)[1] is None
    assert none.floor_source == "--floor none"
    ct = plan_fusion(mri, pet_volume(), modality="ct")
    assert ct.floor is None  # CT is never coloured: nothing to make transparent


def test_ordinary_images_keep_the_atlas_rules() -> None:
    """PNG pairs: no SUV, no floor, no brain window; the window is the image's own."""
    grey = image_volume(np.random.default_rng(0).random((16, 16), dtype=np.float32))
    colour = image_volume(np.random.default_rng(1).random((16, 16, 3), dtype=np.float32))
    plan = plan_fusion(grey, colour)
    assert plan.floor is None and plan.suv is None and plan.other_planes(0, 1)[1] is None
    other_grey = image_volume(np.random.default_rng(2).random((16, 16), dtype=np.float32))
    grey_pet = plan_fusion(grey, other_grey, modality="pet")
    assert grey_pet.floor is None and grey_pet.other_window.source == "image [0, 1]"


# -- on generated studies (medfuse.studies) -------------------------------------------------


def _study(tmp_path: Path, kind: str, shift: tuple[float, float, float] | None = None,
           resolution: float = 3, anatomy: str = "phantom"):  # type: ignore[no-untyped-def]
    from medfuse.studies import Rigid, generate_study

    misalign = Rigid(translation_mm=shift) if shift else None
    name = f"{kind}_{anatomy}_{resolution:g}_{'x'.join(map(str, shift or ()))}"
    return generate_study(kind, tmp_path / name, resolution=resolution, anatomy=anatomy,
                          misalign=misalign, seed=1)


@pytest.mark.slow  # three generated studies (about 7 s); the warn/no-warn cases stay in the default suite
@pytest.mark.parametrize("kind", ["pet", "spect", "ct"])
def test_registration_score_on_generated_studies(tmp_path: Path, kind: str) -> None:
    """Registered studies score above 0.9 (the best rigid fit within 2 mm of the headers' on
    this 3 mm phantom) and are not warned about; the same studies shifted 60 mm (along x, y
    or z) score far below the threshold and are (docs/checks.md has the numbers)."""
    from medfuse.prepare.alignment import ALIGNMENT_WARN

    study = _study(tmp_path, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegistrationWarning)
        plan = plan_fusion(read(study.mri_path), read(study.other_path), modality=kind)
    assert plan.registration_score is not None and plan.registration_score.score is not None
    assert plan.registration_score.score > 0.9
    for shift in ((60.0, 0.0, 0.0), (0.0, 60.0, 0.0), (0.0, 0.0, -60.0)):
        moved = _study(tmp_path, kind, shift)
        with pytest.warns(RegistrationWarning, match="does not look registered"):
            plan = plan_fusion(read(moved.mri_path), read(moved.other_path), modality=kind)
        assert plan.registration_score is not None and plan.registration_score.score is not None
        assert plan.registration_score.score < ALIGNMENT_WARN - 0.1


def _cortex_levels(plan, study, label: int = 4) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Mean and 95th percentile of the windowed other image over grey matter (``label``)."""
    import nibabel as nib

    from medfuse.io.geometry import resample_slab
    from medfuse.prepare.windowing import apply_window

    labels = np.asarray(nib.load(study.path("labels")).dataobj)
    o, mri = plan.other, plan.mri
    vals = resample_slab(o.data, o.affine, mri.affine, 0, mri.shape[0], mri.shape[1:])
    windowed = apply_window(vals * o.slope + o.inter, plan.other_window)[labels == label]
    return float(windowed.mean()), float(np.percentile(windowed, 95))


def test_default_window_leaves_cortex_below_the_top(tmp_path: Path) -> None:
    """On a generated head (phantom, 3 mm), the grey-matter-level window puts PET cortex in
    the middle of the colour map (mean 0.54, 95th percentile 0.69 measured); the old
    min..p99.9 window put it at the top (0.74, 0.95). SPECT cortex sits higher by design
    (0.71, 0.87) but is not saturated, and the perfusion defect stays far below it."""
    from medfuse.prepare.windowing import percentile_window

    study = _study(tmp_path, "pet")
    plan = plan_fusion(read(study.mri_path), read(study.other_path), modality="pet")
    mean, p95 = _cortex_levels(plan, study)
    assert 0.4 < mean < 0.65 and p95 < 0.8
    old = dataclasses_replace(plan, other_window=percentile_window(plan.other.data, None, 99.9))
    old_mean, old_p95 = _cortex_levels(old, study)
    assert old_p95 > 0.9 and old_mean > mean + 0.1
    spect = _study(tmp_path, "spect")
    plan = plan_fusion(read(spect.mri_path), read(spect.other_path), modality="spect")
    mean, p95 = _cortex_levels(plan, spect)
    assert 0.6 < mean < 0.8 and p95 < 0.9
    defect = _cortex_levels(plan, spect, label=11)[0]
    assert defect < mean - 0.2


def dataclasses_replace(plan, **change):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(plan, **change)


def test_floor_is_coherent_and_floor_none_is_exact(mri: Volume) -> None:
    """A lone below-floor voxel inside active tissue is coloured like its neighbours (the
    pixel rule left a grey dot there); ``--floor none`` makes nothing transparent."""
    vals = np.zeros(MR_SHAPE, np.float32)
    vals[4:28, 4:28, 2:6] = 5.0  # active tissue on the MRI's own grid
    vals[16, 16, 4] = 0.001  # one voxel of it below any floor
    plan = plan_fusion(mri, pet_volume(MR_AFFINE, vals), modality="pet")
    assert plan.floor is not None and not plan.resampled
    n = len(plan)
    (k, r, c), = np.argwhere(plan.other_values(0, n) == np.float32(0.001))
    _, below = plan.other_planes(0, n)
    assert below is not None
    assert not below[k, r, c]  # coloured like the field around it
    assert below[k, 0, 0]  # air stays transparent
    none = plan_fusion(mri, pet_volume(MR_AFFINE, vals), modality="pet", transparency=False)
    assert none.other_planes(0, n)[1] is None


def test_a_pair_of_one_frame_of_reference_is_not_warned(tmp_path: Path) -> None:
    """A PET/MR study of one scanner (one Frame of Reference) is registered: no warning,
    also under --floor none (which counted the noise in air as colour: score 0.80, a
    warning); the same study shifted 60 mm on a second scanner still is warned."""
    from medfuse.studies import Rigid, generate_study

    study = generate_study("pet", tmp_path / "one", resolution=3, anatomy="phantom",
                           formats=("dicom",), seed=1)
    mri, pet = read(study.path("mri_dicom")), read(study.path("other_dicom"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegistrationWarning)
        for transparency in (True, False):
            plan = plan_fusion(mri, pet, modality="pet", transparency=transparency)
            score = plan.registration_score
            assert score is not None and score.registered_by == "one Frame of Reference"
            assert score.score is not None and score.score > 0.9 and not score.warned
    moved = generate_study("pet", tmp_path / "two", resolution=3, anatomy="phantom",
                           formats=("dicom",), seed=1,
                           misalign=Rigid(translation_mm=(60.0, 0.0, 0.0)))
    with pytest.warns(RegistrationWarning) as caught:
        plan = plan_fusion(read(moved.path("mri_dicom")), read(moved.path("other_dicom")),
                           modality="pet", transparency=False)
    assert any("does not look registered" in str(w.message) for w in caught)
    assert plan.registration_score is not None and plan.registration_score.registered_by is None


@pytest.mark.parametrize("kind", ["pet", pytest.param("ct", marks=pytest.mark.slow)])
def test_a_10_mm_shift_and_a_5_degree_rotation_warn(tmp_path: Path, kind: str) -> None:
    """The 3D score sees what a reader sees: a 10 mm shift (and a 5 degree rotation), which
    the containment score passed (0.90-1.00), is estimated at about its size and warned."""
    from medfuse.prepare.alignment import ALIGNMENT_WARN
    from medfuse.studies import Rigid, generate_study

    for name, mis, low, high in (("shift", Rigid(translation_mm=(0.0, 10.0, 0.0)), 8.0, 12.0),
                                 ("rotate", Rigid(rotation_deg=(0.0, 0.0, 5.0)), 4.0, 8.0)):
        study = generate_study(kind, tmp_path / name, resolution=3, anatomy="phantom",
                               misalign=mis, seed=1)
        with pytest.warns(RegistrationWarning, match="does not look registered"):
            plan = plan_fusion(read(study.mri_path), read(study.other_path), modality=kind)
        m = plan.registration_score
        assert m is not None and m.score is not None and m.misalignment_mm is not None
        assert m.score < ALIGNMENT_WARN and low < m.misalignment_mm < high
        assert m.as_dict()["misalignment_mm"] == m.misalignment_mm


@pytest.mark.parametrize("kind", ["pet", "spect", "ct"])
def test_aligned_pairs_with_a_skull_stripped_mri_are_not_warned(tmp_path: Path, kind: str) -> None:
    """A head CT (or PET, SPECT) against a skull-stripped MRI, perfectly aligned: its scalp
    and skull lie off the MRI's brain, which the containment score called misregistered
    (0.75); the 3D score compares the images inside the brain widened by 10 mm and passes."""
    from medfuse.studies import generate_study

    study = generate_study(kind, tmp_path / "stripped", resolution=3, anatomy="phantom",
                           mri_skull=False, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegistrationWarning)
        plan = plan_fusion(read(study.mri_path), read(study.other_path), modality=kind)
    m = plan.registration_score
    assert m is not None and m.score is not None and m.misalignment_mm is not None
    assert m.misalignment_mm < 2.0 and m.score > 0.9 and not m.warned
