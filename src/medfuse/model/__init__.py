"""Networks: GeSeNet (training form), its folded inference form, and building blocks.

``gesenet`` is the network as trained and as the authors' checkpoint stores it; ``folded``
is the same function with the hard masks folded into the weights, built by
:meth:`GeSeNet.fold` and tested equal to it; ``modules`` holds the blocks and the one
hard-mask rule both forms use; ``semantic`` is the small segmentation net of the
semantic loss.
"""

from medfuse.model.folded import FoldedGeSeNet
from medfuse.model.gesenet import Branch, FusionOutput, GeSeNet

__all__ = ["Branch", "FoldedGeSeNet", "FusionOutput", "GeSeNet"]
