"""One call to score a fusion: ``compute_metrics`` (grey) and ``compute_metrics_colour``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numpy.typing import ArrayLike

from ._common import DEFAULT_PROFILE, MetricsInputError, check_profile, check_same_shape
from ._common import prepare as _prepare
from ._common import to_grey as _to_grey
from .basic import _ag_standard, _ag_toolbox, _en, _scd, _sd_standard, _sd_toolbox, _sf
from .gradient import EdgePreservation, _edge_preservation
from .information import _mi
from .structural import _ssim
from .vif import _vif

METRIC_NAMES: tuple[str, ...] = (
    "EN",
    "SD",
    "SF",
    "AG",
    "MI",
    "SSIM",
    "VIF",
    "SCD",
    "Qabf",
    "Nabf",
)

# Direction of "better" for reports and rankings: only the artefact measure Nabf is a cost.
HIGHER_IS_BETTER: dict[str, bool] = {name: name != "Nabf" for name in METRIC_NAMES}


class _Pair:
    """Prepared A, B, F of one fusion plus lazily shared intermediate results."""

    def __init__(self, a: np.ndarray, b: np.ndarray, f: np.ndarray, profile: str) -> None:
        self.a, self.b, self.f = a, b, f
        self.toolbox = profile == "toolbox2022"
        self._edges: EdgePreservation | None = None
        self._qln: tuple[float, float, float] | None = None

    def qln(self) -> tuple[float, float, float]:
        """Qabf, Labf, Nabf share their Sobel maps: compute them once per pair."""
        if self._qln is None:
            self._edges = _edge_preservation(self.a, self.b, self.f, self.toolbox)
            self._qln = self._edges.decomposition()
        return self._qln


_Scorer = Callable[[_Pair], float]

_SCORERS: dict[str, _Scorer] = {
    "EN": lambda p: _en(p.f),
    "SD": lambda p: _sd_toolbox(p.f) if p.toolbox else _sd_standard(p.f),
    "SF": lambda p: _sf(p.f, 255.0 if p.toolbox else 1.0),
    "AG": lambda p: _ag_toolbox(p.f) if p.toolbox else _ag_standard(p.f),
    "MI": lambda p: _mi(p.a, p.b, p.f, merge_top=p.toolbox),
    "SSIM": lambda p: _ssim(p.a, p.b, p.f, toolbox=p.toolbox),
    "VIF": lambda p: _vif(p.a, p.b, p.f, toolbox=p.toolbox),
    "SCD": lambda p: _scd(p.a, p.b, p.f),
    "Qabf": lambda p: p.qln()[0],
    "Nabf": lambda p: p.qln()[2],
}


def _select(metrics: Iterable[str] | None) -> list[str]:
    if metrics is None:
        return list(METRIC_NAMES)
    if isinstance(metrics, str):
        metrics = [metrics]
    chosen = list(metrics)
    unknown = [m for m in chosen if m not in _SCORERS]
    if unknown:
        raise MetricsInputError(f"unknown metric(s) {unknown}; known: {list(METRIC_NAMES)}")
    return chosen


def compute_metrics(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    profile: str = DEFAULT_PROFILE,
    metrics: Iterable[str] | None = None,
) -> dict[str, float]:
    """Score fused image F against sources A (MRI) and B (CT/PET/SPECT luminance).

    All three are 2-D grey images of one shape on the 0..255 scale (uint8 or float).
    ``profile`` is ``"standard"`` (correct definitions, the default) or ``"toolbox2022"``
    (the 2022 MATLAB toolbox convention behind published tables). ``metrics`` picks a
    subset of :data:`METRIC_NAMES`; the result keeps the requested order. A metric that is
    undefined for the input (e.g. SCD when F - A is constant) is ``nan``, never an error or
    a NumPy warning.
    """
    p = check_profile(profile)
    names = _select(metrics)
    ai, bi, fi = _prepare(a, p, "A"), _prepare(b, p, "B"), _prepare(f, p, "F")
    check_same_shape(A=ai, B=bi, F=fi)
    pair = _Pair(ai, bi, fi, p)
    with np.errstate(all="ignore"):
        return {name: float(_SCORERS[name](pair)) for name in names}


def compute_metrics_colour(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    profile: str = DEFAULT_PROFILE,
    metrics: Iterable[str] | None = None,
) -> dict[str, float]:
    """:func:`compute_metrics` for images that may be colour (HxWx3, uint8 or float 0..255).

    Each image is reduced to luminance by :func:`to_grey` for the profile (MATLAB rgb2gray
    with rounding for ``toolbox2022``, float BT.601 Y for ``standard``); 2-D images pass
    through unchanged. Fusion metrics are defined on one channel, and the network fuses
    luminance only, so this is where colour is scored.
    """
    p = check_profile(profile)
    return compute_metrics(_to_grey(a, p), _to_grey(b, p), _to_grey(f, p), p, metrics)
