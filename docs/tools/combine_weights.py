"""An affine combination of medfuse weights files: a weight average or a step along a fine-tune.

    python docs/tools/combine_weights.py OUT.pt WEIGHTS.pt=COEF [WEIGHTS.pt=COEF ...] [--force]

Every floating-point tensor of OUT is sum(COEF_i x tensor_i); integer tensors (the batch-norm
step counter) are taken from the first file. The coefficients must sum to 1, so a constant
the files share (a bias all of them agree on) is kept as it is:

* ``a.pt=0.5 b.pt=0.5``: the average of two runs from the same start (a "weight soup");
* ``v2.pt=-0.5 v21.pt=1.5``: half a step further along the fine-tune that led from v2 to
  v21 (a task-vector extrapolation), which moves every output the way the fine-tune moved
  it, by more.

This only makes sense for files that share a training start (fine-tunes of one set of
weights); the tool cannot check that. Every input must fit the network, and the authors'
checkpoint (matched by its sha256) is refused: medfuse weights are never built from it.
OUT must not exist (unless ``--force``), is never one of the inputs, and appears complete or
not at all.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

#: sha256 of the authors' released checkpoint (../shared/reference/reference-checkpoint.pth).
AUTHORS_CHECKPOINT_SHA256 = "3ecbeb6321d190a088a96adac244fcb384506cbfaf31880f08462d2aba518909"


def parse_term(text: str) -> tuple[Path, float]:
    """``PATH=COEF`` -> (path, coefficient); the last ``=`` splits, so paths may hold one."""
    path, sep, coef = text.rpartition("=")
    if not sep or not path:
        raise ValueError(f"{text!r}: expected WEIGHTS.pt=COEFFICIENT")
    try:
        value = float(coef)
    except ValueError:
        raise ValueError(f"{text!r}: {coef!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r}: the coefficient must be finite")
    return Path(path), value


def combine(terms: list[tuple[Path, float]]) -> dict:
    """The combined state dict (tensors by name) of ``terms``; every file read without
    running code and checked against the network (so all of them, and the result, hold
    the same names and shapes)."""
    import torch

    from medfuse.engine import read_state_dict
    from medfuse.engine.weights import check_keys, sha256_of
    from medfuse.model import GeSeNet

    total = sum(c for _, c in terms)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"the coefficients sum to {total:g}; they must sum to 1")
    network = GeSeNet()
    states = []
    for path, coef in terms:
        if sha256_of(path) == AUTHORS_CHECKPOINT_SHA256:
            raise ValueError(f"{path} is the authors' checkpoint; medfuse weights are never built from it")
        state = read_state_dict(path)
        check_keys(network, state, path)
        states.append((coef, state))
    first = states[0][1]
    out = {}
    for name, tensor in first.items():
        if tensor.dtype.is_floating_point:
            out[name] = sum(coef * state[name].to(torch.float64) for coef, state in states).to(tensor.dtype)
        else:
            out[name] = tensor.clone()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("terms", nargs="+", metavar="WEIGHTS=COEF")
    ap.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = ap.parse_args(argv)
    import torch

    from medfuse.errors import MedfuseError
    from medfuse.io.outputs import atomic_output

    try:
        terms = [parse_term(t) for t in args.terms]
        for path, _ in terms:
            if not path.is_file():
                raise ValueError(f"{path}: no such weights file")
        state = combine(terms)
        with atomic_output(args.out, args.force, [p for p, _ in terms]) as tmp:
            torch.save(state, tmp)
    except (ValueError, MedfuseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: " + " + ".join(f"{c:g} x {p.name}" for p, c in terms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
