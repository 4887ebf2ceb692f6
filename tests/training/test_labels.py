"""The pseudo-label rule of the semantic module on a hand-made pair."""

from __future__ import annotations

import numpy as np

from medfuse.training.labels import pseudo_labels


def test_pseudo_labels_rule() -> None:
    mri = np.zeros((32, 32), np.float32)
    ct = np.zeros((32, 32), np.float32)
    mri[8:24, 8:24] = 0.3
    mri[8:24, 8:16] = 0.8  # brighter half of the head
    ct[8:24, 8:24] = 0.2
    ct[10:12, 10:22] = 0.9  # bone
    lab = pseudo_labels(mri, ct, "ct")
    assert lab[0, 0] == 0 and lab[16, 20] == 1 and lab[16, 10] == 2 and lab[11, 15] == 3
    assert set(np.unique(pseudo_labels(mri, ct, "pet"))) <= {0, 1, 2, 3}
