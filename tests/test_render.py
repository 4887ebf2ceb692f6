"""medfuse.render: overlays, montages and labelled grids (shapes, hand-computed pixels,
parity with the montage writer, exceptions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medfuse.io.images import to_uint
from medfuse.render import OPPOSITE, labelled_grid, montage, overlay, triptych

# -- overlay ------------------------------------------------------------------------------------


def test_overlay_hand_computed_pixels() -> None:
    base = np.array([[0.5, 0.5], [0.0, 1.0]], np.float32)
    mask = np.array([[1, 0], [1, 0]], np.float32)
    got = overlay(base, mask)
    assert got.shape == (2, 2, 3) and got.dtype == np.float32
    # where the mask is set: 55% of the base plus 45% of the tint (1, 0.15, 0.15)
    np.testing.assert_allclose(got[0, 0], [0.5 * 0.55 + 0.45, 0.5 * 0.55 + 0.0675,
                                           0.5 * 0.55 + 0.0675], atol=1e-7)
    np.testing.assert_allclose(got[1, 0], [0.45, 0.0675, 0.0675], atol=1e-7)
    # elsewhere the grey base is repeated unchanged
    np.testing.assert_array_equal(got[0, 1], [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(got[1, 1], [1.0, 1.0, 1.0])


def test_overlay_rgb_base_soft_and_boolean_masks() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((6, 5, 3)).astype(np.float32)
    hard = rng.random((6, 5)) > 0.5
    got = overlay(base, hard)
    want = base * (1 - 0.45 * hard[..., None]) + np.array([1, 0.15, 0.15]) * 0.45 * hard[..., None]
    np.testing.assert_allclose(got, want, atol=1e-6)
    soft = np.full((6, 5), 0.5, np.float32)  # half the opacity
    np.testing.assert_allclose(overlay(base, soft), base * 0.775 + np.array([1, 0.15, 0.15]) * 0.225,
                               atol=1e-6)
    np.testing.assert_array_equal(overlay(base, np.zeros((6, 5))), base)


def test_overlay_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 4\) like its base, got \(4, 5\)"):
        overlay(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="got shape"):
        overlay(np.zeros((4, 4, 2)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="empty"):
        overlay(np.zeros((0, 4)), np.zeros((0, 4)))


# -- montage ------------------------------------------------------------------------------------


def test_montage_layout_hand_computed() -> None:
    tiles = [np.full((2, 3), v, np.float32) for v in (0.1, 0.2, 0.3)]
    got = montage(tiles)
    # ceil(sqrt(3)) = 2 columns, 2 rows; the fourth cell stays black
    assert got.shape == (4, 6) and got.dtype == np.float32
    np.testing.assert_array_equal(got[:2, :3], np.float32(0.1))
    np.testing.assert_array_equal(got[:2, 3:], np.float32(0.2))
    np.testing.assert_array_equal(got[2:, :3], np.float32(0.3))
    np.testing.assert_array_equal(got[2:, 3:], 0.0)


def test_montage_columns() -> None:
    tiles = [np.full((2, 2), v, np.float32) for v in (0.25, 0.5, 0.75)]
    row = montage(tiles, columns=3)
    assert row.shape == (2, 6)
    np.testing.assert_array_equal(row[:, 4:], 0.75)
    assert montage(tiles, columns=1).shape == (6, 2)
    with pytest.raises(ValueError, match="columns must be at least 1"):
        montage(tiles, columns=0)


def test_montage_mixes_grey_into_colour_and_reads_uint8() -> None:
    grey = np.full((2, 2), 0.25, np.float32)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255
    got = montage([grey, rgb])
    assert got.shape == (2, 4, 3)
    np.testing.assert_array_equal(got[:, :2], 0.25)
    np.testing.assert_array_equal(got[:, 2:], np.broadcast_to([1.0, 0.0, 0.0], (2, 2, 3)))
    # a boolean mask is 0/1
    np.testing.assert_array_equal(montage([np.eye(2, dtype=bool)]), np.eye(2))


def test_montage_shrinks_by_area_and_never_enlarges() -> None:
    x = np.random.default_rng(1).random((8, 4)).astype(np.float32)
    got = montage([x], tile=4)  # 8x4 -> 4x2: each output pixel is a 2x2 block mean
    np.testing.assert_allclose(got, x.reshape(4, 2, 2, 2).mean(axis=(1, 3)), atol=1e-6)
    np.testing.assert_array_equal(montage([x], tile=64), x)
    assert montage([np.zeros((3, 1000))], tile=256).shape == (1, 256)  # at least one pixel


def test_montage_equals_the_preview_writer(tmp_path: Path) -> None:
    """What ``--preview`` writes is this function's picture, quantised by the writer."""
    from PIL import Image

    from medfuse.render import Montage

    rng = np.random.default_rng(2)
    slices = {i: rng.random((300, 280, 3)).astype(np.float32) for i in range(5)}
    writer = Montage(tmp_path / "preview.png", list(slices), False, ())
    for i, image in slices.items():
        writer.add(i, image)
    path = writer.write()
    assert path is not None
    written = np.asarray(Image.open(path))
    np.testing.assert_array_equal(written, to_uint(montage(list(slices.values())), 8))


