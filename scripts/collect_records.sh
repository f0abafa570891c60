#!/usr/bin/env bash
# Copy the records of experiment directories (sweep/tune specs, results, and each run's
# config, launch, metrics and summary -- not checkpoints) into records/, so that
# `legw report` can rebuild every figure from what is committed. metrics.jsonl is stored
# gzipped (metrics.jsonl.gz, a quarter of the size; legw reads either), which keeps the
# repository small enough to travel to a GPU machine with its data.
# Usage: bash scripts/collect_records.sh SRC_DIR records/STUDY   (see records/README.md)
set -euo pipefail
SRC=${1:?source experiment directory}
DEST=${2:?destination under records/ (see records/README.md)}
mkdir -p "$DEST"
(cd "$SRC" && find . \( -name checkpoints -o -name tensorboard \) -prune -o -type f \
    \( -name '*.json' -o -name '*.csv' -o -name 'metrics.jsonl' \) -print) |
while read -r f; do
    mkdir -p "$DEST/$(dirname "$f")"
    if [ "$(basename "$f")" = metrics.jsonl ]; then
        gzip -n -9 -c "$SRC/$f" > "$DEST/$f.gz"
    else
        cp -p "$SRC/$f" "$DEST/$f"
    fi
done
