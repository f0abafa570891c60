#!/usr/bin/env bash
# Set up a virtual environment (torch 2.13.0 CPU build, the package with its test extras,
# Debian's Fashion-MNIST when apt is available), then run the linter and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LEGW_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[test]"
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
    (apt-get install -y -q dataset-fashion-mnist || sudo -n apt-get install -y -q dataset-fashion-mnist) \
        >/dev/null 2>&1 || echo "note: dataset-fashion-mnist not installed; real-data tests skip"
fi
"$PY" -m ruff check src tests benchmarks
"$PY" -m pytest "$@"
