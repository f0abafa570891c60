#!/usr/bin/env bash
# Set up (scripts/setup.sh with the test extras), then run the linter and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
LEGW_EXTRAS=test bash scripts/setup.sh
PY="${LEGW_VENV:-.venv}/bin/python"
"$PY" -m ruff check src tests benchmarks
# Without arguments: every test but those marked slow (the longer distributed checks and the
# GPU script's dry run, ~5 minutes more on 2 cores): `bash scripts/test.sh -m slow` runs them,
# `bash scripts/test.sh -m ""` runs everything.
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
"$PY" -m pytest "$@"
