"""Lightweight two-head segmentation network for GeSeNet's semantic loss.

The paper pre-trains a small segmentation network, freezes it and asks the fused image to
stay segmentable (main head plus an auxiliary head, weighted delta). The Harvard atlas has
no labels, so medfuse trains it on pseudo-labels (see ``medfuse.training.labels``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 4
CLASS_NAMES = ("background", "dark tissue", "bright tissue", "bone / high uptake")


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SemanticNet(nn.Module):
    """Encoder at full and half resolution, a main head on fused multi-scale features and
    an auxiliary head on the deeper features (deep supervision, as in BiSeNet-style nets).
    About 30k parameters: cheap enough to run inside every training step on a CPU."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(_block(1, width), _block(width, width))
        self.down = nn.Sequential(_block(width, 2 * width, 2), _block(2 * width, 2 * width))
        self.context = nn.Sequential(_block(2 * width, 2 * width, 2), _block(2 * width, 2 * width))
        self.fuse = _block(5 * width, 2 * width)
        self.main_head = nn.Conv2d(2 * width, num_classes, 1)
        self.aux_head = nn.Conv2d(2 * width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (main logits, auxiliary logits), both at the input resolution."""
        size = x.shape[-2:]
        s = self.stem(x)
        d = self.down(s)
        c = self.context(d)
        c_up = F.interpolate(c, size=d.shape[-2:], mode="bilinear", align_corners=False)
        d_up = F.interpolate(d + c_up, size=size, mode="bilinear", align_corners=False)
        main = self.main_head(self.fuse(torch.cat([s, d_up, F.interpolate(c, size=size, mode="bilinear", align_corners=False)], 1)))
        aux = F.interpolate(self.aux_head(c), size=size, mode="bilinear", align_corners=False)
        return main, aux
