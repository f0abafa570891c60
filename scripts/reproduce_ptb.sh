#!/usr/bin/env bash
# Study 2 of docs/results.md, reduced protocol: PTB small LSTM (2x200, 20 steps), batch 20 -> 640.
# Zaremba et al.'s 13-epoch recipe cut to 3 epochs for every batch size alike: peak LR 20 at
# batch 20 (per-token loss: Zaremba's 1.0 on his loss summed over 20 steps) for 2 epochs, then
# x0.5 for the third; base warmup 0.01 epochs (23 steps at batch 20) so that LEGW has a warmup
# to scale. LEGW (sqrt LR, warmup x k) at 20, 80, 160, 320, 640; linear scaling + constant-epoch
# warmup at 80, 320 and 640. Resumable: rerun the script to continue.
# Usage: bash scripts/reproduce_ptb.sh [OUT_DIR]   (default runs/reproduce/ptb)
set -euo pipefail
cd "$(dirname "$0")/.."
LEGW="${LEGW_VENV:-.venv}/bin/legw"
R=${1:-runs/reproduce/ptb}
P="--epochs 3 --milestones 2 --gamma 0.5 --base-warmup-epochs 0.01 --jobs 2 --threads 1"
"$LEGW" sweep ptb-small --out "$R/legw" --methods legw --batch-sizes 20 80 160 320 640 $P
"$LEGW" sweep ptb-small --out "$R/linear" --methods linear --batch-sizes 80 320 640 $P
"$LEGW" report "$R" --out "$R/report"
