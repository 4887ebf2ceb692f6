#!/usr/bin/env bash
# The v2 recipe on one GPU in a fixed training budget, then scored: a fine-tune of $INIT
# (default: the bundled weights) at batch 32 (docs/training.md, "weights v2").
#
#   OUT=/path/to/out PYTHONPATH=src:<wheels> bash benchmarks/train_gpu.sh
#
# Installs nothing: needs torch, numpy, scipy, opencv, pillow, rich, typer (and nibabel,
# pydicom, platformdirs on PYTHONPATH, which medfuse imports). Reads the Harvard pairs from
# $DATA (default .data/harvard: <TASK>/{train,val}/...) and the bundled semantic module
# from weights/. Never reads the authors' checkpoint: compare with it afterwards (the
# command is printed at the end).
#
# Writes to $OUT (9 files, about 5 MB): gesenet-v2.pt (best weights, recipe in metadata),
# recipe.toml (the recipe used),
# last.pt (resumable run state), log.csv, val.csv, run.json (config and summary),
# eval.json (medfuse eval of the new and the bundled weights and the classical baselines
# on val, both profiles), masks.json (benchmarks/mask_report.py: sparse channels,
# principal fractions, lattice index, all-principal ablation, ms per pair), train.log.
#
# Knobs (environment): INIT (weights to fine-tune, default weights/gesenet-medfuse.pt;
# never the authors' checkpoint), MINUTES (training budget incl. validations, default 4), SEED (0),
# BATCH (32), DEVICE (auto), EVAL (1: run eval and the mask report; 0: skip them),
# EXTRA (more `medfuse train` options, e.g. a CPU dry run's "--threads 2" or
# "--set validation.before_after=false").
set -euo pipefail
OUT=${OUT:?set OUT to the output folder}
DATA=${DATA:-.data/harvard}
INIT=${INIT:-weights/gesenet-medfuse.pt}
MINUTES=${MINUTES:-4}
SEED=${SEED:-0}
BATCH=${BATCH:-32}
DEVICE=${DEVICE:-auto}
EVAL=${EVAL:-1}
EXTRA=${EXTRA:-}
PY=${PYTHON:-python}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
medfuse() { "$PY" -c 'import sys; from medfuse.cli import main; sys.argv[0] = "medfuse"; main()' "$@"; }

mkdir -p "$OUT"
RUN=$(mktemp -d)/run
T0=$(date +%s)
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
du -sh "$DATA"

# v2 recipe from $INIT; the schedule is fitted to the budget after a 40-step warm-up.
# --steps only bounds the run; --fit-steps sets the real count.
medfuse train --recipe v2 --init "$INIT" --data "$DATA" --out "$RUN" --device "$DEVICE" --seed "$SEED" \
    --set train.batch="$BATCH" --max-minutes "$MINUTES" --set train.fit_steps=true --steps 200000 \
    --export "$OUT/gesenet-v2.pt" $EXTRA > "$RUN.log" 2>&1 || { tail -n 40 "$RUN.log"; exit 1; }
tail -n 3 "$RUN.log"
STAGE="$RUN/stages/01-train"
cp "$STAGE/last.pt" "$STAGE/log.csv" "$STAGE/val.csv" "$RUN/recipe.toml" "$OUT/"
"$PY" - "$STAGE" "$OUT/run.json" <<'PYEOF'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
doc = {"config": json.loads((run / "config.json").read_text()),
       "summary": json.loads((run / "summary.json").read_text())}
Path(sys.argv[2]).write_text(json.dumps(doc, indent=1))
print("summary", json.dumps(doc["summary"]))
PYEOF
echo "training done in $(( $(date +%s) - T0 )) s"

if [ "$EVAL" = 1 ]; then
    medfuse eval "$DATA" --split val --method v2=gesenet:"$OUT/gesenet-v2.pt" \
        --method bundled=gesenet:weights/gesenet-medfuse.pt --method average --method max \
        --method laplacian --method gff --profile standard --profile toolbox2022 \
        --json "$OUT/eval.json" --device "$DEVICE" > "$RUN.eval.log" 2>&1 \
        || { tail -n 20 "$RUN.eval.log"; exit 1; }
    # v2 against the first bundled weights here (the authors' checkpoint is not on this machine)
    "$PY" benchmarks/v2_goals.py "$OUT/eval.json" --ours v2 --ref bundled || true
    MASK_DEVICE=$DEVICE; [ "$MASK_DEVICE" = auto ] && MASK_DEVICE=$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
    "$PY" benchmarks/mask_report.py "$OUT/gesenet-v2.pt" --data "$DATA" --device "$MASK_DEVICE" \
        --repeats 2 --json "$OUT/masks.json" > /dev/null
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print({k: d[k] for k in ("sparse_channels", "lattice_index", "ms_per_pair")})' "$OUT/masks.json"
fi
cp "$RUN.log" "$OUT/train.log"
echo "all done in $(( $(date +%s) - T0 )) s; outputs:"; ls -la "$OUT"
echo "compare with the authors' checkpoint on a machine that has it:"
echo "  medfuse eval ../shared/data/harvard --split val --method ref=gesenet:../shared/reference/reference-checkpoint.pth --method v2=gesenet:$OUT/gesenet-v2.pt --method medfuse=gesenet:weights/gesenet-medfuse.pt --method average --method max --method laplacian --method gff --profile standard --profile toolbox2022 --json eval.json"
