#!/usr/bin/env bash
# The talk's own long protocols ("running long enough"), docs/results.md studies 6-9:
#   6. Fashion-MNIST LSTM, 128 vs 8192, sqrt + LEGW, 100 epochs (2 seeds at 8192) and 50 epochs;
#   7. the small ResNet with LARS, 128 vs 8192, 25 epochs;
#   8. Adam, LAMB and LARS on the LSTM: base LR tuned once at 128 (<= 6 trials, 10 epochs),
#      then 8192 with sqrt + LEGW, untuned, at 10 and 25 epochs;
#   9. PTB small, the full 13-epoch Zaremba protocol at batch 20 and 640 with LEGW, the base
#      warmup chosen at batch 20 from a short grid (never at 640);
#   and the base runs of `legw plan`'s validation: batch 128 with micro batch 64, so the trainer
#   measures the gradient noise scale online (LSTM and small ResNet, 10 epochs).
# One run at a time on one thread (a core stays free). Every step is resumable: rerun the script
# and it skips what finished and resumes what was interrupted from its last checkpoint.
# Usage: bash scripts/reproduce_long.sh [OUT_DIR]   (default runs/reproduce/long)
set -euo pipefail
cd "$(dirname "$0")/.."
LEGW="${LEGW_VENV:-.venv}/bin/legw"
PY="${LEGW_VENV:-.venv}/bin/python"
R=${1:-runs/reproduce/long}
ONE="--jobs 1 --threads 1"
LSTM="--micro-batch-size 512 $ONE"
BASE="--base-lr 0.4 --base-warmup-epochs 0.1"   # study 1's base recipe, tuned at 128

# The best trial's peak LR of a finished `legw tune` directory.
best_lr() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["best"]["peak_lr"])' \
    "$1/trials.json"; }

# Base runs that measure B_noise while training (2 micro-batches per step): legw plan's input.
"$LEGW" sweep fashion-mnist-lstm --out "$R/lstm-base-noise" --methods legw --batch-sizes 128 \
    --epochs 10 $BASE --micro-batch-size 64 $ONE

# 6. LSTM, 100 and 50 epochs.
"$LEGW" sweep fashion-mnist-lstm --out "$R/lstm-100ep/a" --methods legw --batch-sizes 8192 \
    --epochs 100 $BASE $LSTM
"$LEGW" sweep fashion-mnist-lstm --out "$R/lstm-100ep/b" --methods legw --batch-sizes 128 \
    --epochs 100 $BASE $LSTM
# legw plan's validation: the epochs `legw plan --from-run lstm-base-noise/runs/legw-b128-s0`
# predicts to match the base run (1024: 19.9, 2048: 31.2, 4096: 53.8), run at those budgets.
"$LEGW" sweep fashion-mnist-lstm --out "$R/plan-check/b1024-20ep" --methods legw \
    --batch-sizes 1024 --epochs 20 $BASE $LSTM
"$LEGW" sweep fashion-mnist-lstm --out "$R/plan-check/b2048-31ep" --methods legw \
    --batch-sizes 2048 --epochs 31 $BASE $LSTM
"$LEGW" sweep fashion-mnist-lstm --out "$R/plan-check/b4096-54ep" --methods legw \
    --batch-sizes 4096 --epochs 54 $BASE $LSTM
"$LEGW" sweep fashion-mnist-lstm --out "$R/lstm-100ep/c" --methods legw --batch-sizes 8192 \
    --seeds 1 --epochs 100 $BASE $LSTM
"$LEGW" sweep fashion-mnist-lstm --out "$R/lstm-50ep" --methods legw --batch-sizes 128 8192 \
    --epochs 50 $BASE $LSTM

# 7. Small ResNet + LARS, 25 epochs (the preset's untuned Table-6 recipe, as study 4).
"$LEGW" sweep fashion-mnist-resnet --out "$R/resnet-base-noise" --methods legw \
    --batch-sizes 128 --micro-batch-size 64 $ONE
