#!/usr/bin/env bash
# Issue 32: the GPU path measured in one device run (< 10 minutes on an H200), from the source
# tree (PYTHONPATH=src) with the machine's own python3 and torch; nothing is installed.
# Steps, each under its own `timeout` and the whole under GPU_CHECK_BUDGET_S (default 570 s),
# each writing under $OUT as it goes, the most important first so a cut-off keeps them:
#   1. pytest tests/cuda -m cuda     (LARS / LAMB kernels, presets in bf16, checkpoints, NCCL)
#   2. benchmarks/gpu_optim_step.py  (legw LARS / LAMB vs torch's fused SGD / AdamW)
#   3. benchmarks/gpu_trainer_throughput.py  (legw vs a bare loop)
#   4. benchmarks/time_to_accuracy.py (fashion-mnist-lstm, time to the base's test error at
#      128 vs 8192: adaptive, and LEGW at `legw plan`'s epochs; bf16, the trainer's on CUDA)
# $OUT gets at most 8 files (what the device tool brings back): summary.md, figures.json,
# 1-pytest.log ... 4-time_to_accuracy.log and lstm-runs.tar.gz (the LSTM runs' records).
#
# Usage:
#   bash scripts/gpu_check.sh --prepare   # here: Fashion-MNIST -> .gpu_data/ (git-ignored, to
#                                         # carry) and the size that would travel (64 MiB max)
#   bash scripts/gpu_check.sh             # on the GPU machine; device tool: carry [".gpu_data"]
#   bash scripts/gpu_check.sh --dry-run   # (or GPU_CHECK_DRY=1) every step on the CPU, every
#                                         # size shrunk: checks all but the GPU, in about a minute
# OUT defaults to runs/gpu-check; GPU_CHECK_PYTHON picks the interpreter (default: .venv's
# where there is one, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=${GPU_CHECK_DRY:-0}
case "${1:-}" in
    --dry-run) DRY=1 ;;
    --prepare) PREPARE=1 ;;
    "") ;;
    *) echo "gpu_check.sh: unknown argument '$1' (--dry-run, --prepare or none)" >&2; exit 2 ;;
esac
CARRY=.gpu_data  # git-ignored (.gitignore): the device tool's `carry` brings it along

if [ -n "${PREPARE:-}" ]; then
    mkdir -p "$CARRY/fashion-mnist"
    cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$CARRY/fashion-mnist/" || exit 1
    tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    data=$(du -sb "$CARRY" | cut -f1)
    total=$((tree + data)); limit=$((64 * 1024 * 1024))
    echo "travels: working tree $((tree / 1048576)) MiB + $CARRY $((data / 1048576)) MiB = $((total / 1048576)) MiB (limit 64 MiB)"
    if [ "$total" -gt "$limit" ]; then
        echo "gpu_check.sh: too big for the device tool; the LSTM step needs the data (see docs/benchmarks-gpu.md)" >&2
        exit 1
    fi
    exit 0
fi

if [ -z "${GPU_CHECK_PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then GPU_CHECK_PYTHON=.venv/bin/python; else GPU_CHECK_PYTHON=python3; fi
fi
PY=$GPU_CHECK_PYTHON
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
WORK=$(mktemp -d)  # per-step JSON and the LSTM runs; only the condensed results go to $OUT
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-570}))

DATA=""
for d in "${GPU_CHECK_DATA:-}" "$CARRY/fashion-mnist" /usr/share/datasets/fashion-mnist \
         "${LEGW_DATA:-$HOME/.cache/legw}/fashion-mnist"; do
    if [ -n "$d" ] && [ -e "$d/train-images-idx3-ubyte.gz" -o -e "$d/train-images-idx3-ubyte" ]; then
        DATA=$d; break
    fi
done

