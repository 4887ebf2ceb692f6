"""The one registry of GeSeNet's loss terms: each term is declared here once.

A term has a name (also its weight's name in :class:`LossWeights` and in a recipe's
``[losses]`` table), the function that computes it for a batch, its default weight, the
parameters it reads, the columns it writes to ``log.csv`` and what it needs from the run
(display luminance, generated-study pairs, an anchor model). Everything that lists loss
terms reads this table: :class:`LossWeights`, :func:`medfuse.training.trainer.loss_terms`,
``log.csv``'s header, the progress bar, the run summary and recipe validation, so a new
term is one entry here and cannot be missed by one of them.

The order of :data:`TERMS` is the order the weighted total is summed in; it is kept as
the training loop has always summed, so the same settings give the same bits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, make_dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from medfuse.model import GeSeNet
    from medfuse.model.semantic import SemanticNet


@dataclass
class Batch:
    """What a term may read for one batch: the model and its output, the fused luminance
    the losses score (``f``), the sources, and the optional inputs of some terms."""

    model: GeSeNet
    out: Any  # the model's FusionOutput
    f: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    w: Any  # LossWeights
    labels: torch.Tensor | None = None
    seg: SemanticNet | None = None
    chroma: torch.Tensor | None = None
    studies: torch.Tensor | None = None
    anchor: torch.Tensor | None = None
    margins: list[Any] = field(default_factory=list)
    tissue: torch.Tensor | None = None  # (B, 1, H, W) study label codes, 0 on atlas pairs

    @property
    def masks_ok(self) -> bool:
        """Both branches have a spatial margin (the region-mask terms need them)."""
        return bool(self.margins) and all(m is not None for m in self.margins)


@dataclass(frozen=True)
class Param:
    """A setting a term reads besides its weight (a target, a band, a switch)."""

    name: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Term:
    """One loss term. ``compute`` returns the values to log (the first is the term that is
    weighted into the total) or None where the term does not apply to this batch."""

    name: str
    compute: Callable[[Batch], dict[str, Any] | None]
    default: float
    help: str
    #: Columns it writes (the first is the term itself; others are logged, not optimised).
    logs: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    #: What the run must provide: "display_luma", "studies" or "anchor_weights".
    needs: tuple[str, ...] = ()
    #: A term from an experiment that did not pay; kept as a recipe key, off by default.
    experimental: bool = False
    #: Computed even at weight 0 (the paper's three terms are always logged).
    always: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return self.logs or (self.name,)


def _fusion(fn_name: str) -> Callable[[Batch], dict[str, Any]]:
    def compute(x: Batch) -> dict[str, Any]:
        from medfuse.training import losses

        name = fn_name.removesuffix("_loss")
        return {name: getattr(losses, fn_name)(x.f, x.a, x.b)}

    return compute


def _semantic(x: Batch) -> dict[str, Any] | None:
    from medfuse.training.losses import semantic_loss

    if x.seg is None or x.labels is None:
        return None
    return {"semantic": semantic_loss(x.seg, x.f, x.labels, x.w.semantic_aux)}


def _mask(x: Batch) -> dict[str, Any]:
    """The region-mask budget: the plain budget (without the support prior) plus the
    compute budget when ``compute_target`` is set. Computed at every weight (logged)."""
    import torch

    from medfuse.training.losses import mask_budget, mask_cost

    w, out = x.w, x.out
    budget = torch.zeros((), device=x.f.device)
    if w.mask_support == 0:  # the support prior replaces the plain budget
        budget = mask_budget(out.mask_mri, w.mask_target) + mask_budget(out.mask_functional, w.mask_target)
    if w.compute_target is not None:
        # Without it the channel masks can go all-dense, the spatial mask then changes
        # nothing, and its logits drift to an arbitrary pattern (seen in the first run).
        masks = dict(zip(x.model.BRANCHES, (out.mask_mri, out.mask_functional)))
        for branch, spa in masks.items():
            cost = mask_cost(spa, x.model.channel_mask_logits(branch), x.model.tau,
                             hard=not x.model.training)
            budget = budget + (cost - w.compute_target).abs()
    return {"mask": budget / 2}


def _mask_support(x: Batch) -> dict[str, Any] | None:
    from medfuse.training.losses import background_mask_penalty, signal_support, support_mask_prior

    if not x.masks_ok:
        return None
    sup = signal_support(x.a, x.b)
    prior = sum(support_mask_prior(m, sup, x.w.support_band) for m in x.margins) / 2
    bg = (background_mask_penalty(x.out.mask_mri, sup)
          + background_mask_penalty(x.out.mask_functional, sup)).detach() / 2
    return {"mask_support": prior, "mask_bg": bg}


def _peaks(x: Batch) -> dict[str, Any]:
    from medfuse.training.losses import coloured, peak_loss

    where = coloured(x.chroma) if x.w.peaks_coloured_only and x.chroma is not None else None
    if x.w.peaks_studies_only and x.studies is not None:
        on = x.studies.to(x.b.dtype).view(-1, 1, 1, 1)
        where = on.expand_as(x.b) if where is None else where * on
    return {"peaks": peak_loss(x.f, x.a, x.b, where=where)}


def _gamut(x: Batch) -> dict[str, Any] | None:
    from medfuse.training.losses import gamut_loss

    if x.chroma is None:
        return None
    return {"gamut": gamut_loss(x.out.fused, x.chroma,
                                x.studies if x.w.gamut_studies_only else None)}


def _anatomy(x: Batch) -> dict[str, Any] | None:
    from medfuse.training.losses import anatomy_loss

    return None if x.studies is None else {"anatomy": anatomy_loss(x.f, x.a, x.studies)}


def _tissue_step(x: Batch) -> dict[str, Any] | None:
    from medfuse.training.losses import tissue_step_loss

    got = None if x.tissue is None else tissue_step_loss(x.f, x.a, x.tissue)
    return None if got is None else {"tissue_step": got[0], "step_kept": got[1]}


def _lesion(x: Batch) -> dict[str, Any] | None:
    from medfuse.training.losses import lesion_loss

    got = None if x.tissue is None else lesion_loss(x.f, x.b, x.tissue)
    return None if got is None else {"lesion": got[0], "lesion_kept": got[1]}


def _anchor(x: Batch) -> dict[str, Any] | None:
    from medfuse.training.losses import anchor_loss

    if x.anchor is None:
        return None
    return {"anchor": anchor_loss(x.f, x.anchor, None if x.studies is None else 1.0 - x.studies)}


def _lattice(x: Batch) -> dict[str, Any]:
    from medfuse.training.losses import upsampler_phase_loss
    from medfuse.training.trainer import mask_upsampler

    return {"lattice": sum(upsampler_phase_loss(mask_upsampler(x.model, br))
                           for br in x.model.BRANCHES) / 2}


def _lattice_logits(x: Batch) -> dict[str, Any] | None:
    from medfuse.training.losses import lattice_loss

    if not x.masks_ok:
        return None
    return {"lattice_logits": sum(lattice_loss(m) for m in x.margins) / 2}


def _channel_sparsity(x: Batch) -> dict[str, Any]:
    from medfuse.training.losses import channel_sparsity_loss

    return {"channel_sparsity": sum(
        channel_sparsity_loss(x.model.channel_mask_logits(br), x.w.sparse_target)
        for br in x.model.BRANCHES) / 2}


#: Every loss term, in the order the total sums them.
TERMS: tuple[Term, ...] = (
    Term("content", _fusion("content_loss"), 1.0, "mean |F - max(A, B)| (paper L_c)", always=True),
    Term("gradient", _fusion("gradient_loss"), 10.0,
         "Sobel magnitude of F against the stronger source's (paper L_g, gamma)", always=True),
    Term("ssim", _fusion("ssim_loss"), 0.5, "(1 - SSIM(F, A)) + (1 - SSIM(F, B)) (paper alpha)",
         always=True),
    Term("semantic", _semantic, 0.3,
         "cross-entropy of the frozen semantic net on F (paper L_S, beta; needs a semantic net)",
         params=(Param("semantic_aux", 0.5, "weight of the auxiliary head (paper delta)", low=0.0),)),
    Term("mask", _mask, 0.1, "region-mask budget: principal share held to mask_target, plus the "
         "compute budget when compute_target is set", always=True,
         params=(Param("mask_target", 0.5, "principal share the plain budget holds", 0.0, 1.0),
                 Param("compute_target", None, "share of the mask body's work kept (none: off)",
                       0.0, 1.0))),
    Term("mef_ssim", _fusion("mef_ssim_loss"), 0.0, "1 - MEF-SSIM of F against {A, B}"),
    Term("qabf", _fusion("qabf_loss"), 0.0, "1 - Qabf (edge strength and orientation kept)"),
    Term("mask_support", _mask_support, 0.0,
         "support-aware mask prior: background redundant, support_band of the anatomy principal",
         logs=("mask_support", "mask_bg"),
         params=(Param("support_band", (0.3, 0.9), "[low, high] principal share of the anatomy",
                       0.0, 1.0),)),
    Term("scd", _fusion("scd_loss"), 0.0, "2 - SCD (each source's contrast kept in F)"),
    Term("intensity", _fusion("intensity_loss"), 0.0,
         "one-sided, brightness-weighted shortfall of F below max(A, B)"),
    Term("contrast", _fusion("contrast_loss"), 0.0, "per-image SD of F below max(A, B)'s",
         experimental=True),
    Term("lattice", _lattice, 0.0, "phase imbalance of the spatial-mask upsampler (no 2-pixel "
         "lattice)"),
    Term("lattice_logits", _lattice_logits, 0.0,
         "2x2-block deviation of the spatial-mask logits (kills the mask generator)",
         experimental=True),
    Term("channel_sparsity", _channel_sparsity, 0.0,
         "hinge that keeps sparse_target of each masked layer's channels sparse",
         params=(Param("sparse_target", 0.25, "share of channels held sparse", 0.0, 1.0),)),
    Term("peaks", _peaks, 0.0, "local peaks of the functional image kept in F", experimental=True,
         params=(Param("peaks_coloured_only", False, "only where the other image is coloured"),
                 Param("peaks_studies_only", False, "only on generated-study pairs"))),
    Term("gamut", _gamut, 0.0, "colour the written RGB loses to the clip (needs display_luma)",
         needs=("display_luma",),
         params=(Param("gamut_studies_only", False, "only on generated-study pairs"),)),
    Term("anatomy", _anatomy, 0.0, "1 - correlation of F's and the MRI's edges, study pairs only",
         needs=("studies",)),
    Term("anchor", _anchor, 0.0, "mean |F - the anchor model's F| on the atlas pairs",
         needs=("anchor_weights",)),
    Term("tissue_step", _tissue_step, 0.0,
         "shortfall of F's grey/white luminance step below the MRI's, signed, study pairs only",
         logs=("tissue_step", "step_kept"), needs=("studies",)),
    Term("lesion", _lesion, 0.0,
         "shortfall of each lesion's step to its surround in F below the functional "
         "image's, signed, study pairs only", logs=("lesion", "lesion_kept"), needs=("studies",)),
)

BY_NAME: dict[str, Term] = {t.name: t for t in TERMS}
#: Every term parameter by name (each belongs to one term).
PARAMS: dict[str, tuple[Term, Param]] = {p.name: (t, p) for t in TERMS for p in t.params}


def log_columns() -> list[str]:
    """The loss columns of ``log.csv``, in registry order."""
    return ["total"] + [c for t in TERMS for c in t.columns] + ["principal_mri",
                                                                "principal_functional"]


def _to_dict(self: Any) -> dict[str, Any]:
    return asdict(self)


def _active(self: Any) -> list[str]:
    """Names of the terms that enter the total with a non-zero weight."""
    return [t.name for t in TERMS if getattr(self, t.name) != 0]


def _weights_class() -> type:
    fields: list[tuple[str, Any, Any]] = []
    for t in TERMS:
        fields.append((t.name, float, field(default=t.default)))
        for p in t.params:
            kind = type(p.default) if p.default is not None else float | None
            default = field(default=p.default)
            fields.append((p.name, kind, default))
    return make_dataclass(
        "LossWeights", fields,
        namespace={"to_dict": _to_dict, "active": _active,
                   "__doc__": "Weights of the loss terms (0 disables a term) and their "
                              "parameters, one field per entry of "
                              ":data:`medfuse.training.terms.TERMS`."},
    )


#: The loss weights of a run: made from :data:`TERMS`, so a term's weight cannot be
#: declared in one place and forgotten in another.
LossWeights = _weights_class()
LossWeights.__module__ = __name__


def compute_terms(x: Batch) -> dict[str, Any]:
    """Every applicable term for one batch and the weighted total (registry order)."""
    values: dict[str, Any] = {}
    total = None
    for t in TERMS:
        weight = getattr(x.w, t.name)
        if weight == 0 and not t.always:
            continue
        got = t.compute(x)
        if got is None:
            continue
        values.update(got)
        part = weight * got[t.name]
        total = part if total is None else total + part
    values["total"] = total
    return values


def progress_text(row: dict[str, float]) -> str:
    """The progress bar's description: the total and every logged term, registry order."""
    keys = ["total"] + [c for t in TERMS for c in t.columns]
    return " ".join(f"{k}={row[k]:.4f}" for k in keys
                    if k in row and isinstance(row[k], float) and row[k] == row[k])
