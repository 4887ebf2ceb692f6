"""Networks: GeSeNet and its building blocks."""

from medfuse.model.gesenet import FusionOutput, GeSeNet

__all__ = ["FusionOutput", "GeSeNet"]
