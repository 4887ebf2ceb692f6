"""Inference engine: device choice, weights loading, padding, tiling and batching.

Everything that turns "a stack of luminance pairs as NumPy arrays" into "fused luminance"
lives here, so the pipeline, the CLI, evaluation and benchmarks share one code path.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medfuse.errors import UsageError, WeightsError

if TYPE_CHECKING:
    import torch

    from medfuse.model import GeSeNet

WEIGHTS_ENV = "MEDFUSE_WEIGHTS"
BUNDLED_NAME = "gesenet-medfuse.pt"
MIN_SIZE = 8
#: Images with more pixels than this run in tiles (bounded memory); below it, in one piece.
TILE_THRESHOLD = 1024 * 1024
TILE = 512
#: Overlap on each side of a tile; larger than the network's receptive radius, so the
#: kept centre of every tile is exact.
MARGIN = 32
#: On CPU, slices per network call (see ``Engine.cpu_micro_batch``).
CPU_MICRO_BATCH = 1
#: Largest max-abs difference from float32 (fused luminance in [0, 1]) that lets
#: ``precision="auto"`` use float16 on CUDA: 2 grey levels of 255.
HALF_TOLERANCE = 2 / 255


def select_device(spec: str = "auto") -> torch.device:
    """Validate ``auto|cpu|cuda|cuda:N`` up front and return the torch device."""
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: CUDA is not available on this machine (use cpu or auto)")
        index = spec.partition(":")[2]
        if index:
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise UsageError(
                    f"--device {spec}: no such GPU ({torch.cuda.device_count()} visible)"
                )
        return torch.device(spec)
    raise UsageError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")


def bundled_weights_path() -> Path | None:
    """The weights shipped with medfuse, or None if this build has none.

    Wheels carry them inside the package (``medfuse/weights``); an editable checkout reads
    the top-level ``weights/`` folder directly.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "weights" / BUNDLED_NAME, here.parents[1] / "weights" / BUNDLED_NAME):
        if candidate.is_file():
            return candidate
    return None


def resolve_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """Pick the weights file: explicit path, then $MEDFUSE_WEIGHTS, then the bundled file."""
    if path is None or str(path) == "":
        path = os.environ.get(WEIGHTS_ENV) or None
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UsageError(f"weights file not found: {p}")
        return p
    bundled = bundled_weights_path()
    if bundled is None:
        raise WeightsError(
            "no bundled weights in this build of medfuse; pass --weights PATH "
            f"or set {WEIGHTS_ENV}"
        )
    return bundled