# legw plan's validation on the ResNet: `legw plan --from-run resnet-base-noise/runs/legw-b128-s0`
# predicts 14.6 epochs at 512 and 33.0 at 2048 (the 10-epoch runs of study 4 are the other budget).
"$LEGW" sweep fashion-mnist-resnet --out "$R/plan-check/resnet-b512-15ep" --methods legw \
    --batch-sizes 512 --epochs 15 --micro-batch-size 1024 $ONE
"$LEGW" sweep fashion-mnist-resnet --out "$R/plan-check/resnet-b2048-33ep" --methods legw \
    --batch-sizes 2048 --epochs 33 --micro-batch-size 1024 $ONE
for B in 8192 128; do
    "$LEGW" sweep fashion-mnist-resnet --out "$R/resnet-25ep/b$B" --methods legw \
        --batch-sizes "$B" --epochs 25 --micro-batch-size 1024 $ONE
done

# 8. Optimizers. Each base LR is tuned at 128 only: the LEGW point (factor 1) + 5 grid LRs,
# warmup fixed at the base's 0.1 epochs. LARS and LAMB get weight decay (the trust ratio is
# applied only to groups with weight decay): 1e-4 for LARS (Table 6), 0.01 for LAMB (BERT).
TUNE="--batch-size 128 --epochs 10 --warmup-epochs 0.1 --lr-factors 0.25 0.5 2 4 8 --trials 5"
"$LEGW" tune fashion-mnist-lstm --out "$R/opt-tune-128/adam" --optimizer adam --base-lr 0.002 \
    --base-warmup-epochs 0.1 $TUNE $LSTM
"$LEGW" tune fashion-mnist-lstm --out "$R/opt-tune-128/lamb" --optimizer lamb --base-lr 0.005 \
    --weight-decay 0.01 --base-warmup-epochs 0.1 $TUNE $LSTM
"$LEGW" tune fashion-mnist-lstm --out "$R/opt-tune-128/lars" --optimizer lars --base-lr 2 \
    --weight-decay 1e-4 --base-warmup-epochs 0.1 $TUNE $LSTM
for EP in 10 25; do
    "$LEGW" sweep fashion-mnist-lstm --out "$R/opt-8192-${EP}ep/adam" --methods adam \
        --adam-lr "$(best_lr "$R/opt-tune-128/adam")" --batch-sizes 8192 --epochs "$EP" \
        --base-warmup-epochs 0.1 $LSTM
    "$LEGW" sweep fashion-mnist-lstm --out "$R/opt-8192-${EP}ep/lamb" --methods lamb \
        --lamb-lr "$(best_lr "$R/opt-tune-128/lamb")" --weight-decay 0.01 --batch-sizes 8192 \
        --epochs "$EP" --base-warmup-epochs 0.1 $LSTM
    "$LEGW" sweep fashion-mnist-lstm --out "$R/opt-8192-${EP}ep/lars" --methods lars \
        --lars-lr "$(best_lr "$R/opt-tune-128/lars")" --weight-decay 1e-4 --batch-sizes 8192 \
        --epochs "$EP" --base-warmup-epochs 0.1 $LSTM
done

# 9. PTB small, 13 epochs. Zaremba's recipe has no warmup; LEGW needs one to scale. Choose it
# at batch 20 from the first epoch of the 13-epoch recipe (--max-steps 2323 = one epoch at 20;
# the LR is constant in epoch 1 after the warmup), then train 20 and 640.
"$LEGW" tune ptb-small --out "$R/ptb-warmup-20" --batch-size 20 --max-steps 2323 --lr-factors 1 \
    --warmup-epochs 0.01 0.05 0.2 --trials 3 $ONE
W0=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["best"]["warmup_epochs"])' \
    "$R/ptb-warmup-20/trials.json")
"$LEGW" sweep ptb-small --out "$R/ptb-13ep" --methods legw --batch-sizes 20 640 \
    --base-warmup-epochs "$W0" $ONE

for S in lstm-100ep lstm-50ep resnet-25ep opt-8192-10ep opt-8192-25ep ptb-13ep; do
    "$LEGW" report "$R/$S" --out "$R/report-$S"
done