def test_montage_labels_and_orientation_draw_only_near_their_place() -> None:
    tiles = [np.full((64, 64), 0.5, np.float32) for _ in range(4)]
    plain = to_uint(montage(tiles), 8)
    labelled = to_uint(montage(tiles, labels=["12", "", "14", "15"]), 8)
    assert labelled.shape == plain.shape == (128, 128)  # grey stays grey
    changed = labelled != plain
    assert changed[:20, :30].any() and changed[64:84, :30].any()  # labels at top-left
    assert not changed[:20, 64:94].any()  # an empty label draws nothing
    assert not changed[25:, 30:64].any()  # nothing far from the corner
    both = to_uint(montage(tiles, orientation=("L", "P")), 8)
    edges = both != plain
    assert edges[:64, 56:64].any() and edges[56:64, :64].any()  # right and bottom edges
    assert edges[:64, :8].any() and edges[:8, :64].any()  # left and top edges
    assert not edges[20:44, 20:44].any()  # the middle of the tile is untouched
    assert OPPOSITE["L"] == "R" and OPPOSITE["P"] == "A" and OPPOSITE["H"] == "F"


def test_montage_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        montage([])
    with pytest.raises(ValueError, match="montage image 1 must be grey"):
        montage([np.zeros((4, 4)), np.zeros((4, 4, 4))])
    with pytest.raises(ValueError, match="2 labels for 1 images"):
        montage([np.zeros((4, 4))], labels=["a", "b"])
    with pytest.raises(ValueError, match="at least 1 pixel"):
        montage([np.zeros((4, 4))], tile=0)
    with pytest.raises(ValueError, match="two direction letters"):
        montage([np.zeros((4, 4))], orientation=("L",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sequence of images"):
        montage(np.zeros((4, 4)))  # type: ignore[arg-type]


# -- labelled grid --------------------------------------------------------------------------------


def test_labelled_grid_geometry_and_pixels() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    b = rng.random((10, 12, 3)).astype(np.float32)
    got = labelled_grid([[a, b, None], [a, a, a]], ["MRI", "PET", "m"], gap=4, header=22)
    # width: 3 cells of 12 + 4 gaps of 4; height: header + 2 rows of 10 + 3 gaps of 4
    assert got.shape == (22 + 2 * 10 + 3 * 4, 3 * 12 + 4 * 4, 3) and got.dtype == np.float32
    u8 = to_uint(got, 8)
    y, x = 22 + 4, 4
    np.testing.assert_array_equal(u8[y : y + 10, x + 16 + 0 : x + 16 + 12], to_uint(b, 8))
    np.testing.assert_array_equal(u8[y : y + 10, x + 32 : x + 44], 200)  # a missing result
    y2 = y + 10 + 4
    np.testing.assert_array_equal(u8[y2 : y2 + 10, x + 16 : x + 28], np.repeat(a[..., None], 3, -1))
    assert (u8[y - 4 : y, :] == 255).all()  # white gap under the header
    assert (u8[:20, 4:16] < 255).any()  # a column name was drawn


def test_labelled_grid_row_labels_and_errors() -> None:
    tiles = [[np.full((30, 60), 0.5, np.float32)]]
    plain = to_uint(labelled_grid(tiles, ["MRI"]), 8)
    named = to_uint(labelled_grid(tiles, ["MRI"], ["case 7"]), 8)
    diff = named != plain
    assert diff[26:40, 4:50].any() and not diff[45:, :].any()
    with pytest.raises(ValueError, match="at least one row"):
        labelled_grid([], ["MRI"])
    with pytest.raises(ValueError, match="row 0 has 1 tiles for 2 columns"):
        labelled_grid(tiles, ["MRI", "CT"])
    with pytest.raises(ValueError, match="2 row labels for 1 rows"):
        labelled_grid(tiles, ["MRI"], ["a", "b"])
    with pytest.raises(ValueError, match=r"tile \(0, 0\) must be grey"):
        labelled_grid([[np.zeros((4, 4, 2))]], ["MRI"])


# -- triptych ------------------------------------------------------------------------------------


def test_triptych_rows_are_mri_other_fused() -> None:
    mri = [np.full((4, 5), v, np.float32) for v in (0.1, 0.2)]
    other = [np.full((4, 5, 3), v, np.float32) for v in (0.3, 0.4)]
    fused = [np.full((4, 5, 3), v, np.float32) for v in (0.5, 0.6)]
    got = triptych(mri, other, fused)
    assert got.shape == (12, 10, 3)
    for row, values in enumerate(((0.1, 0.2), (0.3, 0.4), (0.5, 0.6))):
        for col, v in enumerate(values):
            np.testing.assert_allclose(got[row * 4:(row + 1) * 4, col * 5:(col + 1) * 5], v)
    with pytest.raises(ValueError, match="as many MRI, other and fused"):
        triptych(mri, other[:1], fused)
    with pytest.raises(ValueError, match="slice labels"):
        triptych(mri, other, fused, ["1"])


def test_triptych_labels_name_row_and_slice() -> None:
    tiles = [np.zeros((64, 64), np.float32)] * 2
    plain = to_uint(triptych(tiles, tiles, tiles), 8)
    labelled = to_uint(triptych(tiles, tiles, tiles, ["40", "41"], orientation=("L", "P")), 8)
    assert labelled.shape == plain.shape
    assert (labelled[:12, :40] > 0).any()  # "MRI 40" in the first tile's corner
    assert (labelled[128:140, :50] > 0).any()  # "fused 40" in the third row
