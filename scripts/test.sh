#!/usr/bin/env bash
# Set up (scripts/setup.sh with the test extras), then run the linter and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
LEGW_EXTRAS=test bash scripts/setup.sh
PY="${LEGW_VENV:-.venv}/bin/python"
"$PY" -m ruff check src tests benchmarks
"$PY" -m pytest "$@"
