"""medfuse.fusion: the one fusion path (arrays, plans, files, batches), and the engine
behaviours it relies on (padding, tiling, batching, weights).

Most tests use the stand-in MeanEngine (mean of the two luminances), so they check the data
flow around GeSeNet; the tests taking the ``engine`` fixture run the real network with
seeded random weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.engines import MeanEngine
from helpers.engines import never_loaded as never
from helpers.synth import (
    PET_AFFINE,
    pet_values,
    pet_volume,
    rng_image,
    write_mr_series,
    write_nifti,
)
from medfuse.colour import rgb_to_ycbcr
from medfuse.errors import InputError, UsageError, WeightsError
from medfuse.fusion import (
    FuseRequest,
    fuse,
    fuse_files,
    fuse_plan,
    fuse_prepared,
    prepared_slices,
    read_pair_plan,
)
from medfuse.io.images import read_pixels, write_image
from medfuse.io.read import read
from medfuse.io.volume import Volume, image_volume
from medfuse.phantom import brain_phantom
from medfuse.prepare.pair import prepare_pair
from medfuse.prepare.plan import plan_fusion


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A DICOM MR series and a grey PET NIfTI on a coarser grid (written once)."""
    root = tmp_path_factory.mktemp("vols")
    return write_mr_series(root / "mr"), write_nifti(root / "pet.nii.gz", pet_values(), PET_AFFINE)


@pytest.fixture
def mri(volumes: tuple[Path, Path]) -> Volume:
    return read(volumes[0])


# -- arrays -------------------------------------------------------------------------------


def test_fuse_grey_pair_stays_grey() -> None:
    res = fuse(rng_image((16, 16)), rng_image((16, 16), 1), MeanEngine())
    assert res.image.ndim == 2 and res.modality == "ct" and res.mask_mri is None
    np.testing.assert_allclose(res.image, (rng_image((16, 16)) + rng_image((16, 16), 1)) / 2,
                               atol=1e-6)
    np.testing.assert_array_equal(res.fused_y, res.image)


