"""Stand-in engines for tests about files, grids and colour (the network has its own tests)."""

from __future__ import annotations

import numpy as np


class CountsModel:
    """What ``medfuse masks`` asks of ``engine.model``: sparse channels per masked layer."""

    FEATURES = 32  # channels per masked layer, as GeSeNet.FEATURES

    def sparse_channel_counts(self) -> dict[str, list[int]]:
        return {"mri": [1, 2, 3, 4], "other": [4, 3, 2, 1]}


class MeanEngine:
    """Fuses by averaging the two luminance inputs; records the batch sizes it was given.
    Masks, when asked for, mark pixels where the MRI is the brighter input."""

    device = "cpu"
    weights_path = None
    weights_sha256 = None

    def __init__(self, batch_size: int = 8) -> None:
        self.batch_size = batch_size
        self.calls: list[int] = []
        self.model = CountsModel()

    def fuse_luminance(self, mri: np.ndarray, other: np.ndarray, with_masks: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        self.calls.append(len(mri))
        fused = ((mri + other) / 2).astype(np.float32)
        if not with_masks:
            return fused, None, None
        return fused, (mri >= other).astype(np.float32), (other > mri).astype(np.float32)


def never_loaded() -> MeanEngine:
    """An engine loader for requests that must be refused before any engine is loaded."""
    raise AssertionError("the engine was loaded although the request was refused")
