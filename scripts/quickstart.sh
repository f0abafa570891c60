#!/usr/bin/env bash
# Set up, then run the main job: the talk's Table 6 recipe (ResNet-50/ImageNet, LARS, poly decay)
# derived for batch 1K..32K, printed and plotted to runs/quickstart/table6_lr.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
LEGW="${LEGW_VENV:-.venv}/bin/legw"
mkdir -p runs/quickstart
"$LEGW" schedule --base-batch-size 1024 --base-lr 5.656854 --base-warmup-epochs 0.3125 \
    --epochs 90 --decay poly --power 2 --dataset-size 1281167 \
    --batch-size 1024 2048 4096 8192 16384 32768 --plot runs/quickstart/table6_lr.png
