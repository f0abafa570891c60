"""The large-batch gap against the epoch budget (docs/results.md, study 6), from run records.

    python scripts/gap_vs_epochs.py --runs DIR [DIR ...] --small 128 --large 8192 --out FIG.png

--runs are run or sweep directories at both batch sizes and several epoch budgets (seeds at
one budget are averaged). Prints a Markdown table (budget, error at each batch, gap) and draws
the test error of both sizes and their gap against the budget.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict

from legw.experiments.plan_validation import find_runs, run_outcome
from legw.figures import pyplot, save_figure


def gap_table(runs: list[dict], small: int, large: int) -> list[dict]:
    """One row per epoch budget run at both sizes: mean error (and seeds) at each, and the gap."""
    at: dict[tuple[int, float], list[float]] = defaultdict(list)
    for r in runs:
        at[r["batch_size"], r["epochs"]].append(r["error"])
    budgets = sorted({e for b, e in at if b == small} & {e for b, e in at if b == large})
    return [{"epochs": e, "small": statistics.fmean(at[small, e]), "small_runs": len(at[small, e]),
             "large": statistics.fmean(at[large, e]), "large_runs": len(at[large, e]),
             "gap": statistics.fmean(at[large, e]) - statistics.fmean(at[small, e])}
            for e in budgets]


def plot(rows: list[dict], small: int, large: int, path: str) -> None:
    plt = pyplot()
    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(11, 4.2))
    epochs = [r["epochs"] for r in rows]
    ax.plot(epochs, [r["small"] for r in rows], "o-", label=f"batch {small}")
    ax.plot(epochs, [r["large"] for r in rows], "s-", label=f"batch {large} (LEGW)")
    ax.set(xlabel="epochs (budget)", ylabel="test error (%)", xscale="log",
           title="final test error vs budget")
    ax_gap.plot(epochs, [r["gap"] for r in rows], "o-", color="C3")
    ax_gap.axhline(0.5, color="gray", ls=":", label="the claim: within 0.5 points")
    ax_gap.set(xlabel="epochs (budget)", ylabel="gap (points)", xscale="log",
               title=f"gap, batch {large} minus batch {small}")
    for a in (ax, ax_gap):
        a.set_xticks(epochs, [f"{e:g}" for e in epochs])
        a.grid(alpha=0.3, which="both")
        a.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _seeds(n: int) -> str:
    return f" ({n} seeds)" if n > 1 else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="runs or sweep directories")
    ap.add_argument("--small", type=int, required=True, help="the base batch size")
    ap.add_argument("--large", type=int, required=True, help="the large batch size")
    ap.add_argument("--out", help="the figure (PNG)")
    args = ap.parse_args(argv)
    try:
        rows = gap_table([run_outcome(d) for d in find_runs(args.runs)], args.small, args.large)
    except (ValueError, OSError, KeyError) as e:
        print(f"gap_vs_epochs: error: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"gap_vs_epochs: error: no epoch budget was run at both {args.small} and "
              f"{args.large}", file=sys.stderr)
        return 2
    print(f"| epochs | {args.small} | {args.large} | gap (points) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['epochs']:g} | {r['small']:.2f}{_seeds(r['small_runs'])} | "
              f"{r['large']:.2f}{_seeds(r['large_runs'])} | {r['gap']:.2f} |")
    if args.out:
        plot(rows, args.small, args.large, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
