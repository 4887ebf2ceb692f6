"""Empty-space skipping: the engine with skipping gives what it gives without, on slices
with content at the border, no content, one pixel of content and content everywhere; the
pieces (crop plan, border map) are what the exactness argument needs; and the receptive
radius the crop relies on bounds how far a pixel's influence reaches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medfuse.engine import bundled_weights_path, load_model
from medfuse.engine.skipping import MIN_SIDE, border_map, content_box, half_border_map, plan_crop
from medfuse.model import GeSeNet
from medfuse.model.folded import RECEPTIVE_RADIUS
from medfuse.phantom import brain_phantom

H, W = 120, 106  # even; the odd case pads by reflection


def _disc(h: int, w: int, cy: float, cx: float, r: float, seed: int) -> np.ndarray:
    """A textured disc on exact zero background (as windowed air is)."""
    yy, xx = np.mgrid[:h, :w]
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    tex = np.random.default_rng(seed).uniform(0.2, 1.0, (h, w))
    return np.where(inside, tex, 0.0).astype(np.float32)


def _cases(h: int = H, w: int = W) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    one_m = np.zeros((h, w), np.float32)
    one_m[h // 2, w // 3] = 0.8
    corner = np.zeros((h, w), np.float32)
    corner[0, w - 1] = 1.0
    return {
        "border": (_disc(h, w, 0, w - 10, 22, 1), _disc(h, w, 5, w - 5, 15, 2)),
        "empty": (np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)),
        "one_pixel_mri": (one_m, np.zeros((h, w), np.float32)),
        "one_pixel_other_corner": (np.zeros((h, w), np.float32), corner),
        "all_content": (rng.uniform(0.1, 1.0, (h, w)).astype(np.float32),
                        rng.uniform(0.1, 1.0, (h, w)).astype(np.float32)),
        "constant_background": (np.full((h, w), 0.25, np.float32),
                                np.full((h, w), 0.1, np.float32)),
        "small_object_on_grey": (np.where(_disc(h, w, 60, 50, 9, 3) > 0, 0.9, 0.3).astype(np.float32),
                                 np.full((h, w), 0.05, np.float32)),
    }


def _both_ways(weights: Path | str | None, mri: np.ndarray, other: np.ndarray,
               paths: dict[str, int] | None = None
               ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], dict[str, int]]:
    engine = load_model(weights, "cpu")
    skipped = engine.fuse_luminance(mri, other, with_masks=True)
    counts = dict(engine._empty.counts) if engine._empty is not None else {}
    if paths is not None and engine._empty is not None:
        paths.update(engine._empty.body_paths)
    engine.skip_empty = False
    full = engine.fuse_luminance(mri, other, with_masks=True)
    return skipped, full, counts


def _assert_identical(skipped: tuple[np.ndarray, ...], full: tuple[np.ndarray, ...]) -> None:
    """Bit for bit: the crop runs the whole image's body path, with the same kernels."""
    for a, b in zip(skipped, full):
        np.testing.assert_array_equal(a, b)


