#!/usr/bin/env bash
# Batch ramps on the Fashion-MNIST LSTM (docs/results.md, study 12): the base recipe tuned at
# 128 (study 1), the batch grown to at most 8192 during its 10 epochs by the measured noise
# (`ramp`), by Seesaw (`seesaw`) and by a fixed doubling ramp, one epoch per doubling. One thread
# per run, one run at a time; resumable: rerun to continue.
# Usage: bash scripts/reproduce_ramp.sh [OUT_DIR]   (default runs/reproduce/ramp)
set -euo pipefail
cd "$(dirname "$0")/.."
LEGW="${LEGW_VENV:-.venv}/bin/legw"
R=${1:-runs/reproduce/ramp}
SEEDS=${SEEDS:-0}
"$LEGW" sweep fashion-mnist-lstm --out "$R/lstm" --methods ramp seesaw --batch-sizes 8192 \
    --seeds $SEEDS --micro-batch-size 64 --checkpoint-every 200 --jobs 1 --threads 1
for s in $SEEDS; do
    run="$R/lstm-fixed/runs/fixed-b8192-s$s"
    resume=(); [[ -d "$run/checkpoints" && ! -f "$run/summary.json" ]] && resume=(--resume)
    [[ -f "$run/summary.json" ]] || "$LEGW" train fashion-mnist-lstm --batch-size 8192 \
        --batch-ramp 128@0,256@1,512@2,1024@3,2048@4,4096@5,8192@6 --micro-batch-size 64 \
        --seed "$s" --threads 1 --checkpoint-every 200 --quiet --out "$run" "${resume[@]}"
done
# the noise ramp with the linear LR rule, and with the tau budget (study 12's other rows)
for variant in "linear:--scaling linear" "tau:--ramp-budget tau"; do
    name=${variant%%:*}; flags=${variant#*:}
    for s in $SEEDS; do
        run="$R/lstm-$name/runs/ramp-$name-b8192-s$s"
        resume=(); [[ -d "$run/checkpoints" && ! -f "$run/summary.json" ]] && resume=(--resume)
        # shellcheck disable=SC2086
        [[ -f "$run/summary.json" ]] || "$LEGW" train fashion-mnist-lstm --batch-size 8192 \
            --batch-ramp noise $flags --micro-batch-size 64 --seed "$s" --threads 1 \
            --checkpoint-every 200 --quiet --out "$run" "${resume[@]}"
    done
done
"$LEGW" report "$R" --out "$R/report"
