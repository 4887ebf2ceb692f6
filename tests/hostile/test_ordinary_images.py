"""Family 13: mistakes with ordinary images (PNG/JPEG/TIFF/BMP), which state nothing about
what they show: one image twice is refused (exit 2, one line), a swapped pair and a pair of
two heads are warned about, and options that change nothing for the inputs are a usage
error or a one-line warning, never silently ignored.

The heads are drawn here: an MRI-like slice (bright scalp, dark skull, grey brain) and a
CT-like slice of the same head (bright bone ring, darker brain), on one 128x128 grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.hostile_cli import Box, invoke
from medfuse.io.images import write_image

SIZE = 128


def _radius(centre: tuple[float, float], axes: tuple[float, float]) -> np.ndarray:
    """Elliptical radius (1 on the head's edge) of every pixel."""
    y, x = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    return np.hypot((y - centre[0]) / axes[0], (x - centre[1]) / axes[1])


def _texture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.03, (SIZE, SIZE)).astype(np.float32)


def mri_head(centre: tuple[float, float] = (64, 64), axes: tuple[float, float] = (54, 44),
             seed: int = 0) -> np.ndarray:
    r = _radius(centre, axes)
    img = np.where(r < 1.0, 0.6, 0.0)  # scalp
    img = np.where(r < 0.93, 0.05, img)  # skull: dark in MRI
    img = np.where(r < 0.86, 0.45, img)  # brain
    img = np.where(r < 0.25, 0.9, img)  # ventricles (CSF, bright in T2)
    return np.clip(img + np.where(r < 1.0, _texture(seed), 0.0), 0, 1).astype(np.float32)


def ct_head(centre: tuple[float, float] = (64, 64), axes: tuple[float, float] = (54, 44),
            seed: int = 1) -> np.ndarray:
    r = _radius(centre, axes)
    img = np.where(r < 1.0, 0.35, 0.0)  # scalp (soft tissue)
    img = np.where(r < 0.95, 1.0, img)  # skull: bright bone
    img = np.where(r < 0.86, 0.4, img)  # brain
    img = np.where(r < 0.25, 0.15, img)  # ventricles (CSF, dark in CT)
    tissue = (r < 1.0) & ((r >= 0.95) | (r < 0.86))
    return np.clip(img + np.where(tissue, _texture(seed), 0.0), 0, 1).astype(np.float32)


def _pet(seed: int = 2) -> np.ndarray:
    r = _radius((64, 64), (46, 37))
    act = np.where(r < 1.0, 0.7 + _texture(seed), 0.0)
    return np.clip(np.stack([act, 0.4 * act, 1.0 - act], -1) * (r < 1.0)[..., None], 0, 1)


def _put(box: Box, name: str, pixels: np.ndarray) -> Path:
    p = box.inp / name
    write_image(p, pixels)
    return p


def _warnings(res: object) -> list[str]:
    return [ln for ln in res.err_lines if ln.startswith("warning:")]  # type: ignore[attr-defined]


def test_a_registered_pair_is_not_warned(box: Box) -> None:
    """The control: an MRI and a CT of one head, the right way round, fuse without a word."""
    mri, ct = _put(box, "mri.png", mri_head()), _put(box, "ct.png", ct_head())
    out = box.out / "f.png"
    box.snap()
    res = invoke("fuse", mri, ct, "-o", out)
    box.accepted(res, (out,))
    assert _warnings(res) == [], str(res)


def test_one_file_twice_is_refused(box: Box) -> None:
    mri = _put(box, "mri.png", mri_head())
    box.snap()
    box.refused(invoke("fuse", mri, mri, "-o", box.out / "f.png"), 2, "given as both inputs",
                absent=(box.out,))


def test_a_link_to_the_same_file_is_refused(box: Box) -> None:
    mri = _put(box, "mri.png", mri_head())
    link = box.inp / "link.png"
    link.symlink_to(mri)
    box.snap()
    box.refused(invoke("fuse", link, mri, "-o", box.out / "f.png"), 2,
                "given as both inputs", absent=(box.out,))