def _assert_same(skipped: tuple[np.ndarray, ...], full: tuple[np.ndarray, ...]) -> None:
    # Measured bit-identical on the machines this was written on; the test allows float
    # rounding (crops run convolutions of another size) but no mask flips.
    np.testing.assert_allclose(skipped[0], full[0], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(skipped[1], full[1])
    np.testing.assert_array_equal(skipped[2], full[2])
    q = lambda x: np.round(np.clip(x, 0, 1) * 255)  # noqa: E731
    assert (q(skipped[0]) != q(full[0])).mean() < 1e-3


@pytest.fixture(scope="module")
def bundled() -> Path:
    path = bundled_weights_path()
    if path is None:
        pytest.skip("no bundled weights")
    torch.set_num_threads(1)
    return path


EXPECTED_PATH = {"border": "crop", "empty": "empty", "one_pixel_mri": "crop",
                 "one_pixel_other_corner": "crop", "all_content": "whole",
                 "constant_background": "empty", "small_object_on_grey": "crop"}


@pytest.mark.parametrize("case", sorted(EXPECTED_PATH))
def test_skipped_equals_whole_slice(bundled: Path, case: str) -> None:
    mri, other = _cases()[case]
    skipped, full, counts = _both_ways(bundled, mri, other)
    assert counts == {EXPECTED_PATH[case]: 1}
    _assert_same(skipped, full)


@pytest.mark.slow  # the odd-size stack is also covered bit-exactly on bundled weights
def test_volume_of_mixed_slices_odd_size(bundled: Path) -> None:
    """A stack through the engine slice by slice, odd sides (reflection padding)."""
    cases = _cases(H + 1, W - 1)
    mri = np.stack([c[0] for c in cases.values()])
    other = np.stack([c[1] for c in cases.values()])
    skipped, full, counts = _both_ways(bundled, mri, other)
    assert counts["crop"] >= 3 and counts["empty"] >= 2 and counts["whole"] >= 1
    _assert_same(skipped, full)


def test_random_weights_phantom_with_air(random_weights: Path) -> None:
    """Seeded random weights mask channels in both branches (mixed spatial masks)."""
    m, p = brain_phantom(128, seed=3)
    mri = np.zeros((160, 160), np.float32)
    other = np.zeros((160, 160), np.float32)
    mri[40:104, 20:84] = m[::2, ::2]
    other[40:104, 20:84] = p[::2, ::2] if p.ndim == 2 else p[::2, ::2, 0]
    skipped, full, counts = _both_ways(random_weights, mri, other)
    assert counts == {"crop": 1}
    _assert_same(skipped, full)


def test_reference_checkpoint(reference_checkpoint: Path) -> None:
    """Compatibility: its MRI spatial mask is a fixed pixel grid (period 2), which the
    background square must reproduce by parity."""
    torch.set_num_threads(1)
    cases = _cases()
    for case in ("border", "one_pixel_mri", "empty", "small_object_on_grey"):
        skipped, full, _ = _both_ways(reference_checkpoint, *cases[case])
        _assert_same(skipped, full)


# -- the pieces -------------------------------------------------------------------------------


def test_content_box() -> None:
    a = np.zeros((10, 12), np.float32)
    b = np.full((10, 12), 0.3, np.float32)
    assert content_box(a, b) is None
    b[2, 11] = 0.5
    a[7, 3] = 0.1
    assert content_box(a, b) == (2, 8, 3, 12)


def test_crops_bit_identical_on_every_body_path(bundled: Path) -> None:
    """Every case above, and one pixel at each corner and side (crops on the image's
    border, grown to the minimum side), gives the whole-slice numbers bit for bit; the
    crops ran the sparse, uniform and split bodies as the whole slices do."""
    cases = _cases()
    for y, x in ((0, 0), (0, 50), (60, W - 1), (H - 1, W - 1), (3, 3)):
        m = np.zeros((H, W), np.float32)
        o = np.zeros((H, W), np.float32)
        m[y, x], o[y, x] = 0.5, 1.0
        cases[f"pixel_{y}_{x}"] = (m, o)
    paths: dict[str, int] = {}
    for mri, other in cases.values():
        skipped, full, _ = _both_ways(bundled, mri, other, paths)
        _assert_identical(skipped, full)
    kinds = {k for pair in paths for k in pair.split("/")}
    assert {"sparse", "zeros", "split"} <= kinds, paths


@pytest.mark.slow
def test_crops_bit_identical_random_weights(random_weights: Path) -> None:
    """Seeded random weights (channels masked in both branches, mixed spatial masks):
    the phantom with air, and a stack of the cases with odd sides."""
    m, p = brain_phantom(128, seed=3)
    mri = np.zeros((160, 160), np.float32)
    other = np.zeros((160, 160), np.float32)
    mri[40:104, 20:84] = m[::2, ::2]
    other[40:104, 20:84] = p[::2, ::2] if p.ndim == 2 else p[::2, ::2, 0]
    skipped, full, counts = _both_ways(random_weights, mri, other)
    assert counts == {"crop": 1}
    _assert_identical(skipped, full)
    cases = _cases(H + 1, W - 1)
    stack = [np.stack([c[i] for c in cases.values()]) for i in (0, 1)]
    skipped, full, counts = _both_ways(random_weights, *stack)
    assert counts.get("crop", 0) >= 3
    _assert_identical(skipped, full)


def test_crops_bit_identical_reference_checkpoint(reference_checkpoint: Path) -> None:
    """Its functional mask is all ones (the uniform path without the mask product), its
    MRI mask a pixel grid (the split body)."""
    torch.set_num_threads(1)
    cases = _cases()
    paths: dict[str, int] = {}
    for case in ("border", "one_pixel_mri", "one_pixel_other_corner", "empty",
                 "small_object_on_grey"):
        skipped, full, _ = _both_ways(reference_checkpoint, *cases[case], paths)
        _assert_identical(skipped, full)
    assert any(pair.endswith("/ones") for pair in paths), paths


@pytest.mark.parametrize("box", [(0, 1, 0, 1), (50, 51, 40, 41), (3, 90, 17, 101), (0, 120, 0, 106),
                                 (17, 30, 60, 61)])
def test_plan_crop_covers_the_radius_aligned(box: tuple[int, int, int, int]) -> None:
    r = RECEPTIVE_RADIUS
    c = plan_crop(box, H, W, r, 2)
    y0, y1, x0, x1 = box
    assert c.y0 % 2 == 0 and c.x0 % 2 == 0 and (c.y1 - c.y0) % 2 == 0 and (c.x1 - c.x0) % 2 == 0
    # Every pixel within r of the content is inside; the pixel just past a side that is
    # not the image's border is more than r away.
    assert c.y0 <= max(0, y0 - r) and c.y1 >= min(H, y1 + r)
    assert c.x0 <= max(0, x0 - r) and c.x1 >= min(W, x1 + r)
    assert c.top == (c.y0 == 0) and c.bottom == (c.y1 == H)
    assert c.left == (c.x0 == 0) and c.right == (c.x1 == W)
    assert c.y1 - c.y0 <= max(y1 - y0 + 2 * r + 2, MIN_SIDE + 2)
    assert c.y1 - c.y0 >= min(MIN_SIDE, H) and c.x1 - c.x0 >= min(MIN_SIDE, W)


def test_border_map_keeps_distances_and_parity() -> None:
    """Padded sides are even, so the square's row has the image row's parity and its
    distances to both borders, each up to r."""
    r, n = 4, 18
    side = 2 * r + 2
    m = border_map(n, r)
    for i, j in enumerate(m):
        assert i % 2 == j % 2
        assert min(i, r) == min(j, r)
        assert min(n - 1 - i, r) == min(side - 1 - j, r)
    assert list(border_map(12, 4)) == [0, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9]
    assert list(half_border_map(7, 4)) == [0, 1, 2, 2, 2, 3, 4]


def test_receptive_radius_bounds_influence(random_weights: Path) -> None:
    """A change of one input pixel changes no fused pixel or mask more than the radius
    the crops rely on away (attention means fixed, as skipping fixes them), on noise
    that gives both masks mixed values."""
    torch.manual_seed(0)
    model = GeSeNet()
    model.load_state_dict(torch.load(random_weights, weights_only=True))
    net = model.eval().fold()
    n = 2 * RECEPTIVE_RADIUS + 30
    g = torch.Generator().manual_seed(5)
    base = [torch.rand(1, 1, n, n, generator=g) for _ in range(2)]
    with torch.inference_mode():
        ref = net.fuse(*base)
        pooled = (ref.body_mri.mean((-2, -1), keepdim=True),
                  ref.body_functional.mean((-2, -1), keepdim=True))
        c = n // 2
        reach = 0
        for which in (0, 1):
            for dy, dx in ((0, 0), (1, 1), (0, 1)):
                x = [t.clone() for t in base]
                x[which][0, 0, c + dy, c + dx] = 1.0 - x[which][0, 0, c + dy, c + dx]
                out = net.fuse(*x, pooled=pooled)
                changed = ((out.fused != ref.fused) | (out.mask_mri != ref.mask_mri)
                           | (out.mask_functional != ref.mask_functional))[0, 0]
                ys, xs = torch.nonzero(changed, as_tuple=True)
                reach = max(reach, int((ys - c - dy).abs().max()), int((xs - c - dx).abs().max()))
    assert 0 < reach <= RECEPTIVE_RADIUS
