"""Predicted vs measured epochs to match the base: a `legw plan` record checked against runs.

    python scripts/validate_plan.py --plan PLAN.json --base RUN [RUN ...] --runs DIR [DIR ...]

PLAN.json is `legw plan --out`'s record; --base are the base runs that set the target (their
mean final test error and training loss); --runs are runs (or sweep directories) at other
batches, two or more epoch budgets per batch to interpolate between. Prints a Markdown table
(docs/results.md, study 10); --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys

from legw.experiments.plan_validation import find_runs, format_validation, run_outcome, validate
from legw.io import atomic_path, read_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True, help="a `legw plan --out` JSON record")
    ap.add_argument("--base", nargs="+", required=True, help="base runs (the target)")
    ap.add_argument("--runs", nargs="+", required=True, help="runs or sweep directories")
    ap.add_argument("--json", metavar="FILE", help="write the result as JSON")
    args = ap.parse_args(argv)
    try:
        plan = read_json(args.plan)
        base = [run_outcome(d) for d in find_runs(args.base)]
        runs = [run_outcome(d) for d in find_runs(args.runs)]
        result = validate(plan, base, runs)
    except (ValueError, OSError, KeyError) as e:
        print(f"validate_plan: error: {e}", file=sys.stderr)
        return 2
    print(format_validation(result))
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
