"""Tiling pieces: the grid partitions the image, padding reflects to the size multiple,
and a tiling that could not be exact is refused. (Exactness end to end is in
test_engine.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfuse.engine.tiling import MARGIN, TILE, check_tiling, pad_to_multiple, tile_grid


@pytest.mark.parametrize("h,w,tile,margin", [(120, 106, 64, 32), (512, 512, 512, 32), (10, 1030, 512, 32), (8, 8, 2, 0)])
def test_grid_partitions_the_image(h: int, w: int, tile: int, margin: int) -> None:
    count = np.zeros((h, w), int)
    for t in tile_grid(h, w, tile, margin):
        count[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert 0 <= t.ty0 <= t.y0 < t.y1 <= t.ty1 <= h and 0 <= t.tx0 <= t.x0 < t.x1 <= t.tx1 <= w
        assert t.y0 - t.ty0 == min(margin, t.y0) and t.ty1 - t.y1 == min(margin, h - t.y1)
        cy, cx = t.core
        assert (cy.stop - cy.start, cx.stop - cx.start) == (t.y1 - t.y0, t.x1 - t.x0)
    assert (count == 1).all()


def test_grid_hand_computed() -> None:
    tiles = tile_grid(100, 60, 64, 8)
    assert [(t.y0, t.y1, t.ty0, t.ty1) for t in tiles] == [(0, 64, 0, 72), (64, 100, 56, 100)]
    assert all((t.x0, t.x1, t.tx0, t.tx1) == (0, 60, 0, 60) for t in tiles)


def test_defaults_are_exact_for_gesenet() -> None:
    from medfuse.model import GeSeNet

    check_tiling(TILE, MARGIN, GeSeNet.SIZE_MULTIPLE, GeSeNet.RECEPTIVE_RADIUS)


@pytest.mark.parametrize(
    "tile,margin,multiple,radius,match",
    [
        (64, 16, 2, 24, "margin 16 is below the network's receptive radius 24"),
        (63, 32, 2, 24, "must be multiples of 2"),
        (64, 33, 2, 24, "must be multiples of 2"),
        (0, 32, 2, 24, "must be positive"),
    ],
)
def test_inexact_tilings_are_refused(tile: int, margin: int, multiple: int, radius: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_tiling(tile, margin, multiple, radius)


def test_pad_to_multiple_reflects() -> None:
    t = torch.arange(15.0).view(1, 1, 3, 5)
    p = pad_to_multiple(t, 2)
    assert p.shape == (1, 1, 4, 6)
    assert p[0, 0, 3].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0, 8.0]  # row 1 mirrored, then column 3
    assert p[0, 0, :3, 5].tolist() == [3.0, 8.0, 13.0]
    assert pad_to_multiple(t, 4).shape == (1, 1, 4, 8)
    even = torch.zeros(2, 1, 4, 6)
    assert pad_to_multiple(even, 2) is even
