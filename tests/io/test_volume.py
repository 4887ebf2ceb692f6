"""medfuse.io.volume: the one image type, and the one reader entry point."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from helpers.synth import MR_SHAPE, PET_AFFINE, pet_values, write_mr_series, write_nifti
from medfuse.errors import InputError, UsageError
from medfuse.io.images import write_image
from medfuse.io.read import input_format, read
from medfuse.io.volume import Volume, image_volume


def test_image_volume_shows_the_image_as_stored() -> None:
    grey = np.random.default_rng(0).random((5, 7), dtype=np.float32)
    vol = image_volume(grey)
    assert vol.shape == (7, 5, 1) and vol.is_2d and not vol.is_rgb and not vol.has_geometry
    assert vol.default_axis(None) == "axial" and vol.default_axis("sagittal") == "axial"
    np.testing.assert_array_equal(vol.pixels, grey)
    np.testing.assert_array_equal(vol.stack("axial").data[0], grey)
    assert vol.bit_depth == 8 and vol.label == "volume"


def test_rgb_pixels() -> None:
    rgb = np.random.default_rng(1).random((4, 6, 3), dtype=np.float32)
    vol = image_volume(rgb, Path("x.png"), bit_depth=16)
    assert vol.is_rgb and vol.bit_depth == 16 and vol.label == "x.png"
    np.testing.assert_array_equal(vol.pixels, rgb)


def test_stack_values_apply_slope_and_inter() -> None:
    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    vol = Volume(data=data, affine=np.eye(4), slope=2.0, inter=-1.0)
    stack = vol.stack("axial")
    assert len(stack) == 4 and stack.plane_shape == (3, 2)
    vals = stack.values(0, 4)
    assert vals.dtype == np.float32
    np.testing.assert_allclose(np.sort(vals.ravel()), np.arange(24) * 2.0 - 1.0)
    assert not vol.is_2d
    with pytest.raises(InputError, match="2x3x4"):
        _ = vol.pixels


def test_read_dispatches_on_format(tmp_path: Path) -> None:
    png = write_image(tmp_path / "a.png", np.zeros((8, 8), np.float32))
    nii = write_nifti(tmp_path / "p.nii.gz", pet_values(), PET_AFFINE)
    series = write_mr_series(tmp_path / "mr")
    assert [input_format(p) for p in (png, nii, series)] == ["image", "nifti", "dicom"]
    assert read(png).format == "image"
    assert read(nii).format == "nifti" and read(nii).modality is None
    assert read(nii, modality="spect").modality == "spect"
    vol = read(series)
    assert vol.format == "dicom" and vol.shape == MR_SHAPE and vol.dicom is not None


def test_input_format_refusals(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        input_format(tmp_path / "missing.png")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(InputError, match="not a format medfuse reads"):
        read(notes)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_input_format_refuses_a_pipe(tmp_path: Path) -> None:
    """A pipe named like an image must not be opened (reading it would block)."""
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        input_format(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read(fifo)


def test_symlink_loop_is_an_input_error(tmp_path: Path) -> None:
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(InputError, match="cannot open"):
        read(loop)
