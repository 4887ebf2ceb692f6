"""The Engine: a loaded network on a device, with the padding, tiling, batching and
precision policy around it.

Everything that turns "a stack of luminance pairs as NumPy arrays" into "fused luminance"
goes through :meth:`Engine.fuse_luminance`, so the fusion API, the CLI, evaluation and the
benchmarks share one code path. The engine drives any :class:`~medfuse.engine.network.
FusionNetwork`; :func:`load_model` and :func:`build_model` are where GeSeNet is chosen.
Nothing here changes process-wide state (threads, allocator, environment): that is
:func:`medfuse.engine.runtime.tune_process`, which only entry points call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medfuse.engine.device import select_device
from medfuse.engine.precision import HALF_TOLERANCE, reduced_precision_check
from medfuse.engine.skipping import EmptySpace
from medfuse.engine.tiling import (
    MARGIN,
    TILE,
    TILE_THRESHOLD,
    check_tiling,
    fuse_tiled,
    pad_to_multiple,
)
from medfuse.engine.weights import (
    check_finite,
    check_keys,
    read_state_dict,
    resolve_weights,
    sha256_of,
)
from medfuse.errors import UsageError
from medfuse.vocabulary import MIN_SIDE as MIN_SIZE  # the one smallest-side rule

if TYPE_CHECKING:
    import torch

    from medfuse.engine.network import FusionNetwork, FusionPass
    from medfuse.model import GeSeNet

#: On CPU, slices per network call (see ``Engine.cpu_micro_batch``).
CPU_MICRO_BATCH = 1
PRECISIONS = ("auto", "float32", "float16", "bfloat16")


@dataclass
class Engine:
    """A loaded network on a device, with the padding/tiling/batching policy around it.

    Eval-mode inference runs through the network's folded inference form
    (``model.fold()``) unless ``fast`` is False; a network in training mode always runs
    its own (Gumbel) graph.

    ``precision``: ``"auto"`` is float32 on CPU (bfloat16 was measured faster but 3-4/255
    off float32 on the reference samples, see docs/lab/performance.md) and float16 on CUDA
    when the fused output stays within :data:`HALF_TOLERANCE` of float32 on the built-in
    phantoms (checked once per weights); ``"float32"``, ``"float16"`` and ``"bfloat16"``
    force a compute dtype without that check.

    ``cpu_micro_batch``: on CPU, slices go through the network this many at a time
    whatever ``batch_size`` says, because one 256x256 slice's activations already fill
    the caches and larger batches were measured no faster per slice.

    ``tile_threshold`` / ``tile_size``: images with more pixels than the threshold run in
    exact tiles of ``tile_size`` (plus :data:`~medfuse.engine.tiling.MARGIN`), which bounds
    memory without changing the result.

    ``skip_empty``: on CPU, each slice runs the network only near its content and
    gives the rest the value the whole-slice network gives there
    (:mod:`~medfuse.engine.skipping`; exact up to float rounding). Off only to measure
    the whole-slice path.

    On CUDA (nothing here changes the CPU path, whose results stay bit-identical):

    * ``cuda_fold_options`` are passed to the network's ``fold`` on CUDA only. The default
      turns GeSeNet's sparse body off: it is a CPU cache trade-off, and finding its
      boxes loops over every image of a batch in Python with a host synchronisation per
      band (thousands per 512-slice batch), while the dense body is cheap on a GPU.
    * both inputs of a call travel in one copy from a page-locked buffer the engine keeps
      (allocating page-locked memory per call costs more than the copy), are padded on
      the device, and masks are copied back only when asked for.
    * ``cudnn_benchmark`` lets cuDNN time its algorithms per input shape during this
      engine's calls only; off by default because the chosen algorithm, and so the last
      bits of a result, may then differ between runs.
    """

    model: FusionNetwork
    device: torch.device
    weights_path: Path | None = None
    batch_size: int = 8
    tile_threshold: int = TILE_THRESHOLD
    fast: bool = True
    precision: str = "auto"
    cpu_micro_batch: int = CPU_MICRO_BATCH
    tile_size: int = TILE
    cuda_fold_options: dict[str, Any] = field(default_factory=lambda: {"sparse": "never"})
    cudnn_benchmark: bool = False
    skip_empty: bool = True
    _sha256: str | None = field(default=None, repr=False)
    _pinned: Any = field(default=None, repr=False)
    _empty: EmptySpace | None = field(default=None, repr=False)

    @property
    def weights_sha256(self) -> str | None:
        """SHA-256 of the weights file (computed once, on first use), for provenance."""
        if self._sha256 is None and self.weights_path is not None:
            self._sha256 = sha256_of(self.weights_path)
        return self._sha256

    # -- public API -------------------------------------------------------------------
    def fuse_luminance(
        self, mri: np.ndarray, other: np.ndarray, with_masks: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Fuse (N, H, W) or (H, W) float arrays in [0, 1] (same shape).

        Returns (fused, mask_mri, mask_functional), each shaped like the input; masks are
        None unless ``with_masks``. Sizes that are not a multiple of the network's
        ``SIZE_MULTIPLE`` are reflect-padded and cropped back; images above
        ``tile_threshold`` pixels run in exact overlapping tiles.
        """
        mri = np.asarray(mri, dtype=np.float32)
        other = np.asarray(other, dtype=np.float32)
        if mri.shape != other.shape:
            raise ValueError(f"shape mismatch: MRI {mri.shape} vs other {other.shape}")
        if mri.ndim not in (2, 3):
            raise ValueError(f"expected (H, W) or (N, H, W) arrays, got shape {mri.shape}")
        single = mri.ndim == 2
        if single:
            mri, other = mri[None], other[None]
        n, h, w = mri.shape
        if min(h, w) < MIN_SIZE:
            raise ValueError(f"images must be at least {MIN_SIZE}x{MIN_SIZE}, got {h}x{w}")
        fused = np.empty((n, h, w), np.float32)
        mm = np.empty((n, h, w), np.float32) if with_masks else None
        mf = np.empty((n, h, w), np.float32) if with_masks else None
        tiled = h * w > self.tile_threshold
        step = 1 if tiled else self._slices_per_call()
        run = self._run_tiled if tiled else self._run_whole
        for s in range(0, n, step):
            sl = slice(s, min(n, s + step))
            f, a, b = run(mri[sl], other[sl], with_masks)
            fused[sl] = f
            if mm is not None and mf is not None and a is not None and b is not None:
                mm[sl], mf[sl] = a, b
        if single:
            return fused[0], (mm[0] if mm is not None else None), (mf[0] if mf is not None else None)
        return fused, mm, mf

    def compute_dtype(self) -> torch.dtype:
        """The dtype the network computes in on this engine (see ``precision``)."""
        import torch

        if self.precision not in PRECISIONS:
            raise UsageError(
                f"precision {self.precision!r}: expected auto, float32, float16 or bfloat16"
            )
        if self.precision == "float32" or not self.fast:
            return torch.float32
        if self.precision in ("float16", "bfloat16"):
            return getattr(torch, self.precision)
        if self.device.type != "cuda":
            return torch.float32
        ok, _ = reduced_precision_check(self.model, torch.float16, HALF_TOLERANCE, self.device)
        return torch.float16 if ok else torch.float32

    # -- internals --------------------------------------------------------------------
    def _slices_per_call(self) -> int:
        if self.device.type == "cpu" and self.fast:
            return max(1, min(self.batch_size, self.cpu_micro_batch))
        return max(1, self.batch_size)

    def _network(self) -> FusionPass:
        """What runs a forward pass: the network's cached folded form, or the network
        itself (training mode, or ``fast=False``). Both keep the FusionPass contract."""
        if not self.fast or self.model.training:
            return self.model
        if self.device.type == "cuda":
            return self.model.fold(dtype=self.compute_dtype(), **self.cuda_fold_options)
        return self.model.fold(dtype=self.compute_dtype())

    def _load(self, t: torch.Tensor) -> torch.Tensor:
        """A host tensor onto the device. CUDA copies go through page-locked memory so they
        can run asynchronously to the host."""
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _host(self, arr: np.ndarray) -> torch.Tensor:
        """(N, H, W) array to an (N, 1, H', W') host tensor padded to the size multiple."""
        import torch

        t = torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(1)
        return pad_to_multiple(t, self.model.SIZE_MULTIPLE)

    def _inputs(self, mri: np.ndarray, other: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Both (N, H, W) inputs as padded (N, 1, H', W') tensors on the device. On CUDA
        they go in one non-blocking copy from the engine's reusable page-locked buffer
        (safe to refill: every call ends by copying its results back, which waits for the
        stream) and are padded there; elsewhere as before."""
        if self.device.type != "cuda":
            return self._load(self._host(mri)), self._load(self._host(other))
        import torch

        n, h, w = mri.shape
        size = 2 * n * h * w
        if self._pinned is None or self._pinned.numel() < size:
            self._pinned = torch.empty(size, dtype=torch.float32, pin_memory=True)
        host = self._pinned[:size].view(2, n, h, w)
        staged = host.numpy()
        np.copyto(staged[0], mri)
        np.copyto(staged[1], other)
        both = host.to(self.device, non_blocking=True)
        m = self.model.SIZE_MULTIPLE
        return pad_to_multiple(both[0].unsqueeze(1), m), pad_to_multiple(both[1].unsqueeze(1), m)

    @staticmethod
    def _to_numpy(t: torch.Tensor) -> np.ndarray:
        return t.float().cpu().numpy()

    def _exact_float32(self) -> contextlib.AbstractContextManager[None]:
        """On CUDA in float32, convolutions and matmuls without TF32 for this call only:
        torch allows TF32 in cuDNN by default, which put CUDA float32 4e-4 off the CPU and
        flipped mask pixels (measured on an H200); without it the gap is 5e-7. With
        ``cudnn_benchmark``, cuDNN's autotuner is on for this call only too."""
        import torch

        if self.device.type != "cuda":
            return contextlib.nullcontext()
        exact = self.compute_dtype() == torch.float32
        if not exact and not self.cudnn_benchmark:
            return contextlib.nullcontext()
        return _cuda_flags(allow_tf32=not exact, benchmark=self.cudnn_benchmark)

    def _run_whole(
        self, mri: np.ndarray, other: np.ndarray, with_masks: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        import torch

        h, w = mri.shape[-2:]
        net = self._network()
        with torch.inference_mode(), self._exact_float32():
            a, b = self._inputs(mri, other)
            skipped = self._skipping(net, a, b, with_masks)
            if skipped is not None:
                f, mm, mf = skipped
                return f[:, :h, :w], (mm if mm is None else mm[:, :h, :w]), \
                    (mf if mf is None else mf[:, :h, :w])
            out = net.fuse(a, b, return_bodies=False)
            crop = (slice(None), 0, slice(0, h), slice(0, w))
            fused = self._to_numpy(out.fused[crop])
            if not with_masks:
                return fused, None, None
            return (
                fused,
                self._to_numpy(out.mask_mri[crop]),
                self._to_numpy(out.mask_functional[crop]),
            )

    def _skipping(
        self, net: FusionPass, a: torch.Tensor, b: torch.Tensor, with_masks: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None:
        """One padded slice with empty space skipped (CPU, the folded form, one slice per
        call as ``cpu_micro_batch`` sets by default), or None where that does not apply
        or would not pay."""
        radius = getattr(net, "receptive_radius", None)
        if not self.skip_empty or self.device.type != "cpu" or radius is None or a.shape[0] != 1:
            return None
        if self._empty is None or self._empty.radius != radius:
            self._empty = EmptySpace(radius, self.model.SIZE_MULTIPLE)
        done = self._empty.fuse_slice(net, a, b, with_masks)
        if done is None:
            return None
        f, mm, mf = done
        return f[None], (None if mm is None else mm[None]), (None if mf is None else mf[None])

    def _run_tiled(
        self, mri: np.ndarray, other: np.ndarray, with_masks: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact tiled inference (:func:`~medfuse.engine.tiling.fuse_tiled`), cropped back
        from the padded size."""
        import torch

        check_tiling(self.tile_size, MARGIN, self.model.SIZE_MULTIPLE, self.model.RECEPTIVE_RADIUS)
        h, w = mri.shape[-2:]
        net = self._network()
        with torch.inference_mode(), self._exact_float32():
            fused, mm, mf = fuse_tiled(
                net, self._host(mri), self._host(other), self._load, self.tile_size, MARGIN
            )
        return fused[:, :h, :w], mm[:, :h, :w], mf[:, :h, :w]


@contextlib.contextmanager
def _cuda_flags(allow_tf32: bool, benchmark: bool) -> Iterator[None]:
    """cuDNN/matmul flags for one call, restored afterwards (no process-wide change)."""
    import torch

    matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn
    with cudnn.flags(enabled=cudnn.enabled, benchmark=benchmark or cudnn.benchmark,
                     deterministic=cudnn.deterministic,
                     allow_tf32=cudnn.allow_tf32 if allow_tf32 else False):
        if not allow_tf32:
            torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = matmul


def build_model(state: dict[str, Any] | None = None, source: Path | str = "<state dict>") -> GeSeNet:
    """A GeSeNet in eval mode, optionally with a state dict checked for finite values,
    keys and shapes (errors name ``source``) and loaded strictly."""
    from medfuse.model import GeSeNet

    model = GeSeNet()
    if state is not None:
        check_finite(state, source)
        check_keys(model, state, source)
        model.load_state_dict(state, strict=True)
    return model.eval()


def load_model(
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    batch_size: int = 8,
    fast: bool = True,
    precision: str = "auto",
) -> Engine:
    """Load GeSeNet weights onto a device and wrap them in an :class:`Engine`.

    ``weights``: a path, a model name from the per-user models folder, or None for
    ``$MEDFUSE_WEIGHTS`` or the bundled weights (:func:`~medfuse.engine.weights.
    resolve_weights`). ``fast`` and ``precision`` are passed to :class:`Engine`. No
    process-wide setting is changed.
    """
    dev = select_device(device)
    path = resolve_weights(weights)
    model = build_model(read_state_dict(path), source=path).to(dev)
    return Engine(
        model=model, device=dev, weights_path=path, batch_size=batch_size, fast=fast,
        precision=precision,
    )
