"""Pseudo-labels for the semantic module, from the source pair alone.

The Harvard atlas has no segmentations, so the semantic loss needs labels that a rule can
derive from the registered sources. The rule (documented in docs/training.md):

0 background        max(MRI, other) <= 0.06 after a 5x5 median (air, outside the head)
3 bone / uptake     CT: other >= 0.55 (cortical bone is the brightest CT tissue);
                    PET/SPECT: other's luminance in the top 20 % of the head
                    (highest tracer uptake in the pseudo-colour luminance)
2 bright tissue     remaining head pixels with MRI above the head's MRI median
1 dark tissue       the rest of the head
"""

from __future__ import annotations

import numpy as np

BACKGROUND_LEVEL = 0.06
CT_BONE_LEVEL = 0.55
UPTAKE_QUANTILE = 0.80


def pseudo_labels(mri: np.ndarray, other_y: np.ndarray, modality: str) -> np.ndarray:
    """(H, W) uint8 labels in 0..3 for one registered pair of luminance images in [0, 1]."""
    import cv2

    mri = np.asarray(mri, np.float32)
    other_y = np.asarray(other_y, np.float32)
    strongest = cv2.medianBlur(np.maximum(mri, other_y), 5)
    head = strongest > BACKGROUND_LEVEL
    labels = np.zeros(mri.shape, np.uint8)
    if not head.any():
        return labels
    median = float(np.median(mri[head]))
    labels[head] = 1
    labels[head & (mri > median)] = 2
    if modality == "ct":
        hot = other_y >= CT_BONE_LEVEL
    else:
        hot = other_y >= float(np.quantile(other_y[head], UPTAKE_QUANTILE))
    labels[head & hot] = 3
    return labels