if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    export OMP_NUM_THREADS=1 LEGW_CUDA_TESTS_ON_CPU=1
    OPTIM=(--models bert-tiny --warmup 1 --steps 1)
    THROUGHPUT=(--steps 2 --batch-size 64 --repeats 1 --resnet-steps 1 --resnet-warmup 1
                --resnet-batch 2 --resnet-image-size 32)
    TTA=(--subset 2048 512 --batch-size 1024 --micro-batch-size 256 --max-steps 4 --threads 1)
    CAPS=(60 60 60 120)
else
    DEVICE=cuda
    OPTIM=(--warmup 5 --steps 20)
    THROUGHPUT=(--steps 200 --batch-size 512 --repeats 3 --resnet-steps 50 --resnet-batch 256)
    TTA=(--batch-size 8192 --micro-batch-size 512)
    CAPS=(110 100 140 210)  # seconds; a step that ends early leaves its time to the next
fi
[ -n "$DATA" ] && THROUGHPUT+=(--data-dir "$DATA")

# One JSON of every step's status and figures, and its markdown rendering, rewritten after each step.
report() {  # report STEP RC SECONDS LOG: figures from $WORK/STEP.json (pytest: from its log)
    "$PY" - "$OUT" "$WORK" "$@" <<'EOF'
import json, re, sys
from pathlib import Path
out, work, step, rc, seconds, log = sys.argv[1:]
out, rc, seconds = Path(out), int(rc), float(seconds)
path = out / "figures.json"
doc = json.loads(path.read_text())
entry = {"rc": rc, "seconds": seconds,
         "status": {0: "ok", 124: "timed out", 137: "killed at the time limit",
                    -1: "skipped"}.get(rc, "failed")}
figures = Path(work) / f"{step}.json"
if figures.is_file():
    entry["figures"] = json.loads(figures.read_text())
elif step == "pytest" and Path(log).is_file():
    ends = re.findall(r"^=*\s*(\d+ (?:passed|failed|error|skipped).*?)\s*=*$",
                      Path(log).read_text(), re.M)
    entry["figures"] = {"summary": ends[-1] if ends else "no pytest summary line"}
doc["steps"][step] = entry
path.write_text(json.dumps(doc, indent=1))
lines = [f"# gpu_check: {doc['meta']['mode']}", "", *[f"- {k}: {v}" for k, v in doc["meta"].items()],
         "", "| step | status | s |", "|---|---|---|"]
lines += [f"| {k} | {v['status']} (rc {v['rc']}) | {v['seconds']:.0f} |" for k, v in doc["steps"].items()]
steps = doc["steps"]
if "pytest" in steps:
    lines += ["", "## 1. tests/cuda", "", "    " + steps["pytest"].get("figures", {}).get("summary", "")]
rows = steps.get("optim_step", {}).get("figures", {}).get("steps", [])
if rows:
    lines += ["", "## 2. optimizer step (ms; ratio to the fused torch step, goal <= 1.5)", "",
              "| shapes | dtype | optimizer | ms/step | ratio |", "|---|---|---|---|---|"]
    lines += [f"| {r['shapes']} | {r['dtype']} | {r['optimizer']} | {r['ms_per_step']:.3f} | "
              f"{r['vs_fused_torch']:.2f} |" for r in rows]
fig = steps.get("trainer_throughput", {}).get("figures", {})
if "lstm" in fig or "resnet50" in fig:
    lines += ["", "## 3. throughput, legw / bare loop (goal >= 0.97)", ""]
    for k, v in fig.items():
        if isinstance(v, dict):
            lines.append(f"- {k}: " + ", ".join(f"{a} {b:.4g}" if isinstance(b, float) else f"{a} {b}"
                                              for a, b in v.items()))
fig = steps.get("time_to_accuracy", {}).get("figures", {})
if fig.get("runs"):
    sys.path.insert(0, "benchmarks")
    from time_to_accuracy import table
    lines += ["", "## 4. fashion-mnist-lstm: time to the base's test error", "", table(fig), "",
              *[f"    {c}" for c in fig["commands"].values()]]
(out / "summary.md").write_text("\n".join(lines) + "\n")
EOF
}