def read_state_dict(path: Path) -> dict[str, Any]:
    """Load a plain state dict, or one held under ``state_dict`` / ``model`` of a
    checkpoint dict, without unpickling arbitrary objects (``weights_only=True``)."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read weights {path}: {first}") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state dict (expected tensors by name)")
    # Strip the prefix DataParallel adds, a common reason for a "wrong" file.
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def check_keys(model: GeSeNet, state: dict[str, Any], path: Path) -> None:
    """Raise one readable error naming missing, unexpected and mis-shaped entries."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        def show(items: list[str]) -> str:
            return ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")

        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {show(unexpected)}")
        if shapes:
            parts.append(f"wrong shape {len(shapes)}: {show(shapes)}")
        raise WeightsError(f"{path} is not a GeSeNet state dict: " + "; ".join(parts))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Engine:
    """A loaded network on a device, with the padding/tiling/batching policy around it.

    Eval-mode inference runs through the folded fast path (:mod:`medfuse.fastpath`) unless
    ``fast`` is False; a model put in training mode always runs its own (Gumbel) graph.

    ``precision``: ``"auto"`` is float32 on CPU (bfloat16 was measured faster but 3-4/255
    off float32 on the reference samples, see docs/performance.md) and float16 on CUDA
    when the fused output stays within :data:`HALF_TOLERANCE` of float32 on the built-in
    phantoms (checked once per weights); ``"float32"``, ``"float16"`` and ``"bfloat16"``
    force a compute dtype without that check.

    ``cpu_micro_batch``: on CPU, slices go through the network this many at a time
    whatever ``batch_size`` says, because one 256x256 slice's activations already fill
    the caches and larger batches were measured no faster per slice.
    """

    model: GeSeNet
    device: torch.device
    weights_path: Path | None = None
    batch_size: int = 8
    tile_threshold: int = TILE_THRESHOLD
    fast: bool = True
    precision: str = "auto"
    cpu_micro_batch: int = CPU_MICRO_BATCH
    _sha256: str | None = field(default=None, repr=False)

    @property
    def weights_sha256(self) -> str | None:
        if self._sha256 is None and self.weights_path is not None:
            self._sha256 = sha256_of(self.weights_path)
        return self._sha256

    # -- public API -------------------------------------------------------------------
    def fuse_luminance(
        self, mri: np.ndarray, other: np.ndarray, with_masks: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Fuse (N, H, W) or (H, W) float arrays in [0, 1] (same shape).

        Returns (fused, mask_mri, mask_functional), each shaped like the input; masks are
        None unless ``with_masks``. Odd sizes are reflect-padded to even and cropped back;
        images above ``tile_threshold`` pixels run in exact overlapping tiles.
        """
        mri = np.asarray(mri, dtype=np.float32)
        other = np.asarray(other, dtype=np.float32)
        if mri.shape != other.shape:
            raise ValueError(f"shape mismatch {mri.shape} vs {other.shape}")
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
        for s in range(0, n, step):
            sl = slice(s, min(n, s + step))
            run = self._run_tiled if tiled else self._run_whole
            f, a, b = run(mri[sl], other[sl])
            fused[sl] = f
            if with_masks:
                mm[sl], mf[sl] = a, b
        if single:
            return fused[0], (mm[0] if mm is not None else None), (mf[0] if mf is not None else None)
        return fused, mm, mf

    def compute_dtype(self) -> torch.dtype:
        """The dtype the network computes in on this engine (see ``precision``)."""
        import torch

        if self.precision == "float32" or not self.fast:
            return torch.float32
        if self.precision in ("float16", "bfloat16"):
            return getattr(torch, self.precision)
        if self.precision != "auto":
            raise UsageError(
                f"precision {self.precision!r}: expected auto, float32, float16 or bfloat16"
            )
        if self.device.type != "cuda":
            return torch.float32
        from medfuse.fastpath import reduced_precision_check

        ok, _ = reduced_precision_check(self.model, torch.float16, HALF_TOLERANCE)
        return torch.float16 if ok else torch.float32

    # -- internals --------------------------------------------------------------------
    def _slices_per_call(self) -> int:
        if self.device.type == "cpu" and self.fast:
            return max(1, min(self.batch_size, self.cpu_micro_batch))
        return max(1, self.batch_size)

    def _network(self) -> Any:
        """What runs a forward pass: the cached fast path, or the model itself (training
        mode, or ``fast=False``). Both offer ``fuse(a, b, pooled)`` and
        ``body_features(a, b)`` with the same meaning."""
        if not self.fast or self.model.training:
            return self.model
        from medfuse.fastpath import fast_inference, tune_allocator

        if self.device.type == "cpu":
            tune_allocator()
        return fast_inference(self.model, dtype=self.compute_dtype())

    @staticmethod
    def _fuse(net: Any, a: torch.Tensor, b: torch.Tensor,
              pooled: tuple[torch.Tensor, torch.Tensor] | None = None) -> Any:
        """One forward pass; the fast path may drop the body outputs the engine never
        reads, which lowers its peak memory."""
        from medfuse.fastpath import FastGeSeNet

        if isinstance(net, FastGeSeNet):
            return net.fuse(a, b, pooled=pooled, return_bodies=False)
        return net.fuse(a, b, pooled=pooled)

    def _to_tensor(self, arr: np.ndarray) -> torch.Tensor:
        """(N, H, W) array to an (N, 1, H, W) tensor on the device. CUDA copies go through
        page-locked memory so they can run asynchronously to the host."""
        import torch

        t = torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(1)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    @staticmethod
    def _to_numpy(t: torch.Tensor) -> np.ndarray:
        return t.float().cpu().numpy()

    @staticmethod
    def _pad_even(t: torch.Tensor) -> torch.Tensor:
        """Reflect-pad bottom/right by one pixel where a side is odd: the network's
        half-resolution mask branch needs even sides, and reflection continues the image
        without an artificial edge (zero padding would put a false edge in the last row)."""
        import torch.nn.functional as F

        ph, pw = t.shape[-2] % 2, t.shape[-1] % 2
        return F.pad(t, (0, pw, 0, ph), mode="reflect") if (ph or pw) else t

    def _run_whole(
        self, mri: np.ndarray, other: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        h, w = mri.shape[-2:]
        net = self._network()
        with torch.inference_mode():
            a = self._pad_even(self._to_tensor(mri))
            b = self._pad_even(self._to_tensor(other))
            out = self._fuse(net, a, b)
            crop = (slice(None), 0, slice(0, h), slice(0, w))
            return (
                self._to_numpy(out.fused[crop]),
                self._to_numpy(out.mask_mri[crop]),
                self._to_numpy(out.mask_functional[crop]),
            )

    def _tiles(self, h: int, w: int) -> list[tuple[int, int, int, int, int, int, int, int]]:
        """(y0, y1, x0, x1) kept region and (ty0, ty1, tx0, tx1) padded tile for each tile.
        Tile origins are even so the mask branch's 2x2 pooling lines up with the whole
        image's."""
        out = []
        for y0 in range(0, h, TILE):
            y1 = min(h, y0 + TILE)
            ty0 = max(0, y0 - MARGIN)
            ty1 = min(h, y1 + MARGIN)
            for x0 in range(0, w, TILE):
                x1 = min(w, x0 + TILE)
                tx0 = max(0, x0 - MARGIN)
                tx1 = min(w, x1 + MARGIN)
                out.append((y0, y1, x0, x1, ty0, ty1, tx0, tx1))
        return out

    def _run_tiled(
        self, mri: np.ndarray, other: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact tiled inference in two passes. Channel attention averages the region-mask
        body output over the whole image, so pass 1 accumulates those means tile by tile
        and pass 2 runs the full network per tile with the global means fixed."""
        import torch

        h, w = mri.shape[-2:]
        he, we = h + h % 2, w + w % 2
        mri_t = self._pad_even(torch.from_numpy(np.ascontiguousarray(mri)).unsqueeze(1))
        oth_t = self._pad_even(torch.from_numpy(np.ascontiguousarray(other)).unsqueeze(1))
        tiles = self._tiles(he, we)
        n = mri.shape[0]
        net = self._network()

        def tile(t: torch.Tensor, ty0: int, ty1: int, tx0: int, tx1: int) -> torch.Tensor:
            part = t[..., ty0:ty1, tx0:tx1].contiguous()
            if self.device.type == "cuda":
                return part.pin_memory().to(self.device, non_blocking=True)
            return part.to(self.device)

        with torch.inference_mode():
            sums = [torch.zeros(n, 32, 1, 1, device=self.device) for _ in range(2)]
            for y0, y1, x0, x1, ty0, ty1, tx0, tx1 in tiles:
                a = tile(mri_t, ty0, ty1, tx0, tx1)
                b = tile(oth_t, ty0, ty1, tx0, tx1)
                bodies = net.body_features(a, b)
                for acc, body in zip(sums, bodies):
                    core = body[..., y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0]
                    acc += core.float().sum(dim=(-2, -1), keepdim=True)
            pooled = (sums[0] / (he * we), sums[1] / (he * we))
            fused = np.empty((n, he, we), np.float32)
            mm = np.empty((n, he, we), np.float32)
            mf = np.empty((n, he, we), np.float32)
            for y0, y1, x0, x1, ty0, ty1, tx0, tx1 in tiles:
                a = tile(mri_t, ty0, ty1, tx0, tx1)
                b = tile(oth_t, ty0, ty1, tx0, tx1)
                out = self._fuse(net, a, b, pooled)
                core = (slice(None), 0, slice(y0 - ty0, y1 - ty0), slice(x0 - tx0, x1 - tx0))
                fused[:, y0:y1, x0:x1] = self._to_numpy(out.fused[core])
                mm[:, y0:y1, x0:x1] = self._to_numpy(out.mask_mri[core])
                mf[:, y0:y1, x0:x1] = self._to_numpy(out.mask_functional[core])
        return fused[:, :h, :w], mm[:, :h, :w], mf[:, :h, :w]


def build_model(state: dict[str, Any] | None = None) -> GeSeNet:
    """A GeSeNet in inference mode, optionally with a (checked) state dict."""
    from medfuse.model import GeSeNet

    model = GeSeNet()
    if state is not None:
        check_keys(model, state, Path("<state dict>"))
        model.load_state_dict(state, strict=True)
    return model.eval()


def load_model(
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    batch_size: int = 8,
    fast: bool = True,
    precision: str = "auto",
) -> Engine:
    """Load GeSeNet weights (explicit, $MEDFUSE_WEIGHTS or bundled) onto a device.

    ``fast`` and ``precision`` are passed to :class:`Engine`."""
    from medfuse.model import GeSeNet

    dev = select_device(device)
    path = resolve_weights(weights)
    state = read_state_dict(path)
    model = GeSeNet()
    check_keys(model, state, path)
    model.load_state_dict(state, strict=True)
    model.eval().to(dev)
    return Engine(
        model=model, device=dev, weights_path=path, batch_size=batch_size, fast=fast,
        precision=precision,
    )
