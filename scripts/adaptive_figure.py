"""Adaptive scaling against AdaScale, LEGW and linear (docs/results.md, study 11), from the
results of ``scripts/adascale_compare.py``.

    python scripts/adaptive_figure.py --results RESULTS.jsonl --base-runs DIR [DIR ...] \
        --out FIG.png

--base-runs are the task's base runs (run or sweep directories at the base batch and budget;
their mean test error is the target, and the figure shades the band within 0.5 points of it).
--plan-runs (optional) are LEGW runs at ``legw plan``'s epoch budgets, drawn as the rule
"legw at plan's budget" beside the harness's rows.
Prints a Markdown table (rule x batch: test error, optimizer steps, epochs) and draws the test
error against the optimizer steps, one marker per rule, labelled by batch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from legw.experiments.plan_validation import find_runs, run_outcome
from legw.figures import pyplot, save_figure

# Display order and markers of the usual rules (others follow, in name order); an adaptive
# row is named by its LR power P (rows from before the flag existed ran P = 0.5).
PLAN_RULE = "legw at plan's budget"
RULES = {"adaptive p1": "o", "adaptive p1 gain-warmup": "D", "adaptive p0.5": "v", "adascale": "s",
         "legw": "^", PLAN_RULE: "<", "linear": "x"}


def rule_name(row: dict) -> str:
    if row["method"] == "adaptive":
        return f"adaptive p{row.get('adaptive_lr_power', 0.5):g}" + \
            (" gain-warmup" if row.get("adaptive_warmup") == "gain" else "")
    return row["method"]


def read_rows(path: str) -> list[dict]:
    try:
        lines = Path(path).read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as e:
        raise ValueError(f"--results {path}: {e}") from None
    kinds = {r["task"] + (f" with {json.dumps(r['overrides'], sort_keys=True)}"
                          if r.get("overrides") else "") for r in rows}
    if len(kinds) > 1:
        raise ValueError(f"--results {path}: rows of several tasks or settings "
                         f"({'; '.join(sorted(kinds))}); give one's results")
    if not rows:
        raise ValueError(f"--results {path}: no finished run in it")
    return rows


def points(rows: list[dict]) -> list[dict]:
    """One point per rule and batch: test error, steps and epochs averaged over its seeds."""
    runs: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        runs.setdefault((rule_name(r), r["batch_size"]), []).append(r)
    return [{"rule": rule, "batch_size": b, "seeds": len(rs),
             **{k: statistics.fmean(r[k] for r in rs) for k in ("test_error", "steps", "epochs")}}
            for (rule, b), rs in runs.items()]


def plan_rows(dirs: list[str], task: str) -> list[dict]:
    """Rows (as the harness writes them) of the LEGW runs at ``legw plan``'s budgets."""
    rows = []
    for run in find_runs(dirs):
        outcome = run_outcome(run)
        if outcome["task"] != task:
            raise ValueError(f"--plan-runs {run}: a run of {outcome['task']}, not {task}")
        rows.append({"method": PLAN_RULE, "batch_size": outcome["batch_size"],
                     "test_error": outcome["error"], "steps": outcome["steps"],
                     "epochs": outcome["epochs"]})
    return rows


def rules_of(pts: list[dict]) -> list[str]:
    present = {p["rule"] for p in pts}
    return [r for r in RULES if r in present] + sorted(present - set(RULES))


def table(pts: list[dict]) -> list[str]:
    batches = sorted({p["batch_size"] for p in pts})
    at = {(p["rule"], p["batch_size"]): p for p in pts}
    out = ["| rule | " + " | ".join(str(b) for b in batches) + " |",
           "|---|" + "---|" * len(batches)]
    for rule in rules_of(pts):
        cells = []
        for b in batches:
            p = at.get((rule, b))
            seeds = f" ({p['seeds']} seeds)" if p and p["seeds"] > 1 else ""
            cells.append(f"{p['test_error']:.2f} %, {p['steps']:,.0f} steps, "
                         f"{p['epochs']:.1f} ep{seeds}" if p else "")
        out.append(f"| {rule} | " + " | ".join(cells) + " |")
    return out


def plot(pts: list[dict], base: float, title: str, path: str) -> None:
    """Left: every rule (log steps). Right: the noise-driven rules, close to the base."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    noise_driven = [p for p in pts if p["rule"].startswith(("adaptive", "adascale"))]
    markers = iter("Pp*h<>")
    style = {rule: (RULES.get(rule) or next(markers, "."), f"C{i}")
             for i, rule in enumerate(rules_of(pts))}
    for ax, shown, zoom in ((axes[0], pts, False), (axes[1], noise_driven, True)):
        ax.axhspan(base, base + 0.5, color="0.5", alpha=0.15,
                   label="within 0.5 points of the base")
        ax.axhline(base, color="0.4", lw=1)
        for rule in rules_of(shown):
            marker, color = style[rule]
            line = sorted((p["steps"], p["test_error"], p["batch_size"]) for p in shown
                          if p["rule"] == rule)
            ax.plot([q[0] for q in line], [q[1] for q in line], marker=marker, ls=":",
                    color=color, label=rule)
            for steps, err, b in line:
                ax.annotate(f"{b}", (steps, err), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=color)
        if shown:
            errors = [p["test_error"] for p in shown]
            top = max(max(errors), base + 0.5) + (0.3 if zoom else 0.5)
            low, high = min(base - 0.5, min(errors) - 0.3), min(top, base + 8.5)
            ax.set_ylim(low, high)
            for p in shown:             # a run far off the scale: an arrow at the top edge
                if p["test_error"] > high:
                    color = style[p["rule"]][1]
                    ax.annotate(f"{p['batch_size']}: {p['test_error']:.1f} % ↑",
                                (p["steps"], high), textcoords="offset points",
                                xytext=(4, -12), fontsize=7, color=color)
                    ax.plot([p["steps"]], [high], marker="^", color=color, clip_on=False)
        ax.set(xlabel="optimizer steps", ylabel="test error (%)",
               xscale="linear" if zoom else "log",
               title="adaptive vs AdaScale" if zoom else
               f"{title}: every rule (labels: global batch)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", required=True, help="adascale_compare.py's results.jsonl")
    ap.add_argument("--base-runs", nargs="+", required=True, help="the base runs (directories)")
    ap.add_argument("--plan-runs", nargs="+", default=[],
                    help="LEGW runs at legw plan's budgets (directories), drawn beside the rows")
    ap.add_argument("--out", help="the figure (PNG)")
    args = ap.parse_args(argv)
    try:
        rows = read_rows(args.results)
        rows += plan_rows(args.plan_runs, rows[0]["task"]) if args.plan_runs else []
        base_errors = [run_outcome(d)["error"] for d in find_runs(args.base_runs)]
    except (ValueError, OSError, KeyError) as e:
        print(f"adaptive_figure: error: {e}", file=sys.stderr)
        return 2
    base = statistics.fmean(base_errors)
    spread = f" ± {statistics.stdev(base_errors):.2f}" if len(base_errors) > 1 else ""
    print(f"base: {base:.2f}{spread} % ({len(base_errors)} runs)\n")
    pts = points(rows)
    print("\n".join(table(pts)))
    if args.out:
        optimizer = rows[0].get("overrides", {}).get("optimizer")
        plot(pts, base, rows[0]["task"] + (f" + {optimizer}" if optimizer else ""), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
