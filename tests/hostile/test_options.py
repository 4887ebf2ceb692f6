"""Family 11: every option with bad values, on every command: a bad value is a usage error
(exit 2) in one ``error:`` line that names the option, found before anything is written.

Cases that show a bug are marked ``xfail(strict=True)`` with the bug as the reason (they
turn into failures the day the bug is fixed, so the marker gets removed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import hostile_files as hf
from helpers.hostile_cli import Box, invoke


class _Inputs(dict):  # type: ignore[type-arg]
    """Valid inputs for every command, each made when first asked for; the bad value is the
    only thing wrong."""

    def __init__(self, box: Box) -> None:
        super().__init__()
        self.box = box

    def __missing__(self, key: str) -> Path:
        b = self.box
        if key == "mri":
            p = b.png("mri.png", size=32)
        elif key == "pet":
            p = b.png("pet.png", colour=True, size=32)
        elif key == "vol":
            p = b.put("vol.nii.gz", hf.nifti_bytes(gz=True))
        elif key == "vol4d":
            p = b.put("vol4d.nii.gz", hf.nifti_bytes(hf.nifti_volume((16, 16, 4, 2)), gz=True))
        elif key == "series":
            p = hf.dicom_series(b.inp / "series", 3)
        else:
            b.png("task/MRI/a.png", size=32)
            b.png("task/PET/a.png", colour=True, size=32)
            p = b.inp / "task"
        self[key] = p
        return p


@pytest.fixture
def files(box: Box) -> dict[str, Path]:
    return _Inputs(box)


def _args(box: Box, f: dict[str, Path], ctx: str, extra: list[str]) -> list[Any]:
    out = box.out
    table: dict[str, Any] = {
        "img": lambda: ["fuse", f["mri"], f["pet"], "-o", out / "f.png"],
        "vol": lambda: ["fuse", f["vol"], f["vol"], "-o", out / "f.png", "--modality", "ct"],
        "vol4d": lambda: ["fuse", f["vol4d"], f["vol4d"], "-o", out / "f.nii.gz",
                          "--modality", "ct"],
        "series": lambda: ["fuse", f["series"], f["series"], "-o", out / "f.nii.gz",
                           "--modality", "ct"],
        "batch": lambda: ["batch", f["task"], out],
        "masks": lambda: ["masks", f["mri"], f["pet"], "-o", out / "masks"],
        "eval": lambda: ["eval", f["task"], "--method", "average"],
        "evalbare": lambda: ["eval", f["task"]],
        "train": lambda: ["train", "--data", box.inp / "nodata", "--out", out / "run",
                          "--device", "cpu"],
        "semantic": lambda: ["train-semantic", "--data", box.inp / "nodata", "--out",
                             out / "sem", "--device", "cpu"],
        "demo": lambda: ["demo", "-o", out / "demo"],
        "info": lambda: ["info"],
        "none": lambda: [],
    }
    args = table[ctx]() + extra
    box.snap()
    return args


# (id, context, extra args, match in the error line, xfail reason)
CASES: list[tuple[str, str, list[str], str | None, str | None]] = [
    # fuse, ordinary images
    ("slice-abc", "img", ["--slice", "abc"], "--slice", None),
    ("slice-negative", "img", ["--slice", "-1"], "--slice", None),
    ("slice-of-2d", "img", ["--slice", "1"], "--slice", None),
    ("slice-float", "img", ["--slice", "1.5"], "--slice", None),
    ("slice-huge-int", "img", ["--slice", "99999999999999999999999"], "--slice", None),
    ("volume-negative", "img", ["--volume", "-1"], "--volume", None),
    ("volume-abc", "img", ["--volume", "abc"], "--volume", None),
    ("unknown-option", "img", ["--bogus"], "--bogus", None),
    ("unknown-short-option", "img", ["-z"], "-z", None),
    ("extra-argument", "img", ["extra"], "extra", None),
    ("window-word", "img", ["--window", "nonsense"], "--window", None),
    ("window-one-number", "img", ["--window", "40"], "--window", None),
    ("window-three-numbers", "img", ["--window", "1,2,3"], "--window", None),
    ("window-negative-width", "img", ["--window", "40,-5"], "--window", None),
    ("window-zero-width", "img", ["--window", "40,0"], "--window", None),
    ("window-nan", "img", ["--window", "nan,80"], "--window", None),
    ("window-inf", "img", ["--window", "40,inf"], "--window", None),
    ("mri-window-word", "img", ["--mri-window", "x"], "--mri-window", None),
    ("colormap-unknown-colour-pet", "img", ["--colormap", "nope"], "--colormap", None),
    ("colormap-unknown", "vol", ["--colormap", "nope"], "--colormap", None),
    ("gamut-map-unknown", "img", ["--gamut-map", "nope"], "--gamut-map", None),
    ("gamut-map-unknown-vol", "vol", ["--gamut-map", "fitted"], "--gamut-map", None),
    ("gamut-map-unknown-ct", "img", ["--gamut-map", "nope", "--modality", "ct"], "--gamut-map",
     None),
    ("modality-unknown", "img", ["--modality", "xyz"], "--modality", None),
    ("modality-mri", "img", ["--modality", "mri"], "--modality", None),
    ("bit-depth-12", "img", ["--bit-depth", "12"], "--bit-depth", None),
    ("bit-depth-0", "img", ["--bit-depth", "0"], "--bit-depth", None),
    ("bit-depth-abc", "img", ["--bit-depth", "abc"], "--bit-depth", None),
    ("axis-diagonal-2d", "img", ["--axis", "diagonal"], "--axis", None),
    ("colormap-unknown-ct", "img", ["--colormap", "nope", "--modality", "ct"], "--colormap",
     None),
    ("format-unknown", "img", ["--format", "xyz"], "--format", None),
    ("format-nifti-for-png", "img", ["--format", "nifti"], "--format", None),
    ("anonymize-png", "img", ["--anonymize"], "--anonymize", None),
    ("preview-not-an-image", "img", ["--preview", "p.txt"], "--preview", None),
    ("flag-with-value", "img", ["--resize=abc"], "--resize", None),
    ("device-unknown", "img", ["--device", "quantum"], "--device", None),
    ("device-cuda-index", "img", ["--device", "cuda:abc"], "--device", None),
    # fuse, volumes
    ("slice-out-of-range", "vol", ["--slice", "999"], "--slice", None),
    ("slices-reversed", "vol", ["--slices", "3:1"], "--slices", None),
    ("slices-word", "vol", ["--slices", "abc"], "--slices", None),
    ("slices-empty-range", "vol", ["--slices", "0:0"], "--slices", None),
    ("slices-zero-step", "vol", ["--slices", "1:2:0"], "--slices", None),
    ("slices-out-of-range", "vol", ["--slices", "999"], "--slices", None),
    ("slices-negative", "vol", ["--slices", "-1"], "--slices", None),
    ("slice-and-slices", "vol", ["--slice", "1", "--slices", "2"], "--slices", None),
    ("axis-diagonal", "vol", ["--axis", "diagonal"], "diagonal", None),
    ("window-overflows-float32", "vol", ["--window", "1e300,1e300"], "--window", None),
    ("window-width-underflows", "vol", ["--window", "0,1e-300"], "--window", None),
    ("mri-window-overflows-float32", "vol", ["--mri-window", "0,1e39"], "--mri-window", None),
    ("slices-with-nifti-output", "vol4d", ["--volume", "0", "--slices", "1"], "--slices", None),
    ("volume-missing-for-4d", "vol4d", [], "--volume", None),
    ("volume-out-of-range", "vol4d", ["--volume", "9"], "--volume", None),
    ("series-unknown", "series", ["--series", "1.2.3.4"], "--series", None),
    # missing pieces
    ("missing-output", "none", ["fuse", "a.png", "b.png"], "--output", None),
    ("missing-argument", "none", ["fuse", "a.png"], "other", None),
    ("output-without-value", "none", ["fuse", "a.png", "b.png", "-o"], "-o", None),
    ("unknown-command", "none", ["nosuchcommand"], "nosuchcommand", None),
    ("unknown-global-option", "none", ["--bogus"], "--bogus", None),
    # batch
    ("batch-size-zero", "batch", ["--batch-size", "0"], "--batch-size", None),
    ("batch-size-negative", "batch", ["--batch-size", "-1"], "--batch-size", None),
    ("batch-size-abc", "batch", ["--batch-size", "abc"], "--batch-size", None),
    ("batch-format-unknown", "batch", ["--format", "xyz"], "--format", None),
    ("batch-pairs-missing", "batch", ["--pairs", "nope.csv"], "nope.csv", None),
    ("batch-volume-negative", "batch", ["--volume", "-1"], "--volume", None),
    ("batch-window-word", "batch", ["--window", "nonsense"], "--window", None),
    ("batch-mri-window-word", "batch", ["--mri-window", "bad"], "--mri-window", None),
    ("batch-bit-depth-12", "batch", ["--bit-depth", "12"], "--bit-depth", None),
    ("batch-modality-unknown", "batch", ["--modality", "xyz"], "--modality", None),
    ("batch-colormap-unknown", "batch", ["--colormap", "nope"], "--colormap", None),
    ("batch-gamut-map-unknown", "batch", ["--gamut-map", "nope"], "--gamut-map", None),
    ("batch-axis-diagonal", "batch", ["--axis", "diagonal"], "--axis", None),
    # masks
    ("masks-slice-abc", "masks", ["--slice", "abc"], "--slice", None),
    ("masks-slice-of-2d", "masks", ["--slice", "3"], "--slice", None),
    ("masks-modality-unknown", "masks", ["--modality", "xyz"], "--modality", None),
    ("masks-window-word", "masks", ["--window", "bad"], "--window", None),
    ("masks-axis-2d", "masks", ["--axis", "x"], "--axis", None),
    ("masks-colormap-unknown", "masks", ["--colormap", "nope"], "--colormap", None),
    ("masks-missing-output", "none", ["masks", "a.png", "b.png"], "--output", None),
    # eval
    ("eval-method-unknown", "eval", ["--method", "bogus"], "--method", None),
    ("eval-method-empty-path", "eval", ["--method", "gesenet:"], "--method", None),
    ("eval-method-missing-weights", "eval", ["--method", "gesenet:nope.pt"], "nope.pt", None),
    ("eval-profile-unknown", "eval", ["--profile", "bogus"], "--profile", None),
    ("eval-gamut-map-unknown", "eval", ["--gamut-map", "bogus"], "--gamut-map", None),
    ("eval-metric-unknown", "eval", ["--metric", "bogus"], "--metric", None),
    ("eval-batch-size-zero", "eval", ["--batch-size", "0"], "--batch-size", None),
    ("eval-examples-negative", "eval", ["--examples", "-1"], "--examples", None),
    ("eval-split-on-a-task", "eval", ["--split", "nosplit"], "--split", None),
    ("eval-fused-missing", "eval", ["--fused", "nodir"], "--fused", None),
    ("eval-slice-negative", "eval", ["--slice", "-1"], "--slice", None),
    ("eval-axis-unknown", "eval", ["--axis", "x"], "--axis", None),
    ("eval-no-method", "evalbare", [], "--method", None),
    # train (a missing --data: a bad option must be named before the data is looked at)
    ("train-steps-zero", "train", ["--steps", "0"], "--steps", None),
    ("train-patch-4", "train", ["--patch", "4"], "--patch", None),
    ("train-batch-zero", "train", ["--batch", "0"], "--batch", None),
    ("train-stride-zero", "train", ["--stride", "0"], "--stride", None),
    ("train-mask-target-2", "train", ["--mask-target", "2"], "--mask-target", None),
    ("train-checkpoint-every-0", "train", ["--checkpoint-every", "0"], "--checkpoint-every", None),
    ("train-criterion-unknown", "train", ["--criterion", "bogus"], "criterion", None),
    ("train-lr-nan", "train", ["--lr", "nan"], "--lr", None),
    ("train-lr-negative", "train", ["--lr", "-1"], "--lr", None),
    ("train-lr-inf", "train", ["--lr", "inf"], "--lr", None),
    ("train-tau-zero", "train", ["--tau", "0"], "--tau", None),
    ("train-gamma-nan", "train", ["--gamma", "nan"], "--gamma", None),
    ("train-support-band-reversed", "train", ["--support-band", "0.9", "0.3"], "--support-band", None),
    ("train-threads-negative", "train", ["--threads", "-1"], "--threads", None),
    ("train-stop-after-negative", "train", ["--stop-after", "-1"], "--stop-after", None),
    ("train-max-minutes-negative", "train", ["--max-minutes", "-1"], "--max-minutes", None),
    ("train-studies-negative", "train", ["--studies", "-1"], "--studies", None),
    ("train-studies-huge", "train", ["--studies", "1000000000"], "--studies", None),
    ("train-scd-nan", "train", ["--scd", "nan"], "--scd", None),
    ("train-lattice-inf", "train", ["--lattice", "inf"], "--lattice", None),
    ("train-peaks-nan", "train", ["--peaks", "nan"], "--peaks", None),
    ("train-peaks-negative", "train", ["--peaks", "-1"], "--peaks", None),
    ("train-peaks-coloured-without-display-luma", "train", ["--peaks-coloured-only"], "--display-luma", None),
    ("train-gamut-nan", "train", ["--gamut", "nan"], "--gamut", None),
    ("train-gamut-without-display-luma", "train", ["--gamut", "1"], "--display-luma", None),
    ("train-gamut-studies-without-studies", "train", ["--gamut-studies-only"], "--studies", None),
    ("train-anatomy-inf", "train", ["--anatomy", "inf"], "--anatomy", None),
    ("train-anatomy-without-studies", "train", ["--anatomy", "1"], "--studies", None),
    ("train-anchor-nan", "train", ["--anchor", "nan"], "--anchor", None),
    ("train-anchor-without-weights", "train", ["--anchor", "1"], "--anchor-weights", None),
    ("train-anchor-weights-missing", "train", ["--anchor", "1", "--anchor-weights", "nope.pt"], "nope.pt", None),
    ("train-peaks-studies-without-studies", "train", ["--peaks-studies-only"], "--studies", None),
    ("train-recipe-unknown", "train", ["--recipe", "bogus"], "recipe", None),
    ("train-recipe-v2-without-init", "train", ["--recipe", "v2"], "--init", None),
    ("train-resume-and-force-without-run", "train", ["--resume"], None, None),
    ("semantic-steps-zero", "semantic", ["--steps", "0"], "--steps", None),
    ("semantic-patch-4", "semantic", ["--patch", "4"], "--patch", None),
    ("semantic-lr-nan", "semantic", ["--lr", "nan"], "--lr", None),
    # demo, info
    ("demo-device-unknown", "demo", ["--device", "quantum"], "--device", None),
    ("demo-unknown-option", "demo", ["--bogus"], "--bogus", None),
    ("info-device-unknown", "info", ["--device", "quantum"], "--device", None),
    ("info-weights-missing", "info", ["--weights", "nope.pt", "--bogus"], "--bogus", None),
]


def _params() -> list[Any]:
    out = []
    for ident, ctx, extra, match, bug in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        out.append(pytest.param(ctx, extra, match, id=ident, marks=marks))
    return out


@pytest.mark.parametrize(("ctx", "extra", "match"), _params())
def test_bad_option_value_is_a_usage_error(box: Box, files: dict[str, Path], ctx: str,
                                           extra: list[str], match: str | None) -> None:
    real = ctx in ("train", "semantic", "demo", "info") or "--device" in extra
    kwargs: dict[str, Any] = {"engine": None} if real else {}
    res = invoke(*_args(box, files, ctx, extra), **kwargs)
    box.refused(res, 2, match, absent=(box.out,))
