"""Engine and pipeline: padding, tiling, batching, image modes, modality handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfuse.errors import InputError, UsageError, WeightsError
from medfuse.io.images import read_image, write_image
from medfuse.prepare.pair import fuse, prepare_pair


def rng_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


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


def test_tiled_equals_whole(engine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import medfuse.engine as eng_mod

    a, b = rng_image((150, 131), 5), rng_image((150, 131), 6)
    whole, wm, _ = engine.fuse_luminance(a, b, with_masks=True)
    monkeypatch.setattr(eng_mod, "TILE", 64)
    engine.tile_threshold = 1000
    tiled, tm, _ = engine.fuse_luminance(a, b, with_masks=True)
    assert np.abs(whole - tiled).max() < 1e-5
    np.testing.assert_array_equal(wm, tm)


def test_batched_equals_single(engine) -> None:  # type: ignore[no-untyped-def]
    a, b = rng_image((3, 24, 24), 7), rng_image((3, 24, 24), 8)
    batched, _, _ = engine.fuse_luminance(a, b)
    for i in range(3):
        single, _, _ = engine.fuse_luminance(a[i], b[i])
        assert np.abs(single - batched[i]).max() < 1e-6


def test_too_small_rejected() -> None:
    with pytest.raises(InputError, match="8x8"):
        prepare_pair(np.zeros((4, 4)), np.zeros((4, 4)))


def test_colour_mri_rejected() -> None:
    rgb = np.zeros((16, 16, 3), np.float32)
    rgb[..., 0] = 1
    with pytest.raises(InputError, match="MRI must be grey"):
        prepare_pair(rgb, np.zeros((16, 16)))


def test_size_mismatch_names_both(tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.png", rng_image((16, 16)))
    b = write_image(tmp_path / "b.png", rng_image((20, 16)))
    with pytest.raises(InputError, match=r"16x16.*16x20"):
        prepare_pair(a, b)
    assert prepare_pair(a, b, resize=True).other_y.shape == (16, 16)


def test_modality_inferred_and_overridden() -> None:
    grey, colour = rng_image((16, 16)), rng_image((16, 16, 3))
    assert prepare_pair(grey, grey).modality == "ct"
    assert prepare_pair(grey, colour).modality == "pet"
    assert prepare_pair(grey, colour, modality="spect").modality == "spect"
    assert not prepare_pair(grey, colour, modality="ct").colour
    with pytest.raises(UsageError):
        prepare_pair(grey, grey, modality="xray")


def test_nan_rejected() -> None:
    a = rng_image((16, 16))
    a[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        prepare_pair(a, rng_image((16, 16)))


def test_grey_plus_grey_output_is_grey(engine) -> None:  # type: ignore[no-untyped-def]
    res = fuse(rng_image((16, 16)), rng_image((16, 16)), engine)
    assert res.image.ndim == 2


def test_colour_output_keeps_pet_chroma(engine) -> None:  # type: ignore[no-untyped-def]
    from medfuse.colour import rgb_to_ycbcr

    pet = rng_image((16, 16, 3), 9)
    res = fuse(rng_image((16, 16)), pet, engine)
    _, cb, cr = rgb_to_ycbcr(res.image)
    _, pcb, pcr = rgb_to_ycbcr(pet)
    inside = (res.image > 0.02).all(-1) & (res.image < 0.98).all(-1)  # unclipped pixels
    assert np.abs(cb - pcb)[inside].max() < 0.01 and np.abs(cr - pcr)[inside].max() < 0.01


@pytest.mark.parametrize(
    "mode,suffix",
    [("L", ".png"), ("RGB", ".png"), ("RGBA", ".png"), ("P", ".png"), ("I;16", ".png"),
     ("L", ".jpg"), ("RGB", ".tif"), ("L", ".bmp")],
)
def test_read_modes(tmp_path: Path, mode: str, suffix: str) -> None:
    base = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 4).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray(base.astype(np.uint16) * 257)
    elif mode == "RGB":
        img = Image.fromarray(np.stack([base] * 3, -1))
    elif mode == "RGBA":
        img = Image.fromarray(np.stack([base] * 3 + [np.full_like(base, 255)], -1))
    elif mode == "P":
        img = Image.new("P", (8, 8))
        img.putpalette([v for i in range(256) for v in (i, i, i)])
        img.putdata(base.ravel().tolist())
    else:
        img = Image.fromarray(base)
    p = tmp_path / f"x{suffix}"
    img.save(p)
    data = read_image(p)
    assert data.pixels.dtype == np.float32 and data.pixels.ndim == 2  # grey content stays grey
    assert 0 <= data.pixels.min() and data.pixels.max() <= 1
    if mode == "I;16":
        assert data.bit_depth == 16
        np.testing.assert_allclose(data.pixels, base / 255.0, atol=1e-6)


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_image(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(InputError, match="not an image"):
        read_image(junk)


def test_write_16bit_and_atomic(tmp_path: Path) -> None:
    p = write_image(tmp_path / "g.png", rng_image((8, 8)), bit_depth=16)
    assert read_image(p).bit_depth == 16
    with pytest.raises(UsageError, match="exists"):
        write_image(p, rng_image((8, 8)))
    assert [f.name for f in tmp_path.iterdir()] == ["g.png"]  # no temp files left


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
    from medfuse.engine import select_device

    assert select_device("cpu").type == "cpu"
    with pytest.raises(UsageError):
        select_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            select_device("cuda:0")
