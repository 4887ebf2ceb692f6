"""The provenance record in words: what the QC page says about each decision.

The record (:mod:`medfuse.provenance`) is complete but written for programs; a person
checking a fusion wants sentences: which window and why, whether the PET is in SUV, how well
the pair fits, whether both inputs are one patient's. Everything here reads only the record,
so a page says exactly what the record beside the output says.
"""

from __future__ import annotations

from typing import Any


def _num(x: Any) -> str:
    return "?" if x is None else f"{float(x):.4g}"


def _window(w: dict[str, Any] | None, suv: bool) -> str:
    if not w:
        return "not recorded"
    if suv and w.get("suv"):
        text = f"SUV {_num(w['suv']['low'])} to {_num(w['suv']['high'])}"
    else:
        text = f"{_num(w.get('low'))} to {_num(w.get('high'))}"
    return f"{text} ({w.get('source') or 'source not recorded'})"


def _same(check: dict[str, Any] | None, what: str) -> str:
    if not check or check.get("same") is None:
        return f"not checked: the inputs do not both state a {what}"
    if check["same"]:
        return f"the same for both inputs ({check.get('mri')})"
    return f"DIFFERENT: MRI {check.get('mri')!r}, other {check.get('other')!r}"


def _score(record: dict[str, Any]) -> dict[str, Any]:
    from medfuse.registration import read_score

    return read_score(record.get("decisions") or {}) or {}


def score_of(record: dict[str, Any]) -> float | None:
    """The registration score the record states (None when there is none)."""
    score = _score(record).get("score")
    return None if score is None else float(score)


def score_threshold(record: dict[str, Any]) -> float | None:
    """The level below which the score warns."""
    level = _score(record).get("threshold")
    return None if level is None else float(level)


def decisions_in_words(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(topic, sentence) for every decision of the record, in the order a reader checks
    them: what was fused, windows, SUV, floor, colour, grid, registration, identity."""
    d = record.get("decisions") or {}
    suv = d.get("suv") or None
    in_suv = bool(suv and suv.get("available"))
    mod = (d.get("modality") or {})
    name = str(mod.get("value") or "other").upper()
    out: list[tuple[str, str]] = []
    what = ("one 2D pair" if d.get("two_d") else
            f"{d.get('slices_in_plan', '?')} {d.get('axis', '')} slices")
    out.append(("What", f"MRI fused with {name} ({mod.get('source') or 'source not recorded'}); "
                        f"{what}"))
    out.append(("MRI window", _window(d.get("mri_window"), False)))
    out.append((f"{name} window", _window(d.get("other_window"), in_suv)))
    if suv is not None:
        if in_suv:
            out.append(("SUV", f"shown in SUV (body weight), factor {_num(suv.get('factor'))} "
                               f"ml/Bq: {suv.get('reason', '')}"))
        else:
            out.append(("SUV", f"not in SUV: {suv.get('reason', 'no reason recorded')}"))
    floor = d.get("transparency_floor")
    out.append(("Transparency", "none: every voxel of the other image is coloured" if not floor
                else f"the MRI shows through at or below {floor.get('as_given')} "
                     f"({floor.get('source')})"))
    cmap = d.get("colormap") or {}
    gamut = d.get("gamut_map")
    out.append(("Colour map", f"{cmap.get('name') or 'none'} ({cmap.get('source') or '?'})"
                + (f"; out-of-gamut colours: {gamut}" if gamut else "")))
    grid = d.get("grid") or {}
    if grid.get("resampled"):
        out.append(("Grid", f"the {name} was resampled onto the MRI grid "
                            f"({grid.get('interpolation') or 'trilinear'})"))
    elif grid.get("resized_2d"):
        out.append(("Grid", f"the {name} plane was resized onto the MRI's"))
    else:
        out.append(("Grid", "both inputs share one grid"))
    reg = d.get("registration") or {}
    if reg.get("method", "none") == "none":
        out.append(("Registration", "not registered by medfuse: the inputs' own geometry "
                                    "places them"))
    else:
        before = reg.get("score_before")
        out.append(("Registration", f"{reg['method']} registration ({reg.get('metric', '')}, "
                                    f"{reg.get('iterations', '?')} iterations, "
                                    f"{_num(reg.get('seconds'))} s)"
                    + (f"; score before {_num(before)}" if before is not None else "")))
    mis = _score(record)
    if mis.get("score") is not None:
        verdict = "a warning was given" if mis.get("warned") else "fine"
        by = f"; registered by {mis['registered_by']}" if mis.get("registered_by") else ""
        out.append(("Registration score", f"{float(mis['score']):.2f} (higher is better; "
                                          f"{verdict}; warns below {_num(mis.get('threshold'))}"
                                          f"{by}): {mis.get('detail', '')}"))
    if mis.get("outline_distance") is not None:
        out.append(("Head outlines", f"{_num(mis['outline_distance'])} apart (warns above "
                                     f"{_num(mis.get('outline_warn'))})"))
    if mis.get("plane_distance_mm") is not None:
        out.append(("Slice distance", f"{_num(mis['plane_distance_mm'])} mm between the two "
                                      "slices' planes"))
    checks = d.get("checks") or {}
    out.append(("Patient ID", _same(checks.get("patient_id"), "Patient ID")))
    out.append(("Frame of Reference", _same(checks.get("frame_of_reference"),
                                            "Frame of Reference UID")))
    for line in [*(d.get("info") or []), *(d.get("notes") or [])]:
        out.append(("Note", str(line)))
    engine = record.get("engine") or {}
    if engine:
        out.append(("Weights", f"{engine.get('weights') or 'injected engine'} (sha256 "
                               f"{engine.get('weights_sha256') or 'not recorded'}) on "
                               f"{engine.get('device') or '?'}"))
    return out


def inputs_in_words(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, sentence) naming each input, its grid and its sha256."""
    out = []
    for role in ("mri", "other"):
        e = (record.get("inputs") or {}).get(role) or {}
        if not e:
            continue
        shape = "x".join(str(v) for v in e.get("shape") or [])
        vox = " x ".join(_num(v) for v in e.get("voxel_mm") or [])
        out.append((role.upper() if role == "mri" else str(e.get("modality", "other")).upper(),
                    f"{e.get('path')}: {e.get('format')} {shape} at {vox} mm; "
                    f"sha256 {e.get('sha256')}"))
    return out


__all__ = ["decisions_in_words", "inputs_in_words", "score_of", "score_threshold"]
