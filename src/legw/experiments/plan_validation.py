"""Checking a ``legw plan`` against real runs: predicted vs measured epochs to match the base.

For each batch, runs at two or more epoch budgets give the final test metric and the final
training loss as functions of the budget; the budget at which each reaches the base's value
(mean over the base runs) is found by log-linear interpolation
(:func:`measured_epochs_to_match`). Both are reported because the plan's
model (McCandlish et al. 2018) counts optimisation progress, which the training loss measures;
the test metric adds generalisation, which no noise measurement sees.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from legw.training.run_dir import RunDir


def run_outcome(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's batch, epoch budget, steps, final test error (% for accuracy tasks, the
    perplexity for language models: lower is better either way) and final training loss (the
    mean of the per-step losses over its last epoch)."""
    run = RunDir(run_dir)
    outcome = run.outcome()
    if outcome is None:
        raise ValueError(f"{run.summary_file}: absent or unreadable; validate against "
                         "finished runs only")
    if outcome.status != "completed":
        raise ValueError(f"{run.path}: the run did not complete (status "
                         f"{outcome.status!r}); validate against finished runs only")
    if outcome.objective is None:
        raise ValueError(f"{run.summary_file}: no test_accuracy or test_perplexity")
    if outcome.train_loss is None:
        raise ValueError(f"{run.metrics_file}: no training losses in the last epoch")
    return {"task": outcome.task, "batch_size": outcome.batch_size, "epochs": outcome.epochs,
            "steps": outcome.steps, "error": outcome.objective,
            "train_loss": outcome.train_loss, "run_dir": str(run.path)}


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories under ``paths``: each path is a run (has a summary) or a sweep or tune
    directory whose runs are searched for."""
    found: list[Path] = []
    for p in map(Path, paths):
        summary = RunDir(p).summary_file
        if summary.is_file():
            found.append(p)
            continue
        runs = sorted(s.parent for s in p.rglob(summary.name))
        if not runs:
            raise ValueError(f"{p}: no run directory ({summary.name}) under it")
        found += runs
    return found


def measured_epochs_to_match(budgets: Sequence[tuple[float, float]], target: float
                             ) -> float | None:
    """From ``(epoch budget, final error)`` runs at one batch, the budget at which the error
    reaches ``target`` (log-linear interpolation between the two budgets around it); ``None``
    when no run reaches it."""
    pts = sorted(budgets)
    for (e0, v0), (e1, v1) in zip(pts, pts[1:]):
        if v0 > target >= v1:
            t = (v0 - target) / (v0 - v1)
            return math.exp(math.log(e0) + t * (math.log(e1) - math.log(e0)))
    if pts and pts[0][1] <= target:
        return pts[0][0]
    return None


def _error_pct(predicted: float, measured: float | None, longest: float) -> dict[str, Any]:
    if measured is not None:
        return {"measured": measured, "error_pct": 100 * (predicted / measured - 1),
                "reached": True}
    # Not reached within the longest budget: the truth is above it, so the prediction's error
    # is at most this (negative: under-predicts). A prediction well beyond the budget is not
    # contradicted; one within 2 % of it was run at its own (whole-epoch) budget and missed.
    bound = 100 * (predicted / longest - 1)
    return {"measured": None, "error_pct": bound if bound <= 2 else None, "reached": False}


def validate(plan: dict[str, Any], base_runs: Sequence[dict[str, Any]],
             runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per batch of ``runs``: the plan's predicted epochs beside the measured epochs-to-match
    on the test metric and on the training loss, with the prediction's error in % (positive:
    over-predicts). ``base_runs`` set the targets (their mean)."""
    if not base_runs:
        raise ValueError("validate: no base runs to set the target")
    tasks = {r["task"] for r in [*base_runs, *runs]}
    if len(tasks) > 1:
        raise ValueError(f"the runs mix tasks ({', '.join(sorted(tasks))}); validate one "
                         "task's runs against its own plan")
    target_error = statistics.fmean(r["error"] for r in base_runs)
    target_loss = statistics.fmean(r["train_loss"] for r in base_runs)
    spread = statistics.stdev(r["error"] for r in base_runs) if len(base_runs) > 1 else 0.0
    predicted = {r["global_batch_size"]: r["epochs"] for r in plan["rows"]}
    rows = []
    for b in sorted({r["batch_size"] for r in runs}):
        if b not in predicted:
            raise ValueError(f"batch {b}: the plan has no row for it; plan it with "
                             f"--batch-sizes {b}")
        budgets = []
        for e in sorted({r["epochs"] for r in runs if r["batch_size"] == b}):
            same = [r for r in runs if r["batch_size"] == b and r["epochs"] == e]
            budgets.append({"epochs": e, "runs": len(same),
                            "error": statistics.fmean(r["error"] for r in same),
                            "train_loss": statistics.fmean(r["train_loss"] for r in same)})
        longest = budgets[-1]["epochs"]
        by_error = measured_epochs_to_match([(r["epochs"], r["error"]) for r in budgets],
                                            target_error)
        by_loss = measured_epochs_to_match([(r["epochs"], r["train_loss"]) for r in budgets],
                                           target_loss)
        rows.append({"batch_size": b, "predicted_epochs": predicted[b], "budgets": budgets,
                     "test_metric": _error_pct(predicted[b], by_error, longest),
                     "train_loss": _error_pct(predicted[b], by_loss, longest)})
    return {"target_error": target_error, "target_error_std": spread,
            "target_train_loss": target_loss, "base_runs": len(base_runs), "rows": rows}


def _pct(x: float) -> str:
    return f"{x:+.1f} %" if abs(x) < 10 else f"{x:+.0f} %"


def _cell(m: dict[str, Any], longest: float) -> tuple[str, str]:
    if m["reached"]:
        return f"{m['measured']:.1f}", _pct(m["error_pct"])
    err = "consistent" if m["error_pct"] is None else f"≤ {_pct(m['error_pct'])}"
    return f"> {longest:g}", err


def format_validation(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`validate`'s result."""
    lines = [f"target: test error {result['target_error']:.2f} ± "
             f"{result['target_error_std']:.2f}, training loss "
             f"{result['target_train_loss']:.4f} (mean of {result['base_runs']} base runs)", "",
             "| batch | runs (epochs: test error / train loss) | predicted epochs | "
             "measured, test metric | error | measured, train loss | error |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        longest = r["budgets"][-1]["epochs"]
        runs = ", ".join(f"{b['epochs']:g}: {b['error']:.2f} / {b['train_loss']:.3f}"
                         + (f" ({b['runs']} seeds)" if b["runs"] > 1 else "")
                         for b in r["budgets"])
        te, te_err = _cell(r["test_metric"], longest)
        tl, tl_err = _cell(r["train_loss"], longest)
        lines.append(f"| {r['batch_size']} | {runs} | {r['predicted_epochs']:.1f} | {te} | "
                     f"{te_err} | {tl} | {tl_err} |")
    return "\n".join(lines)

