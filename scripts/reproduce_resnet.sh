#!/usr/bin/env bash
# Study 4 of docs/results.md: the small ResNet on Fashion-MNIST with LARS, 10 epochs, batch
# 128 -> 8192. The preset's recipe (Table 6's LARS recipe scaled to batch 128: peak LR 2.0,
# warmup 0.039 epochs, poly p=2, weight decay 5e-4, momentum 0.9) is used as is, not tuned.
# LEGW at 128, 512, 2048, 8192; linear scaling + constant-epoch warmup at 8192. Micro batch
# <= 1024 with gradient accumulation above it. Resumable: rerun the script to continue.
# Usage: bash scripts/reproduce_resnet.sh [OUT_DIR]   (default runs/reproduce/resnet)
set -euo pipefail
cd "$(dirname "$0")/.."
LEGW="${LEGW_VENV:-.venv}/bin/legw"
R=${1:-runs/reproduce/resnet}
RUN="--micro-batch-size 1024 --jobs 2 --threads 1"
"$LEGW" sweep fashion-mnist-resnet --out "$R/legw" --methods legw --batch-sizes 128 512 2048 8192 $RUN
"$LEGW" sweep fashion-mnist-resnet --out "$R/linear" --methods linear --batch-sizes 8192 $RUN
"$LEGW" report "$R" --out "$R/report"