def test_fuse_options(tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.png", rng_image((16, 16)))
    b = write_image(tmp_path / "b.png", rng_image((20, 16, 3), 1))
    with pytest.raises(InputError, match="size mismatch"):
        fuse(a, b, MeanEngine())
    res = fuse(a, b, MeanEngine(), resize=True, do_stretch=True, with_masks=True,
               modality="spect")
    assert res.image.shape == (16, 16, 3) and res.modality == "spect"
    assert res.image.min() == 0.0 and res.image.max() == 1.0
    assert res.mask_mri is not None and res.mask_other is not None
    np.testing.assert_array_equal(res.mask_mri + res.mask_other, 1.0)


def test_fuse_prepared_groups_sizes_keeps_order() -> None:
    engine = MeanEngine()
    pairs = [prepare_pair(rng_image(s, i), rng_image(s, i + 10), name=str(i))
             for i, s in enumerate([(16, 16), (24, 16), (16, 16)])]
    out = fuse_prepared(pairs, engine)
    assert [r.image.shape for r in out] == [(16, 16), (24, 16), (16, 16)]
    assert sorted(engine.calls) == [1, 2]  # the two 16x16 pairs went through together
    np.testing.assert_allclose(out[2].image, (pairs[2].mri_y + pairs[2].other_y) / 2, atol=1e-6)


def test_colour_output_keeps_pet_chroma(engine) -> None:  # type: ignore[no-untyped-def]
    pet = rng_image((16, 16, 3), 9)
    res = fuse(rng_image((16, 16)), pet, engine)
    _, cb, cr = rgb_to_ycbcr(res.image)
    _, pcb, pcr = rgb_to_ycbcr(pet)
    inside = (res.image > 0.02).all(-1) & (res.image < 0.98).all(-1)  # unclipped pixels
    assert inside.any()
    assert np.abs(cb - pcb)[inside].max() < 0.01 and np.abs(cr - pcr)[inside].max() < 0.01


# -- plans --------------------------------------------------------------------------------


def test_batches_are_bounded_and_nan_never_propagates(mri: Volume) -> None:
    engine = MeanEngine(batch_size=3)
    plan = plan_fusion(mri, pet_volume(), modality="pet")
    results = list(fuse_plan(plan, engine))  # type: ignore[arg-type]
    assert [i for i, _ in results] == list(range(8))
    assert engine.calls == [3, 3, 2]  # one batch of slices at a time
    for _, res in results:
        assert res.image.shape == (32, 32, 3) and np.isfinite(res.image).all()


def test_slices_subset(mri: Volume) -> None:
    engine = MeanEngine()
    plan = plan_fusion(mri, pet_volume(), modality="pet")
    got = [i for i, _ in fuse_plan(plan, engine, [6, 1, 2], batch_size=2)]  # type: ignore[arg-type]
    assert got == [1, 2, 6] and engine.calls == [2, 1]


def test_prepared_slices(mri: Volume) -> None:
    plan = plan_fusion(mri, pet_volume(), modality="pet", colormap="none")
    batches = list(prepared_slices(plan, [0, 1, 5], batch_size=2))
    assert [[i for i, _ in b] for b in batches] == [[0, 1], [5]]
    index, pair = batches[1][0]
    assert pair.name.endswith("[5]") and pair.modality == "pet" and not pair.colour
    np.testing.assert_array_equal(pair.mri_y, plan.mri_slab(5, 6)[0])
    np.testing.assert_array_equal(pair.other_image, plan.other_slab(5, 6)[0])
    flat = plan_fusion(image_volume(rng_image((16, 16))), image_volume(rng_image((16, 16), 1)))
    [[(i, p)]] = list(prepared_slices(flat, [4, 5]))  # a 2D plan has the one slice 0
    assert i == 0 and p.mri_y.shape == (16, 16)


def test_read_pair_plan_slices(volumes: tuple[Path, Path], tmp_path: Path) -> None:
    mr, pet = volumes
    plan, fixed = read_pair_plan(mr, pet, slice_index=3, modality="pet")
    assert fixed == [3] and len(plan) == 8
    with pytest.raises(UsageError, match="slices 0 to 7"):
        read_pair_plan(mr, pet, slice_index=8, modality="pet")
    with pytest.raises(UsageError, match="start at 0"):
        read_pair_plan(mr, pet, slice_index=-1)
    flat = write_image(tmp_path / "flat.png", rng_image((32, 32)))
    plan, fixed = read_pair_plan(flat, mr, slice_index=1, modality="ct")  # cut from the series
    assert plan.two_d and fixed is None
    np.testing.assert_array_equal(plan.other.data, read(mr).stack("axial").data[1:2])
    with pytest.raises(UsageError, match="both inputs are single slices"):
        read_pair_plan(flat, flat, slice_index=1)


# -- files --------------------------------------------------------------------------------


def test_fuse_files_volume_with_preview(volumes: tuple[Path, Path], tmp_path: Path) -> None:
    mr, pet = volumes
    req = FuseRequest(mr, pet, tmp_path / "png" / "f.png", slices="0:8:2",
                      preview=tmp_path / "preview.png")
    done: list[tuple[int, int]] = []
    report = fuse_files(req, MeanEngine, lambda d, t: done.append((d, t)))
    assert [p.name for p in report.outputs] == [f"f_000{i}.png" for i in (0, 2, 4, 6)]
    assert report.slices == [0, 2, 4, 6] and done[-1] == (4, 4)
    assert report.preview == tmp_path / "preview.png" and report.preview.is_file()
    assert any("modality not stated" in w for w in report.warnings)
    assert report.plan.resampled


def test_fuse_files_grey_images_stay_8_bit(tmp_path: Path) -> None:
    mri, _ = brain_phantom(32)
    a = write_image(tmp_path / "a.png", mri)
    b = write_image(tmp_path / "b.png", mri[::-1].copy())
    # --modality ct: b is the MRI phantom flipped, which, taken as CT, would be warned
    # about (no bone ring); this test is about the output's bit depth
    report = fuse_files(FuseRequest(a, b, tmp_path / "f.png", modality="ct"), MeanEngine)
    assert report.outputs == [tmp_path / "f.png"] and report.warnings == []
    img, depth = read_pixels(tmp_path / "f.png")
    assert depth == 8 and img.ndim == 2


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"bit_depth": 12}, "--bit-depth"),
        ({"preview": "OUT"}, "is the output itself"),
        ({"output": "f.nii.gz", "slices": "1"}, "--slices applies"),
        ({"output": "f.nii.gz", "slice_index": 2}, "NIfTI output holds the whole volume"),
        ({"anonymize": True}, "--anonymize"),
        ({"slice_index": 1, "slices": "1"}, "not both"),
        ({"window": "wide"}, "--window"),
        ({"output": "f.xyz"}, "output suffix"),
    ],
)
def test_fuse_files_refuses_before_loading_the_engine(
    volumes: tuple[Path, Path], tmp_path: Path, change: dict[str, object], needle: str
) -> None:
    mr, pet = volumes
    fields: dict[str, object] = {"mri": mr, "other": pet, "output": tmp_path / "f.png",
                                 "modality": "pet"}
    for k, v in change.items():
        fields[k] = tmp_path / v if k == "output" else v
    if fields.get("preview") == "OUT":
        fields["preview"] = fields["output"]
    with pytest.raises(UsageError, match=needle):
        fuse_files(FuseRequest(**fields), never)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_fuse_files_failure_leaves_nothing(volumes: tuple[Path, Path], tmp_path: Path) -> None:
    class Failing(MeanEngine):
        def fuse_luminance(self, mri, other, with_masks=False):  # type: ignore[no-untyped-def]
            if self.calls:
                raise RuntimeError("out of memory")
            return super().fuse_luminance(mri, other, with_masks)

    mr, pet = volumes
    req = FuseRequest(mr, pet, tmp_path / "out" / "series", format="dicom", modality="pet")
    with pytest.raises(RuntimeError, match="out of memory"):
        fuse_files(req, lambda: Failing(batch_size=2))
    assert not req.output.exists()
    assert not [p for p in tmp_path.rglob("*") if ".part" in p.name]


