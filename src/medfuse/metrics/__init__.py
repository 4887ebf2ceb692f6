"""Objective fusion metrics (pure NumPy/SciPy): EN, SD, SF, AG, MI, SSIM, VIF, SCD, Qabf, Nabf.

Two profiles: ``standard`` (the published definitions, computed correctly, default) and
``toolbox2022`` (the convention of the 2022 MATLAB toolbox behind published fusion tables,
uint8 quirks included; it matches the reference values to 1e-6, Qabf to 6e-4). See
``docs/metrics.md`` for every formula.

>>> from medfuse.metrics import compute_metrics
>>> scores = compute_metrics(mri, ct, fused)                 # doctest: +SKIP
>>> paper = compute_metrics(mri, ct, fused, profile="toolbox2022")  # doctest: +SKIP
"""

from ._common import (
    PROFILES,
    MetricsInputError,
    Profile,
    matlab_uint8,
    round_half_away,
    to_grey,
)
from .api import HIGHER_IS_BETTER, METRIC_NAMES, compute_metrics, compute_metrics_colour
from .basic import ag, en, scd, sd, sf
from .gradient import EdgePreservation, edge_preservation, nabf, qabf
from .information import mi
from .structural import mef_ssim, ssim, ssim_wang
from .vif import vif, vifp_mscale

__all__ = [
    "HIGHER_IS_BETTER",
    "METRIC_NAMES",
    "PROFILES",
    "EdgePreservation",
    "MetricsInputError",
    "Profile",
    "ag",
    "compute_metrics",
    "compute_metrics_colour",
    "edge_preservation",
    "en",
    "matlab_uint8",
    "mef_ssim",
    "mi",
    "nabf",
    "qabf",
    "round_half_away",
    "scd",
    "sd",
    "sf",
    "ssim",
    "ssim_wang",
    "to_grey",
    "vif",
    "vifp_mscale",
]
