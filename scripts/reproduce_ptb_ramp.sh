#!/usr/bin/env bash
# PTB small at max batch 640 (k = 32) with the rules that grow the batch or the step with the
# measured noise, against study 9 (base 112.62 at batch 20, LEGW at 640: 314.25 after 13 epochs):
#   noise   the noise ramp from batch 20, the LR rule sqrt (see docs/results.md, study 12: on PTB
#           LEGW's sqrt LR of 113 at 640 already stalls the first epochs, so the linear rule,
#           the SGD default, is not run here), 13 epochs of tokens; the batch changes at epoch
#           boundaries (token streams)
#   adaptive  --scaling adaptive at 640 until the base's 30,199 steps are made up in gains, at
#           most 26 epochs (1,872 steps)
# Both with study 9's base warmup (0.05 epochs) and Zaremba's schedule; one thread each,
# checkpointed every 100 steps; resumable: rerun to continue (a finished run is skipped).
# Usage: bash scripts/reproduce_ptb_ramp.sh {noise|adaptive} [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
LEGW="${LEGW_VENV:-.venv}/bin/legw"
RULE=${1:?usage: reproduce_ptb_ramp.sh noise|adaptive [OUT_DIR]}
R=${2:-runs/reproduce/ptb-ramp}
COMMON=(--batch-size 640 --base-warmup-epochs 0.05 --checkpoint-every 100 --threads 1 --resume)
case "$RULE" in
    noise) "$LEGW" train ptb-small "${COMMON[@]}" --batch-ramp noise --scaling sqrt \
               --micro-batch-size 10 --out "$R/noise-sqrt" ;;
    adaptive) "$LEGW" train ptb-small "${COMMON[@]}" --scaling adaptive --micro-batch-size 320 \
                  --max-steps 1872 --out "$R/adaptive" ;;
    *) echo "reproduce_ptb_ramp.sh: RULE must be noise or adaptive, got '$RULE'" >&2; exit 2 ;;
esac