@pytest.mark.parametrize("copy_name", ["copy.png", "copy.bmp", "copy.tif"])
def test_identical_pixels_in_two_files_are_refused(box: Box, copy_name: str) -> None:
    """Two files, one image: lossless copies under any name or format."""
    pixels = mri_head()
    mri, copy = _put(box, "mri.png", pixels), _put(box, copy_name, pixels)
    box.snap()
    box.refused(invoke("fuse", mri, copy, "-o", box.out / "f.png"), 2, "identical pixels",
                absent=(box.out,))


def test_a_swapped_pair_is_warned(box: Box) -> None:
    """The CT first and the MRI second: fused (the user may mean it), with one warning line
    naming both."""
    mri, ct = _put(box, "mri.png", mri_head()), _put(box, "ct.png", ct_head())
    out = box.out / "f.png"
    box.snap()
    res = invoke("fuse", ct, mri, "-o", out)
    box.accepted(res, (out,))
    lines = _warnings(res)
    assert len(lines) == 1 and "swapped" in lines[0], str(res)
    assert "ct.png, given as the MRI, looks like a CT" in lines[0]
    assert "mri.png, taken as the CT, shows no bright bone ring" in lines[0]


def test_an_mri_given_as_the_ct_is_warned(box: Box) -> None:
    mri = _put(box, "mri.png", mri_head())
    other_mri = _put(box, "mri2.png", mri_head(seed=5))
    out = box.out / "f.png"
    box.snap()
    res = invoke("fuse", mri, other_mri, "-o", out)
    box.accepted(res, (out,))
    assert any("taken as the CT, shows no bright bone ring" in ln for ln in _warnings(res))
    # stating the modality is the user's word: no guess to warn about
    res = invoke("fuse", mri, other_mri, "-o", box.out / "g.png", "--modality", "ct")
    assert not any("bone ring" in ln for ln in _warnings(res)), str(res)


@pytest.mark.parametrize(("centre", "axes"), [((64, 64), (34, 27)), ((50, 76), (54, 44)),
                                              ((64, 64), (60, 58))],
                         ids=["smaller", "shifted", "rounder"])
def test_another_head_is_warned(box: Box, centre: tuple[float, float],
                                axes: tuple[float, float]) -> None:
    """An MRI of one head beside a CT of another (another size, place or shape): every CT
    pixel still lies on the MRI's head, so the registration score alone passes it; the head
    outlines do not."""
    mri, ct = _put(box, "mri.png", mri_head()), _put(box, "ct.png", ct_head(centre, axes))
    out = box.out / "f.png"
    box.snap()
    res = invoke("fuse", mri, ct, "-o", out)
    box.accepted(res, (out,))
    lines = _warnings(res)
    assert any("do not look like one head" in ln for ln in lines), str(res)


@pytest.mark.parametrize("option", [["--window", "10,20"], ["--window", "brain"],
                                    ["--mri-window", "0,1"]])
def test_a_window_on_an_ordinary_image_is_a_usage_error(box: Box, option: list[str]) -> None:
    mri, pet = _put(box, "mri.png", mri_head()), _put(box, "pet.png", _pet())
    box.snap()
    name = option[0]
    box.refused(invoke("fuse", mri, pet, "-o", box.out / "f.png", *option), 2,
                f"{name} has no effect", absent=(box.out,))


def test_series_on_images_is_a_usage_error(box: Box) -> None:
    mri, ct = _put(box, "mri.png", mri_head()), _put(box, "ct.png", ct_head())
    box.snap()
    box.refused(invoke("fuse", mri, ct, "-o", box.out / "f.png", "--series", "1.2.3"), 2,
                "--series has no effect", absent=(box.out,))


@pytest.mark.parametrize("floor", ["none", "0.3"])
def test_a_floor_on_images_is_warned(box: Box, floor: str) -> None:
    mri, pet = _put(box, "mri.png", mri_head()), _put(box, "pet.png", _pet())
    out = box.out / "f.png"
    box.snap()
    res = invoke("fuse", mri, pet, "-o", out, "--floor", floor)
    box.accepted(res, (out,))
    assert [ln for ln in _warnings(res) if "--floor has no effect" in ln], str(res)
