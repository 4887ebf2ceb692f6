"""What the engine needs from a fusion network: a small structural protocol.

Why a protocol rather than ``isinstance(model, GeSeNet)``: the engine's job (devices,
padding, tiling, batching, precision) is the same for any network with this contract,
so the training form, its folded inference form and test doubles all run through the same
code, and nothing here depends on a network's layer layout or width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch


class FusionResult(Protocol):
    """One forward pass's outputs, each (N, 1, H, W): fused luminance in [0, 1] and the
    two spatial masks (1 = principal)."""

    @property
    def fused(self) -> torch.Tensor: ...

    @property
    def mask_mri(self) -> torch.Tensor: ...

    @property
    def mask_functional(self) -> torch.Tensor: ...


class FusionPass(Protocol):
    """A forward pass: what runs on the device (a network or its folded form)."""

    def fuse(
        self,
        mri: torch.Tensor,
        other: torch.Tensor,
        pooled: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_bodies: bool = True,
    ) -> FusionResult:
        """Fuse (N, 1, H, W) tensors whose sides are multiples of ``SIZE_MULTIPLE``;
        ``pooled`` fixes the channel-attention means (MRI, functional) for tiling;
        ``return_bodies=False`` lets the pass drop outputs the engine never reads."""
        ...

    def body_features(
        self, mri: torch.Tensor, other: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(MRI, functional) tensors (N, C, H, W) whose whole-image means are the
        ``pooled`` argument of :meth:`fuse`: the first pass of exact tiling."""
        ...


class FusionNetwork(FusionPass, Protocol):
    """A trainable fusion network as the engine drives it (GeSeNet is one)."""

    #: Pixels of context an output pixel depends on; the tile margin must cover it.
    RECEPTIVE_RADIUS: int
    #: Input height and width must be multiples of this (the engine pads).
    SIZE_MULTIPLE: int
    #: In training mode the engine runs the network itself, never a folded form.
    training: bool

    def fold(self, **options: Any) -> FusionPass:
        """The inference form of the current weights (eval-mode function), cached by the
        network and rebuilt when its weights change; ``dtype`` sets the compute dtype."""
        ...
