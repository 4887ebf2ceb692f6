"""Whether a reduced compute precision is acceptable for the loaded weights.

Why measured per weights rather than assumed: float16 or bfloat16 error depends on the
weights (bfloat16 was 4.38/255 off float32 with the reference checkpoint and 0.59/255 with
random weights, docs/lab/performance.md), so the engine measures it once per set of weights on
the built-in phantoms, which ship with medfuse and hold the anatomy-like edges and flat
regions where reduced precision goes wrong first.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from medfuse.engine.network import FusionNetwork

#: Largest max-abs difference from float32 (fused luminance in [0, 1]) that lets
#: ``precision="auto"`` use float16 on CUDA: 2 grey levels of 255.
HALF_TOLERANCE = 2 / 255

#: Errors by dtype, keyed by the network's float32 folded form: the network rebuilds that
#: form whenever its weights change, so a retrained network is measured again.
_ERRORS: weakref.WeakKeyDictionary[Any, dict[Any, float]] = weakref.WeakKeyDictionary()


def _phantom_inputs(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np
    import torch

    from medfuse.colour import luminance
    from medfuse.phantom import brain_phantom

    pairs = [brain_phantom(256, seed) for seed in (0, 1)]  # 256: the atlas size
    mri = torch.from_numpy(np.stack([m for m, _ in pairs]))[:, None]
    pet = torch.from_numpy(np.stack([luminance(p) for _, p in pairs]))[:, None]
    return mri.to(device), pet.to(device)


def reduced_precision_error(
    network: FusionNetwork, dtype: torch.dtype, device: torch.device
) -> float:
    """Max abs difference of the fused luminance between ``dtype`` and float32 folded
    forms on the two built-in MRI/PET phantoms, computed on ``device``; cached per
    weights and dtype."""
    import torch

    reference = network.fold(dtype=torch.float32)
    errors = _ERRORS.setdefault(reference, {})
    if dtype not in errors:
        mri, pet = _phantom_inputs(device)
        with torch.inference_mode():
            ref = reference.fuse(mri, pet).fused.float()
            low = network.fold(dtype=dtype).fuse(mri, pet).fused.float()
            errors[dtype] = float((low - ref).abs().max())
    return errors[dtype]


def reduced_precision_check(
    network: FusionNetwork, dtype: torch.dtype, tolerance: float, device: torch.device
) -> tuple[bool, float]:
    """Whether ``dtype`` keeps the fused luminance within ``tolerance`` (max abs, [0, 1]
    scale) of float32 on the built-in phantoms; and the error."""
    err = reduced_precision_error(network, dtype, device)
    return err <= tolerance, err
