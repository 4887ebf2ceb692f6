"""The bundled weights themselves: loadable, and their region masks mean something.

These guard the shipped file (weights/gesenet-medfuse.pt), not the code: a retrained file
whose masks fall back to a fixed pattern or switch a branch off fails here. The built-in
phantom is anatomy on an empty background, like the atlas slices the weights learnt on.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medfuse.colour import luminance
from medfuse.engine import bundled_weights_path, load_model
from medfuse.phantom import brain_phantom


@pytest.fixture(scope="module")
def phantom_masks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path = bundled_weights_path()
    if path is None:
        pytest.skip("this build carries no bundled weights")
    eng = load_model(path, "cpu")
    mri, pet = brain_phantom(256, seed=0)
    y = luminance(pet)
    _, m_mri, m_fun = eng.fuse_luminance(mri, y, with_masks=True)
    support = np.maximum(mri, y) > 8 / 255
    return m_mri, m_fun, support


def test_background_is_redundant_in_both_branches(phantom_masks) -> None:
    m_mri, m_fun, support = phantom_masks
    far = ~ndimage.binary_dilation(support, iterations=4)  # the prior's margin, and some
    for m in (m_mri, m_fun):
        assert m[far].mean() < 0.05  # no grid or all-ones pattern in the background


def test_each_branch_marks_part_of_the_anatomy(phantom_masks) -> None:
    m_mri, m_fun, support = phantom_masks
    for m in (m_mri, m_fun):
        share = m[support].mean()
        assert 0.1 <= share <= 0.95, share  # neither switched off nor all principal
        assert 0.05 <= m.mean() <= 0.9


def test_masks_are_decided_by_the_image_not_by_rounding() -> None:
    """Over the anatomy, almost no mask pixel may sit on a margin of (nearly) exactly 0: a
    mask generator whose ReLUs died there outputs its bias difference, and with equal biases
    the mask is floating-point noise that still looks like a plausible principal share."""
    import torch

    path = bundled_weights_path()
    if path is None:
        pytest.skip("this build carries no bundled weights")
    net = load_model(path, "cpu").model
    mri, pet = brain_phantom(256, seed=0)
    y = luminance(pet)
    a = torch.from_numpy(np.ascontiguousarray(mri, np.float32))[None, None]
    b = torch.from_numpy(np.ascontiguousarray(y, np.float32))[None, None]
    support = torch.from_numpy(np.maximum(mri, y) > 8 / 255)[None, None]
    for margin in net.spatial_margins(a, b):
        tied = (margin.abs() < 1e-4)[support].float().mean().item()
        assert tied < 0.05, tied
