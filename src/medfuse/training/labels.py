"""Pseudo-labels for the semantic module, from the source pair alone.

The Harvard atlas has no segmentations, so the semantic loss needs labels that a rule can
derive from the registered sources. The rule (documented in docs/training.md, "The semantic module"):

0 background        max(MRI, other) <= 0.06 after a 5x5 median (air, outside the head)
3 bone / uptake     CT: other >= 0.9 (bone saturates to white in atlas CT; brain sits
                    at 0.3-0.6); PET/SPECT: "warmth" R - B - G/2 in the top 20 % of the
                    head's active pixels (luminance > 0.15). The atlas' rainbow-like maps run from blue (low uptake)
                    to red (high); luminance does not rank uptake (yellow is
                    brighter than red), warmth does.
2 bright tissue     remaining head pixels with MRI above the head's MRI median
1 dark tissue       the rest of the head
"""

from __future__ import annotations

import numpy as np

BACKGROUND_LEVEL = 0.06
CT_BONE_LEVEL = 0.9
UPTAKE_QUANTILE = 0.80
ACTIVE_LEVEL = 0.15


def warmth(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """R - B - G/2 from BT.601 YCbCr: ranks rainbow-like colour maps by uptake
    (red > yellow > green > blue); R - B alone ties red with yellow."""
    from medfuse.colour import ycbcr_to_rgb

    rgb = ycbcr_to_rgb(np.asarray(y), np.asarray(cb), np.asarray(cr))
    return rgb[..., 0] - rgb[..., 2] - 0.5 * rgb[..., 1]


def pseudo_labels(
    mri: np.ndarray,
    other_y: np.ndarray,
    modality: str,
    chroma: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(H, W) uint8 labels in 0..3 for one registered pair in [0, 1]; ``chroma`` is the
    (Cb, Cr) of a colour PET/SPECT image (without it, luminance ranks uptake)."""
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
        # Only where the tracer image shows activity: near-black pixels have arbitrary hue.
        active = head & (other_y > ACTIVE_LEVEL)
        if not active.any():
            return labels
        score = warmth(other_y, *chroma) if chroma is not None else other_y
        hot = active & (score >= float(np.quantile(score[active], UPTAKE_QUANTILE)))
    labels[head & hot] = 3
    return labels
