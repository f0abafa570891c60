#!/usr/bin/env bash
# Set up, then run the main job: a small version of the Fashion-MNIST LSTM study (batch
# 128 -> 8192, 2 epochs of the base recipe; about 10 minutes on 2 CPU cores): LEGW and linear
# scaling at equal epochs beside the rules that hold the base at 8192 -- the adaptive rule and
# the batch ramps (noise, Seesaw) -- and the report with plots, after printing the talk's
# Table 6 recipe. Outputs under runs/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
LEGW="${LEGW_VENV:-.venv}/bin/legw"
OUT=runs/quickstart
mkdir -p "$OUT"
"$LEGW" schedule --base-batch-size 1024 --base-lr 5.656854 --base-warmup-epochs 0.3125 \
    --epochs 90 --decay poly --power 2 --dataset-size 1281167 \
    --batch-sizes 1024 2048 4096 8192 16384 32768 --plot "$OUT/table6_lr.png"
# Resumable: run it again to continue where it stopped.
"$LEGW" sweep fashion-mnist-lstm --out "$OUT/sweep" --batch-sizes 128 1024 8192 \
    --methods legw linear adaptive --epochs 2 --base-warmup-epochs 0.01 --eval-every 0.25 \
    --micro-batch-size 512 \
    --jobs 2 --threads 1
# the batch ramps grow from the base batch 128 in micro-batches of 64, up to 8192
"$LEGW" sweep fashion-mnist-lstm --out "$OUT/ramps" --batch-sizes 8192 \
    --methods ramp seesaw --epochs 2 --base-warmup-epochs 0.01 --eval-every 0.25 \
    --micro-batch-size 64 \
    --jobs 2 --threads 1
"$LEGW" report "$OUT" --out "$OUT/report"
echo "report: $OUT/report/report.md (what it shows: README.md, 'What the main job shows')"
