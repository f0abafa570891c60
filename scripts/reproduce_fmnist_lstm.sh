#!/usr/bin/env bash
# Study 1 of docs/results.md, reduced protocol: Fashion-MNIST LSTM-128 on this 2-core CPU.
# 1. tune the base recipe once, at batch 128 only; 2. scale 128 -> 8192 with sqrt + LEGW, no
# further tuning; 3. compare at 8192; 4. a second seed at 128 and 8192; 5. a tuned baseline at
# 8192; 6. batch 128 and 8192 at 25 epochs. Every step is resumable: rerun the script to
# continue where it stopped.
# Usage: bash scripts/reproduce_fmnist_lstm.sh [OUT_DIR]   (default runs/reproduce)
set -euo pipefail
cd "$(dirname "$0")/.."
LEGW="${LEGW_VENV:-.venv}/bin/legw"
R=${1:-runs/reproduce}
RUN="--micro-batch-size 512 --jobs 2 --threads 1"
"$LEGW" tune fashion-mnist-lstm --batch-size 128 --epochs 10 --lr-factors 0.5 1 2 4 \
    --warmup-epochs 0.02 0.1 --trials 8 --out "$R/base-tune-128" $RUN
# The tuned base recipe (peak LR 0.4, warmup 0.1 epochs, poly p=2, 10 epochs) is the preset's.
BASE="--epochs 10 --base-lr 0.4 --base-warmup-epochs 0.1"
"$LEGW" sweep fashion-mnist-lstm --out "$R/study1/legw" --methods legw \
    --batch-sizes 128 256 512 1024 2048 4096 8192 $BASE $RUN
"$LEGW" sweep fashion-mnist-lstm --out "$R/study1/compare-8192" --batch-sizes 8192 \
    --methods linear sqrt-nowarmup adam --adam-lr 0.001 $BASE $RUN
"$LEGW" sweep fashion-mnist-lstm --out "$R/study1/seed1" --batch-sizes 128 8192 --methods legw \
    --seeds 1 $BASE $RUN
"$LEGW" tune fashion-mnist-lstm --batch-size 8192 --trials 16 --out "$R/tune-8192" $BASE $RUN
"$LEGW" report "$R/study1" --tune "$R/tune-8192" --out "$R/report"
# The paper's 25-epoch budget, batch 128 and 8192 only (the same base recipe, not re-tuned).
"$LEGW" sweep fashion-mnist-lstm --out "$R/study1-25ep" --methods legw --batch-sizes 128 8192 \
    --epochs 25 --base-lr 0.4 --base-warmup-epochs 0.1 $RUN
"$LEGW" report "$R/study1-25ep" --out "$R/report-25ep"