run_step() {  # run_step N NAME CAP COMMAND...: the command's output to $OUT/N-NAME.log
    local n=$1 name=$2 cap=$3; shift 3
    local left=$((DEADLINE - $(date +%s)))
    local limit=$((cap < left ? cap : left))
    local log="$OUT/$n-$name.log"
    if [ "$limit" -lt 20 ]; then
        echo "step $n ($name): skipped, ${left}s left" | tee "$log"
        report "$name" -1 0 "$log"
        return
    fi
    echo "=== step $n ($name), limit ${limit}s: $*" | tee "$log"
    local t0; t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    echo "=== step $n ($name): exit status $rc after $(($(date +%s) - t0))s" | tee -a "$log"
    report "$name" "$rc" "$(($(date +%s) - t0))" "$log"
}

# --- meta: what ran where
"$PY" - "$OUT" "$DRY" "$DATA" <<'EOF'
import json, platform, shutil, subprocess, sys, time
from pathlib import Path
import torch
out, dry, data = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
cuda = torch.cuda.is_available()
def read(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"
meta = {"mode": "dry run on the CPU (sizes shrunk)" if dry else "GPU run",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": read("git", "rev-parse", "--short", "HEAD"),
        "device": torch.cuda.get_device_name() if cuda and not dry else platform.processor() or "CPU",
        "torch": torch.__version__, "cuda": torch.version.cuda or "none",
        "python": platform.python_version(), "data": data or "none found"}
if shutil.which("nvidia-smi"):
    meta["nvidia-smi"] = read("nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
                              "clocks.max.sm", "--format=csv,noheader")
(out / "figures.json").write_text(json.dumps({"meta": meta, "steps": {}}, indent=1))
print(json.dumps(meta))
EOF
[ -f "$OUT/figures.json" ] || { echo "gpu_check.sh: $PY cannot import torch" >&2; exit 1; }

# --- 1. the CUDA tests (on the CPU in the dry run: LEGW_CUDA_TESTS_ON_CPU=1)
run_step 1 pytest "${CAPS[0]}" "$PY" -m pytest tests/cuda -m cuda -rfEs -p no:cacheprovider

# --- 2. the optimizer step
run_step 2 optim_step "${CAPS[1]}" "$PY" benchmarks/gpu_optim_step.py --device "$DEVICE" \
    "${OPTIM[@]}" --json "$WORK/optim_step.json"

# --- 3. trainer throughput against a bare loop
run_step 3 trainer_throughput "${CAPS[2]}" "$PY" benchmarks/gpu_trainer_throughput.py \
    --device "$DEVICE" "${THROUGHPUT[@]}" --json "$WORK/trainer_throughput.json"

# --- 4. time to the base's test error, 128 vs 8192
if [ -n "$DATA" ]; then
    run_step 4 time_to_accuracy "${CAPS[3]}" "$PY" benchmarks/time_to_accuracy.py \
        --device "$DEVICE" --data-dir "$DATA" --runs-dir "$WORK/lstm-runs" "${TTA[@]}" \
        --json "$WORK/time_to_accuracy.json"
    (cd "$WORK" && tar czf - --exclude='checkpoints' --exclude='data' --exclude='*.pt' lstm-runs) \
        > "$OUT/lstm-runs.tar.gz" 2>/dev/null
else
    echo "step 4: no Fashion-MNIST files (carry .gpu_data: bash scripts/gpu_check.sh --prepare)" \
        | tee "$OUT/4-time_to_accuracy.log"
    report time_to_accuracy -1 0 "$OUT/4-time_to_accuracy.log"
fi
echo "gpu_check.sh: done in $(($(date +%s) - START))s; $OUT/summary.md"
cat "$OUT/summary.md"
