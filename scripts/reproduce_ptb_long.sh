#!/usr/bin/env bash
# The talk's remedy for PTB at batch 640 ("running long enough: from 13 epochs to 50"): PTB small
# with LEGW at batch 640 (k = 32) for 50 epochs, against study 9's 13 epochs (perplexity 314.25,
# base 112.62 at batch 20). Zaremba's schedule is stretched with the budget: the constant-LR
# phase and the 9 halvings keep their place as fractions of training (milestones at epochs
# m * 50/13 for m = 4..12), since halving every epoch from epoch 4 would leave the LR at
# 113 * 2^-46 for the last 30 epochs. Base warmup 0.05 epochs (study 9's choice at batch 20),
# so LEGW's warmup is 1.6 epochs = 115 steps. 3,600 steps; about 5 CPU-hours on one thread.
# Checkpoint every 100 steps as well as at each epoch end; resumable: rerun to continue.
# Usage: bash scripts/reproduce_ptb_long.sh [OUT_DIR]   (default runs/reproduce/ptb-50ep)
set -euo pipefail
cd "$(dirname "$0")/.."
LEGW="${LEGW_VENV:-.venv}/bin/legw"
R=${1:-runs/reproduce/ptb-50ep}
MILESTONES=$(python3 -c 'print(" ".join(f"{m * 50 / 13:.4f}" for m in range(4, 13)))')
"$LEGW" sweep ptb-small --out "$R" --methods legw --batch-sizes 640 --epochs 50 \
    --milestones $MILESTONES --gamma 0.5 --base-warmup-epochs 0.05 \
    --checkpoint-every 100 --jobs 1 --threads 1
"$LEGW" report "$R" --out "$R/report"
