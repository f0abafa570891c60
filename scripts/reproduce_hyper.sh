#!/usr/bin/env bash
# Study 13: every hyperparameter the batch touches (--optimizer-scaling srr: Adam/AdamW/LAMB betas
# 1 - k (1 - beta), eps / sqrt(k), weight decay x k / sqrt(k); legw.hyper) against the LR rule
# alone, on the Fashion-MNIST LSTM with each optimizer's base tuned at 128 (study 8: Adam LR
# 0.008; LAMB 0.01, wd 0.01; AdamW: Adam's LR with wd 0.01, not tuned separately).
# Phases, most decisive first (the goal is Adam at 8192, 25 epochs); every sweep and run is
# resumable: rerun the script to continue where it stopped (finished runs are skipped).
#   1  at 8192, 25 and 10 epochs: srr for AdamW and LAMB (Adam's are records/hyper), AdamW's
#      LR-only (Adam's and LAMB's are study 8's)
#   2  --scaling adaptive at 8192, Adam, AdamW, LAMB: srr at the gain's effective batch, then
#      the LR rule alone (the control)
#   3  LR-only and srr at 1024 and 4096, 10 and 25 epochs; AdamW's LR-only at 8192 and base
#   4  second seed at 8192 (LR-only and srr, 10 and 25 epochs)
# One thread, one run at a time; EPOCHS (default "25 10") picks the budgets of phases 1, 3 and 4.
# Several copies of the script may share OUT_DIR (one per core): each sweep and adaptive run is
# taken under a lock (flock) by one of them; the others skip it and go on to the next.
# Usage: [PHASES="1 2"] [EPOCHS=25] bash scripts/reproduce_hyper.sh [OUT_DIR]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
LEGW="${LEGW_VENV:-.venv}/bin/legw"
R=${1:-runs/reproduce/hyper}
PHASES=${PHASES:-1 2 3 4}
EPOCHS=${EPOCHS:-25 10}
T=fashion-mnist-lstm
COMMON=(--base-warmup-epochs 0.1 --micro-batch-size 512 --jobs 1 --threads 1)
declare -A LR=([adam]=0.008 [adamw]=0.008 [lamb]=0.01)
locked() {  # locked NAME COMMAND...: run COMMAND unless another copy holds NAME's lock
    mkdir -p "$R"
    local rc=0
    flock -n -E 75 "$R/.$(echo "$1" | tr / _).lock" "${@:2}" || rc=$?
    if [ "$rc" = 75 ]; then echo "reproduce_hyper.sh: $1 is taken by another copy; skipped"
    elif [ "$rc" != 0 ]; then exit "$rc"; fi
}
sweep() {  # sweep OUT METHOD SCALING EPOCHS SEEDS BATCHES...
    local out=$1 method=$2 scaling=$3 epochs=$4 seeds=$5; shift 5
    local wd=(); [ "$method" = adam ] || wd=(--weight-decay 0.01)  # study 8: Adam without
    locked "$out" "$LEGW" sweep "$T" --out "$R/$out" --methods "$method" \
        "--$method-lr" "${LR[$method]}" ${wd[@]+"${wd[@]}"} \
        --batch-sizes "$@" --epochs "$epochs" --seeds $seeds --optimizer-scaling "$scaling" \
        "${COMMON[@]}"
}
adaptive() {  # adaptive OPTIMIZER LR SCALING
    local wd=(); [ "$1" = adam ] || wd=(--weight-decay 0.01)
    locked "adaptive-$3/$1" "$LEGW" train "$T" --out "$R/adaptive-$3/$1-b8192" \
        --optimizer "$1" --base-lr "$2" ${wd[@]+"${wd[@]}"} \
        --batch-size 8192 --base-batch-size 128 --epochs 10 --base-warmup-epochs 0.1 \
        --scaling adaptive --micro-batch-size 512 --optimizer-scaling "$3" --threads 1 --resume
}
for phase in $PHASES; do
    case $phase in
        1) for ep in $EPOCHS; do
               for m in adamw lamb; do sweep "$m-srr-${ep}ep" "$m" srr "$ep" 0 8192; done
               sweep "adamw-lr-${ep}ep" adamw none "$ep" 0 8192
           done ;;
        2) for scaling in srr none; do
               adaptive adam 0.008 "$scaling"; adaptive adamw 0.008 "$scaling"
               adaptive lamb 0.01 "$scaling"
           done ;;
        3) for ep in $EPOCHS; do
               for m in adam lamb; do sweep "$m-lr-${ep}ep" "$m" none "$ep" 0 1024 4096; done
               sweep "adamw-lr-${ep}ep" adamw none "$ep" 0 128 1024 4096 8192
               for m in adam adamw lamb; do sweep "$m-srr-${ep}ep" "$m" srr "$ep" 0 1024 4096 8192
           done; done ;;
        4) for ep in $EPOCHS; do for m in adam adamw lamb; do
               sweep "$m-srr-${ep}ep-seed1" "$m" srr "$ep" 1 8192
               sweep "$m-lr-${ep}ep-seed1" "$m" none "$ep" 1 8192
           done; done ;;
        *) echo "reproduce_hyper.sh: PHASE must be 1-4, got '$phase'" >&2; exit 2 ;;
    esac
done
