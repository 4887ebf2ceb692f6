"""Edge-transfer metrics: Qabf (Xydeas & Petrovic 2000) and Nabf (fusion artefacts).

Both rest on the same per-pixel edge-preservation maps Q^AF and Q^BF, so they share one
computation (:func:`edge_preservation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from ._common import DEFAULT_PROFILE, check_profile, check_same_shape, prepare

# Sigmoid parameters of Xydeas & Petrovic (2000).
_TG, _KG, _DG = 0.9994, -15.0, 0.5
_TA, _KA, _DA = 0.9879, -22.0, 0.8

# MATLAB's Sobel kernels as the toolbox passes them to conv2: h3 for x, h1 for y.
_H3 = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_H1 = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


@dataclass(frozen=True)
class _Edges:
    """Sobel edge strength and orientation of one image."""

    g: np.ndarray
    angle: np.ndarray  # atan(gy/gx) in (-pi/2, pi/2], +pi/2 where gx == 0


def _conv_same_toolbox(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``conv2(x, kernel, 'same')`` with zero padding, each output summed term by term in
    raster order of its 3x3 neighbourhood (top-left first, row by row), from 0.

    The order matters for exactly two decisions of the toolbox's Qabf: ``gA == gF`` (G = gF
    there) and ``gx == 0`` (angle pi/2), both tested in floating point, so whether two
    Sobel sums that are equal in exact arithmetic (e.g. a neighbourhood and the same one
    shifted by a constant grey level) come out bit-identical depends on the order of the
    additions. With this order and the 1/255 scaling of :func:`_edges`, the 15 reference
    vectors (``toolbox2022_expected.csv``) are reproduced to 6e-7 relative, i.e. to the
    csv's six decimals; GNU Octave's ``dconv2o`` order (kernel column by column, last
    first) with x/255 left up to 5.6e-4 there and 2.3e-3 on one pair of the paper's
    MRI-CT test set (tests/metrics/test_gradient.py pins a hand-made case).
    """
    m, n = x.shape
    kh, kw = kernel.shape
    pad = np.zeros((m + kh - 1, n + kw - 1))
    pad[kh // 2 : kh // 2 + m, kw // 2 : kw // 2 + n] = x
    out = np.zeros((m, n))
    rot = kernel[::-1, ::-1]  # convolution = correlation with the rotated kernel
    for di in range(kh):
        for dj in range(kw):
            if rot[di, dj] != 0.0:  # a zero tap adds +0, which changes no sum
                out += rot[di, dj] * pad[di : di + m, dj : dj + n]
    return out


def _orientation(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    zero = gx == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(zero, np.pi / 2.0, np.arctan(gy / np.where(zero, 1.0, gx)))


def _edges(x: np.ndarray, toolbox: bool) -> _Edges:
    """Zero-padded 'same' Sobel strength sqrt(gx^2 + gy^2) and orientation atan(gy/gx).

    ``toolbox``: exactly the toolbox's arithmetic, zero padding, on x * (1/255) (the
    reciprocal: x / 255 rounds differently for some grey levels) with the summation order
    of :func:`_conv_same_toolbox`, so that its floating-point equality tests behave the same.
    Otherwise (``standard``) the gradients are taken on the grey levels themselves (the
    metric is scale-free once G = 1 at equality) with the border replicated: zero padding
    would turn the image frame into a step edge as high as the border grey level, present
    alike in A, B and F and so scored as perfectly transferred, and would give a constant
    image edges.
    The signs follow MATLAB's conv2 with h3/h1 (gx = left - right, gy = bottom - top); they
    matter because gx == 0 maps to +pi/2 whatever the sign of gy.
    """
    if toolbox:
        xf = np.asarray(x, dtype=np.float64) * (1.0 / 255.0)  # the reciprocal, not x / 255
        gx = _conv_same_toolbox(xf, _H3)
        gy = _conv_same_toolbox(xf, _H1)
    else:
        xf = np.asarray(x, dtype=np.float64)
        # correlate with the 180-degree rotated kernels == convolution with h3/h1
        gx = ndimage.correlate(xf, _H3[::-1, ::-1], mode="nearest")
        gy = ndimage.correlate(xf, _H1[::-1, ::-1], mode="nearest")
    return _Edges(g=np.sqrt(gx * gx + gy * gy), angle=_orientation(gx, gy))


def _q_map(src: _Edges, fus: _Edges, equal_is_gf: bool) -> np.ndarray:
    """Per-pixel edge preservation Q^XF = Q_g(G) * Q_a(A) of source X in F.

    G is the strength ratio min/max. Where the strengths are equal, G = 1 by definition
    (``standard``); the toolbox instead assigns G = gF (``equal_is_gf``), i.e. G = 0 where
    both are flat and G = gF in 1/255 units elsewhere.
    """
    gs, gf = src.g, fus.g
    big_src = gs > gf
    big_fus = gs < gf
    ratio = np.ones_like(gs)
    np.divide(gf, gs, out=ratio, where=big_src)
    np.divide(gs, gf, out=ratio, where=big_fus)
    equal = ~(big_src | big_fus)
    if equal_is_gf:
        ratio[equal] = gf[equal]
    a = 1.0 - np.abs(src.angle - fus.angle) / (np.pi / 2.0)
    qg = _TG / (1.0 + np.exp(_KG * (ratio - _DG)))
    qa = _TA / (1.0 + np.exp(_KA * (a - _DA)))
    return qg * qa


@dataclass(frozen=True)
class EdgePreservation:
    """Qabf's ingredients: the maps Q^AF, Q^BF, the weights gA, gB and F's strength."""

    q_af: np.ndarray
    q_bf: np.ndarray
    g_a: np.ndarray
    g_b: np.ndarray
    g_f: np.ndarray

    def decomposition(self) -> tuple[float, float, float]:
        """(Qabf, Labf, Nabf) with Kumar's (2013) weighting; they sum to 1 when defined.

        Qabf: transferred edge information. Nabf: loss weighted where F's edge is stronger
        than both sources' (AM = 1, new edges that come from nowhere: artefacts). Labf: the
        remaining loss, where F is not stronger than both.
        """
        wsum = float((self.g_a + self.g_b).sum())
        if wsum == 0.0:
            nan = float("nan")
            return nan, nan, nan
        q = float((self.q_af * self.g_a + self.q_bf * self.g_b).sum()) / wsum
        loss = (1.0 - self.q_af) * self.g_a + (1.0 - self.q_bf) * self.g_b
        artefact = (self.g_f > self.g_a) & (self.g_f > self.g_b)
        n = float(loss[artefact].sum()) / wsum
        lost = float(loss[~artefact].sum()) / wsum
        return q, lost, n


def _edge_preservation(
    a: np.ndarray, b: np.ndarray, f: np.ndarray, toolbox: bool
) -> EdgePreservation:
    ea, eb, ef = _edges(a, toolbox), _edges(b, toolbox), _edges(f, toolbox)
    return EdgePreservation(
        q_af=_q_map(ea, ef, toolbox),
        q_bf=_q_map(eb, ef, toolbox),
        g_a=ea.g,
        g_b=eb.g,
        g_f=ef.g,
    )


def edge_preservation(
    a: ArrayLike, b: ArrayLike, f: ArrayLike, profile: str = DEFAULT_PROFILE
) -> EdgePreservation:
    """The shared Q^AF / Q^BF maps of Qabf and Nabf, for inspection or the L/N split."""
    p = check_profile(profile)
    ai, bi, fi = prepare(a, p, "A"), prepare(b, p, "B"), prepare(f, p, "F")
    check_same_shape(A=ai, B=bi, F=fi)
    return _edge_preservation(ai, bi, fi, toolbox=p == "toolbox2022")


def qabf(a: ArrayLike, b: ArrayLike, f: ArrayLike, profile: str = DEFAULT_PROFILE) -> float:
    """Qabf (Xydeas & Petrovic 2000): edge information of A and B transferred to F.

    Sobel strength g and orientation alpha per pixel; for source X,
    G = min(gX, gF) / max(gX, gF), A = 1 - |aX - aF| / (pi/2),
    Q^XF = 0.9994 / (1 + e^(-15 (G - 0.5))) * 0.9879 / (1 + e^(-22 (A - 0.8))), and
    Qabf = sum(Q^AF gA + Q^BF gB) / sum(gA + gB). The profiles differ at equal strengths
    (``standard``: G = 1; ``toolbox2022``: G = gF on the 0..1 scale) and at the border
    (``standard`` replicates it; the toolbox zero-pads, which makes the image frame an
    edge). NaN when A and B are both flat (no edge to transfer; with zero padding only a
    black constant image is flat).
    """
    return edge_preservation(a, b, f, profile).decomposition()[0]


def nabf(a: ArrayLike, b: ArrayLike, f: ArrayLike, profile: str = DEFAULT_PROFILE) -> float:
    """Nabf, fusion artefacts, in Kumar's (2013) modified form of Petrovic & Xydeas (2005).

    Nabf = sum(AM ((1 - Q^AF) gA + (1 - Q^BF) gB)) / sum(gA + gB), AM = 1 where
    gF > gA and gF > gB. Petrovic's original weighted the loss differently, so that
    Q + L + N did not add up to 1; Kumar's form restores Qabf + Labf + Nabf = 1.
    Lower is better. NaN when A and B are both flat.
    """
    return edge_preservation(a, b, f, profile).decomposition()[2]
