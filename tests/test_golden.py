"""Golden outputs: the bundled weights' fusion of a few small generated pairs, kept in
``tests/golden/`` and compared exactly, so the numerics (network, folding, colour, writers)
are checked everywhere the suite runs, with no reference data outside the repository.

The inputs are generated (the phantom of :mod:`medfuse.phantom` and the synthetic head of
``helpers.synth``), written once and kept as files, so a change of a generator does not
move them. A PNG output is compared byte for byte; a NIfTI output by its voxels, affine and
header fields (its gzip stream holds a file name and a time).

When a change is meant to move the outputs (a new network, a new colour rule), regenerate
and say so in the change:

    MEDFUSE_REGENERATE_GOLDEN=1 PYTHONPATH=src python -m pytest -q tests/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from helpers.cli import run

GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("MEDFUSE_REGENERATE_GOLDEN") == "1"

#: name -> (inputs, options, output file); inputs are files under tests/golden/inputs/.
CASES = {
    "colour-pet": (("mri.png", "pet-colour.png"), [], "colour-pet.png"),
    "grey-pet-hot-clip": (("mri.png", "pet-grey.png"),
                          ["-m", "pet", "--colormap", "hot", "--gamut-map", "clip"],
                          "grey-pet-hot-clip.png"),
    "grey-ct": (("mri.png", "pet-grey.png"), ["-m", "ct"], "grey-ct.png"),
    "nifti-pet": (("mri.nii.gz", "pet.nii.gz"),
                  ["--window", "8,16", "--colormap", "jet", "--floor", "2"], "nifti-pet.nii.gz"),
}


def _make_inputs(folder: Path) -> None:
    """The generated inputs (run once, with MEDFUSE_REGENERATE_GOLDEN=1)."""
    from helpers.synth import MR_AFFINE, MR_SHAPE, PET_AFFINE, head, pet_values, write_nifti
    from medfuse.io.images import write_image
    from medfuse.phantom import brain_phantom

    folder.mkdir(parents=True, exist_ok=True)
    mri, pet = brain_phantom(48, seed=3)
    write_image(folder / "mri.png", mri)
    write_image(folder / "pet-colour.png", pet)
    write_image(folder / "pet-grey.png", pet.mean(axis=-1))
    rng = np.random.default_rng(5)
    vals = (head(MR_SHAPE, MR_AFFINE) * 900 + rng.integers(0, 100, MR_SHAPE)).astype(np.int16)
    write_nifti(folder / "mri.nii.gz", vals, MR_AFFINE)
    write_nifti(folder / "pet.nii.gz", pet_values(), PET_AFFINE)


def _nifti_facts(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[object, ...]]:
    import nibabel as nib

    img = nib.load(str(path))
    h = img.header
    return (np.asarray(img.dataobj), img.affine,
            (str(h.get_data_dtype()), int(h["sform_code"]), int(h["qform_code"]),
             tuple(h.get_zooms()), h.get_xyzt_units()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bundled_weights_reproduce_the_golden_output(case: str, tmp_path: Path) -> None:
    inputs, options, name = CASES[case]
    folder = GOLDEN / "inputs"
    if REGENERATE and not folder.exists():
        _make_inputs(folder)
    out = tmp_path / name
    r = run("fuse", *(folder / f for f in inputs), "-o", out, "--device", "cpu", "-q", *options)
    assert r.code == 0, r.text
    golden = GOLDEN / name
    if REGENERATE:
        golden.write_bytes(out.read_bytes())
    assert golden.exists(), f"no golden output {golden.name}: regenerate (see the docstring)"
    if name.endswith(".png"):
        assert out.read_bytes() == golden.read_bytes(), f"{case}: output differs from {name}"
    else:
        got, want = _nifti_facts(out), _nifti_facts(golden)
        assert np.array_equal(got[0], want[0]), f"{case}: voxels differ from {name}"
        assert np.array_equal(got[1], want[1]) and got[2] == want[2]


def test_the_golden_outputs_are_not_trivial() -> None:
    """Each golden output holds an image with structure and colour where the case has
    colour (a blank or grey file would make the comparison meaningless)."""
    from medfuse.io.images import read_pixels

    for case, (_inputs, _options, name) in CASES.items():
        path = GOLDEN / name
        if name.endswith(".png"):
            pixels = read_pixels(path)[0]
        else:
            voxels = _nifti_facts(path)[0]
            if voxels.dtype.names:  # RGB24: one field per channel
                voxels = np.stack([voxels[c] for c in voxels.dtype.names], axis=-1)
            pixels = voxels.astype(np.float32)
        assert pixels.std() > 0.01 * max(1.0, float(np.abs(pixels).max())), case
        if case != "grey-ct":
            rgb = pixels.reshape(-1, pixels.shape[-1]).astype(np.float32)
            assert np.abs(rgb[:, 0] - rgb[:, 2]).max() > 0, f"{case}: no colour"