# -- the engine as the fusion path uses it (seeded random weights) ------------------------


def test_odd_sizes_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    for h, w in [(8, 8), (9, 13), (31, 20)]:
        f, _, _ = engine.fuse_luminance(rng_image((h, w), 1), rng_image((h, w), 2))
        assert f.shape == (h, w) and np.isfinite(f).all()


def test_odd_padding_leaves_no_seam(engine) -> None:  # type: ignore[no-untyped-def]
    """An odd image equals the even one it is reflect-padded to, cropped: the padding adds
    no edge, so the last row/column match a run where that reflected row is real data."""
    a, b = rng_image((33, 33), 3), rng_image((33, 33), 4)
    odd, _, _ = engine.fuse_luminance(a, b)
    a_even = np.pad(a, ((0, 1), (0, 1)), mode="reflect")
    b_even = np.pad(b, ((0, 1), (0, 1)), mode="reflect")
    even, _, _ = engine.fuse_luminance(a_even, b_even)
    np.testing.assert_array_equal(odd, even[:33, :33])


def test_tiled_equals_whole(engine) -> None:  # type: ignore[no-untyped-def]
    a, b = rng_image((150, 131), 5), rng_image((150, 131), 6)
    whole, wm, _ = engine.fuse_luminance(a, b, with_masks=True)
    engine.tile_size = 96
    engine.tile_threshold = 1000  # four tiles
    tiled, tm, _ = engine.fuse_luminance(a, b, with_masks=True)
    assert np.abs(whole - tiled).max() < 1e-5
    np.testing.assert_array_equal(wm, tm)


def test_batched_equals_single(engine) -> None:  # type: ignore[no-untyped-def]
    a, b = rng_image((3, 24, 24), 7), rng_image((3, 24, 24), 8)
    batched, _, _ = engine.fuse_luminance(a, b)
    for i in range(3):
        single, _, _ = engine.fuse_luminance(a[i], b[i])
        assert np.abs(single - batched[i]).max() < 1e-6


