#!/usr/bin/env bash
# Stress the end of a distributed run (issue 33, item 4): RUNS small 2-process jobs under
# torchrun, --sharding ddp and fsdp alternating, counting the runs whose exit status is not 0
# and those whose stderr holds "terminate called" (gloo's threads aborting the process when
# the process group outlives destroy_process_group, or is freed at interpreter exit).
#
#   scripts/stress_teardown.sh [RUNS]     # default 50: 25 ddp + 25 fsdp, ~10 s each on 2 cores
#
# Each job: fashion-mnist-lstm on 256 generated samples, global batch 32 = micro 8 x 2 ranks
# x 2 accumulation steps, 2 steps, the online noise measured (DDP: parameter hooks; FSDP: the
# custom reduce-scatter), no evaluation. The stderr of every failing run is kept in WORK.
set -euo pipefail

runs=${1:-50}
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-"$repo/.venv/bin/python"}
work=$(mktemp -d "${TMPDIR:-/tmp}/legw-stress.XXXXXX")
export OMP_NUM_THREADS=1 PYTHONPATH="$repo/src:$repo/tests${PYTHONPATH:+:$PYTHONPATH}"

"$python" -c "import sys; from pathlib import Path; from helpers import make_mnist_dir; \
make_mnist_dir(Path(sys.argv[1]))" "$work/data"

declare -A nonzero=([ddp]=0 [fsdp]=0) terminate=([ddp]=0 [fsdp]=0) total=([ddp]=0 [fsdp]=0)
for ((i = 0; i < runs; i++)); do
    sharding=$([ $((i % 2)) -eq 0 ] && echo ddp || echo fsdp)
    out="$work/run-$i"
    status=0
    "$python" -m torch.distributed.run --standalone --nproc_per_node 2 -m legw train \
        fashion-mnist-lstm --data-dir "$work/data" --batch-size 32 --micro-batch-size 8 \
        --max-steps 2 --threads 1 --quiet --no-eval --sharding "$sharding" --out "$out" \
        >/dev/null 2>"$work/stderr-$i" || status=$?
    total[$sharding]=$((total[$sharding] + 1))
    flagged=""
    if [ "$status" -ne 0 ]; then
        nonzero[$sharding]=$((nonzero[$sharding] + 1)); flagged+=" exit=$status"
    fi
    if grep -q "terminate called" "$work/stderr-$i"; then
        terminate[$sharding]=$((terminate[$sharding] + 1)); flagged+=" terminate-called"
    fi
    if [ -z "$flagged" ]; then
        rm -rf "$out" "$work/stderr-$i"
    else
        echo "run $i ($sharding):$flagged (stderr: $work/stderr-$i)"
    fi
done
for s in ddp fsdp; do
    echo "$s: ${total[$s]} runs, ${nonzero[$s]} exit status != 0, ${terminate[$s]} 'terminate called'"
done
echo "work directory: $work"