def test_weights_errors(tmp_path: Path) -> None:
    import torch

    from medfuse.engine import load_model

    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, bad)
    with pytest.raises(WeightsError, match="missing 77.*unexpected 1: foo"):
        load_model(bad, "cpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_model(junk, "cpu")
    with pytest.raises(UsageError, match="not found"):
        load_model(tmp_path / "nope.pt", "cpu")


def test_checkpoint_dict_forms(tmp_path: Path, random_weights: Path) -> None:
    import torch

    from medfuse.engine import load_model

    sd = torch.load(random_weights, weights_only=True)
    for key in ("state_dict", "model"):
        p = tmp_path / f"{key}.pt"
        torch.save({key: sd, "epoch": 3}, p)
        assert load_model(p, "cpu").weights_path == p


def test_device_validation() -> None:
    import torch

    from medfuse.engine import select_device

    assert select_device("cpu").type == "cpu"
    with pytest.raises(UsageError):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            select_device("cuda:0")



# -- defaults that keep anatomy readable (SUV, floor, transparency) -------------------------


def test_no_colour_over_air_or_low_uptake(tmp_path: Path) -> None:
    """A DICOM PET in SUV fused to NIfTI: wherever the PET is at or below SUV 1.5 (air, the
    field of view's edge) the written voxel is the MRI's grey exactly (R = G = B = the MRI's
    8-bit level); where it is above, there is colour."""
    import nibabel as nib

    from helpers.functional import write_pt_series
    from medfuse.io.images import to_uint

    mr = write_mr_series(tmp_path / "mr")
    pt = write_pt_series(tmp_path / "pt")
    report = fuse_files(FuseRequest(mr, pt, tmp_path / "f.nii.gz"), MeanEngine)
    plan = report.plan
    assert plan.in_suv and plan.floor_text() == "SUV 1.5"
    rgb = np.asarray(nib.load(tmp_path / "f.nii.gz").dataobj)
    from medfuse.io.geometry import stack_view

    r = stack_view(rgb["R"], plan.mri.affine, plan.axis)[0]
    g = stack_view(rgb["G"], plan.mri.affine, plan.axis)[0]
    b = stack_view(rgb["B"], plan.mri.affine, plan.axis)[0]
    mri_levels = to_uint(plan.mri_slab(0, len(plan)), 8)
    below = plan.other_planes(0, len(plan))[1]
    assert below is not None and below.any() and (~below).any()
    np.testing.assert_array_equal(r[below], mri_levels[below])
    np.testing.assert_array_equal(g[below], mri_levels[below])
    np.testing.assert_array_equal(b[below], mri_levels[below])
    coloured = (r != g) | (g != b)
    assert coloured[~below].mean() > 0.9 and not coloured[below].any()


def test_png_pairs_are_unchanged_by_the_new_rules(tmp_path: Path) -> None:
    """Ordinary-image pairs (the Harvard atlas case) take none of the new rules: the file
    fuse_files writes is byte for byte what the array path (no plan, no floor) gives."""
    mri, pet = brain_phantom(64)
    a = write_image(tmp_path / "a.png", mri)
    b = write_image(tmp_path / "b.png", pet)
    fuse_files(FuseRequest(a, b, tmp_path / "files.png"), MeanEngine)
    direct = fuse(a, b, MeanEngine())
    write_image(tmp_path / "direct.png", direct.image)
    assert (tmp_path / "files.png").read_bytes() == (tmp_path / "direct.png").read_bytes()
    grey = write_image(tmp_path / "g.png", pet.mean(axis=-1))
    report = fuse_files(FuseRequest(a, grey, tmp_path / "gp.png", modality="pet"), MeanEngine)
    assert report.plan.floor is None and report.plan.suv is None


def test_triptych_preview(volumes: tuple[Path, Path], tmp_path: Path) -> None:
    mr, pet = volumes
    req = FuseRequest(mr, pet, tmp_path / "f.nii.gz", modality="pet",
                      preview=tmp_path / "qc.png", preview_style="triptych")
    report = fuse_files(req, MeanEngine)
    img, _ = read_pixels(report.preview)  # type: ignore[arg-type]
    assert img.shape == (3 * 32, 6 * 32, 3)  # MRI | PET | fused rows, 6 of the 8 slices
    assert report.provenance["outputs"]["preview_style"] == "triptych"
    with pytest.raises(UsageError, match="--preview-style 'strip'"):
        fuse_files(FuseRequest(mr, pet, tmp_path / "g.nii.gz", preview=tmp_path / "p.png",
                               preview_style="strip"), never)


# -- the new checks and options through the command line ------------------------------------


def test_cli_input_checks(tmp_path: Path, mean_engine: None) -> None:
    from helpers.cli import run
    from helpers.synth import pydicom_sample

    ct_first = write_mr_series(tmp_path / "ct", modality="CT")
    pet = write_nifti(tmp_path / "pet.nii.gz", pet_values(), PET_AFFINE)
    r = run("fuse", ct_first, pet, "-o", tmp_path / "a.nii.gz", "-m", "pet")
    assert r.code == 2 and "is a CT (DICOM Modality CT)" in r.err and "--allow-non-mr" in r.err
    assert not (tmp_path / "a.nii.gz").exists() and not (tmp_path / "a.nii.gz.json").exists()
    r = run("fuse", ct_first, pet, "-o", tmp_path / "a.nii.gz", "-m", "pet", "--allow-non-mr")
    assert r.code == 0, r.text
    mr = pydicom_sample("MR_small.dcm")
    r = run("fuse", mr, mr, "-o", tmp_path / "b.png")
    assert r.code == 2 and "is an MR image (DICOM Modality MR)" in r.err
    assert "treated as PET" not in r.err
    r = run("fuse", write_mr_series(tmp_path / "mr"), pet, "-o", tmp_path / "c.nii.gz",
            "-m", "pet", "--window", "bone")
    assert r.code == 2 and "--window bone is a CT preset" in r.err
    r = run("fuse", write_mr_series(tmp_path / "mr3"), pet, "-o", tmp_path / "c.nii.gz",
            "-m", "pet", "--window", "0,12")
    assert r.code == 2 and "--window 0,12 runs from -6 to 6" in r.err and "0:12" in r.err
    assert not (tmp_path / "c.nii.gz").exists()
    r = run("fuse", write_mr_series(tmp_path / "mr4"), pet, "-o", tmp_path / "c.nii.gz",
            "-m", "pet", "--window", "0:12")
    assert r.code == 0, r.text
    r = run("fuse", write_mr_series(tmp_path / "mr2"), pet, "-o", tmp_path / "c.nii.gz",
            "-m", "pet", "--floor", "high")
    assert r.code == 2 and "--floor 'high'" in r.err


def test_cli_verbose_prints_every_decision(tmp_path: Path, mean_engine: None) -> None:
    from helpers.cli import run
    from helpers.functional import write_pt_series

    mr, pt = write_mr_series(tmp_path / "mr"), write_pt_series(tmp_path / "pt")
    r = run("fuse", mr, pt, "-o", tmp_path / "f.nii.gz", "-v", "--floor", "2",
            "--colormap", "hot-iron")
    assert r.code == 0, r.text
    lines = r.err_lines()
    assert lines[0].startswith("8 axial slice(s); modality pet; colour map hot-iron")
    assert any(ln.startswith("SUV (body weight) factor") for ln in lines)
    assert "transparent at or below SUV 2 (--floor, in SUV)" in lines
    assert any(ln.startswith("registration score 1.00") for ln in lines)
    assert any("hybrid scanner" in ln for ln in lines)
    assert lines[-1] == f"provenance record: {tmp_path / 'f.nii.gz.json'}"
    r = run("fuse", mr, pt, "-o", tmp_path / "g.nii.gz", "-v", "--floor", "none")
    assert r.code == 0 and "transparent at or below" not in r.err
