"""``report.md`` + figures from the records of sweeps and tuning studies (reads, never trains).

Inputs, found in ``DIR`` and its immediate subdirectories: ``results.json`` (a sweep; sweeps
of one task are pooled into one set of figures and tables),
``trials.json`` (a study), and each run's ``metrics.jsonl`` for the curves. Outputs in the
report directory:

* ``metric_vs_batch.png``: final metric vs batch size per method, mean +- std over seeds;
* ``curves.png``: metric vs epoch, a panel per method, a line per batch size (first seed);
* ``lr_schedules.png``: the LR each run actually used (from ``metrics.jsonl``), vs epoch;
* ``noise_scale.png``: the gradient noise scale runs measured online (when they did);
* ``adaptive_gain.png``: the gain of ``--scaling adaptive`` runs (when there are any);
* ``landscape-NAME.png``, ``lr_curve-NAME.png`` per tuning study;
* ``report.md``: the figures, tables and the commands that produced the records.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

from legw.experiments.records import OBJECTIVES, objective, read_rows
from legw.io import atomic_write_text, check_writable_dir
from legw.training.run_dir import RunDir, error_from_accuracy


def find_records(root: Path) -> tuple[list[Path], list[Path]]:
    """``(sweep dirs, tune dirs)`` in ``root`` and its immediate subdirectories."""
    if not root.is_dir():
        raise FileNotFoundError(f"DIR: no directory {root}")
    dirs = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    return ([d for d in dirs if (d / "results.json").is_file()],
            [d for d in dirs if (d / "trials.json").is_file()])


def _curve_value(rec: dict[str, Any]) -> float | None:
    if "test_accuracy" in rec:
        return error_from_accuracy(rec["test_accuracy"])
    return rec.get("valid_perplexity")


class RunSeries(NamedTuple):
    """Per-step and per-epoch curves of a sweep's runs, first seed of each (method, batch):
    ``{method: {batch: [(epoch, value), ...]}}``."""

    evals: dict[str, dict[int, list]]
    """The task's metric at each evaluation."""
    lrs: dict[str, dict[int, list]]
    """The LR of each optimizer step."""
    diverged: dict[str, dict[int, float]]
    """The epoch a diverged run stopped at."""
    noise: dict[str, dict[int, list]]
    """The online ``B_noise`` (runs with 2+ micro-gradients per step)."""
    gains: dict[str, dict[int, list]]
    """The gain of ``--scaling adaptive`` runs."""
    batches: dict[str, dict[int, list]]
    """The global batch of each step of ``--batch-ramp`` runs."""


def _series(sweep_dir: Path, rows: list[dict[str, Any]]) -> RunSeries:
    series = RunSeries(*(defaultdict(dict) for _ in RunSeries._fields))
    first_seed = {}
    for r in rows:
        key = (r["method"], r["batch_size"])
        if r["status"] in ("pending",) or first_seed.setdefault(key, r["seed"]) != r["seed"]:
            continue
        recs = RunDir(sweep_dir / r["run_dir"]).metrics()
        train = [x for x in recs if x.get("kind") == "train"]
        m, b = key
        ev = [(x["epoch"], _curve_value(x)) for x in recs if x.get("kind") == "eval"]
        series.evals[m][b] = [(e, v) for e, v in ev if v is not None and math.isfinite(v)]
        series.lrs[m][b] = [(x["epoch"], x["lr"]) for x in train]
        b_noise = [(x["epoch"], x["b_noise"]) for x in train if x.get("b_noise") is not None
                   and math.isfinite(x["b_noise"]) and x["b_noise"] > 0]
        if b_noise:
            series.noise[m][b] = b_noise
        gains = [(x["epoch"], x["gain"]) for x in train if x.get("gain") is not None]
        if gains:
            series.gains[m][b] = gains
        batches = [(x["epoch"], x["batch_size"]) for x in train if "batch_size" in x]
        if batches:
            series.batches[m][b] = batches
        if r["status"] == "diverged":
            series.diverged[m][b] = series.lrs[m][b][-1][0] if series.lrs[m][b] else 0.0
    return series


def _num(value: float) -> str:
    """Two decimals; a run that blew up (perplexity 1e80) in scientific notation."""
    return f"{value:.2f}" if abs(value) < 1e6 else f"{value:.3g}"


def _fmt(values: list[float]) -> str:
    import numpy as np

    if not values:
        return "-"
    if len(values) == 1:
        return _num(values[0])
    return f"{_num(float(np.mean(values)))} ± {_num(float(np.std(values)))}"


def reading(rows: list[dict[str, Any]], metric: str) -> str:
    """What a sweep shows, in words: each method's final number at the largest batch against
    the base batch, and what the run length means for the claim."""
    label = OBJECTIVES[metric][1].split(" (")[0]
    unit = " %" if metric == "accuracy" else ""
    by: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in rows:
        if (v := objective(r, metric)) is not None:
            by[(r["method"], r["batch_size"])].append(v)
    sizes = sorted({r["batch_size"] for r in rows})
    small, large = sizes[0], sizes[-1]
    base = [v for (m, b), vs in by.items() if b == small for v in vs]
    epochs = sorted({r["epochs"] for r in rows  # of runs that trained to their end
                     if r.get("epochs") and r["status"] in ("completed", "stopped")})
    if not base or small == large:
        return ""
    ref = sum(base) / len(base)
    tolerance = 0.5 if metric == "accuracy" else 0.01 * ref  # points; 1 % of a perplexity
    parts = [f"**What this shows.** At the base batch {small} the {label} is "
             f"{_num(ref)}{unit}."]
    held = []
    for m in dict.fromkeys(r["method"] for r in rows):
        vals = by.get((m, large))
        if vals:
            v = sum(vals) / len(vals)
            mine = [r for r in rows if r["method"] == m and r["batch_size"] == large]
            steps = sum(r["steps"] for r in mine) / len(mine)
            run_epochs = sum(r.get("epochs") or 0 for r in mine) / len(mine)
            parts.append(f"At batch {large} ({large // small}x), `{m}` reaches {_num(v)}{unit} "
                         f"({'+' if v >= ref else ''}{_num(v - ref)} against the base) in "
                         f"{steps:,.0f} steps, {run_epochs:.3g} epochs.")
            if v - ref <= tolerance:
                held.append(f"`{m}`")
        elif any(r["method"] == m and r["batch_size"] == large for r in rows):
            parts.append(f"At batch {large}, `{m}` has no final result (diverged or not run).")
    held_text = ", ".join(held) if held else "none of the rules"
    within = "0.5 points" if metric == "accuracy" else "1 %"
    parts.append(f"Within {within} of the base at batch {large}: {held_text}.")
    if len({round(e, 3) for e in epochs}) == 1:
        parts.append(f"Every run trains {_num(epochs[-1]).rstrip('0').rstrip('.')} epochs: "
                     "equal epochs at every batch size, so larger batches take fewer steps. "
                     "A short run compares the scaling rules with each other; it is not "
                     "evidence that a large batch matches the base at the paper's budgets "
                     "(see docs/results.md for those, and `legw plan` for the epochs a batch "
                     "needs).")
    return " ".join(parts)


def sweep_tables(rows: list[dict[str, Any]], metric: str) -> str:
    """The pivot table (method x batch size) and the per-point table, in markdown."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sizes = sorted({r["batch_size"] for r in rows})
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["batch_size"])].append(r)
    label = OBJECTIVES[metric][1]
    lines = [f"Final {label}, lower is better; mean ± std over completed seeds "
             "(`n/N`: completed / planned seeds; `div`: diverged; a run stopped by "
             "`--max-steps` counts with its last evaluation).", "",
             "| method | " + " | ".join(f"B={b}" for b in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for m in methods:
        cells = []
        for b in sizes:
            g = groups.get((m, b), [])
            vals = [v for r in g if (v := objective(r, metric)) is not None]
            div = sum(r["status"] == "diverged" for r in g)
            cell = f"{_fmt(vals)} ({len(vals)}/{len(g)})" if g else ""
            cells.append(cell + (f" div {div}" if div else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "| method | batch | seeds | status | " + label + " | peak LR | warmup epochs "
              "| warmup steps | steps | wall time (s) |", "|---" * 10 + "|"]
    for m in methods:
        for b in sizes:
            g = groups.get((m, b), [])
            if not g:
                continue
            vals = [v for r in g if (v := objective(r, metric)) is not None]
            status = ", ".join(f"{n} {s}" for s, n in _count(r["status"] for r in g).items())
            steps = _fmt_num([r["steps"] for r in g], "{:.0f}")
            wall = _fmt_num([r["wall_time_s"] for r in g], "{:.0f}")
            lines.append(f"| {m} | {b} | {len(g)} | {status} | {_fmt(vals)} | "
                         f"{_fmt_num([r['peak_lr'] for r in g], '{:.4g}')} | "
                         f"{_fmt_num([r['warmup_epochs'] for r in g], '{:.4g}')} | "
                         f"{_fmt_num([r['warmup_steps'] for r in g], '{:.0f}')} | "
                         f"{steps} | {wall} |")
    return "\n".join(lines)


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in items:
        out[s] = out.get(s, 0) + 1
    return out


def _fmt_num(values: list[Any], fmt: str) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    return fmt.format(mean) if len(vals) == 1 or min(vals) == max(vals) else \
        f"{fmt.format(min(vals))}–{fmt.format(max(vals))}"


def _base_recipe_line(sweep_dir: Path, rows: list[dict[str, Any]]) -> str:
    """The base recipe every run scaled; when pooled sweeps differ (one sweep per optimizer,
    each with its tuned LR; one per epoch budget), each recipe with the methods and batch sizes
    that used it. Then the torch versions and platforms the runs recorded."""
    recipes: dict[str, dict[str, list[int]]] = {}  # recipe -> method -> batch sizes
    versions: list[str] = []
    for r in rows:
        try:
            cfg = RunDir(sweep_dir / r["run_dir"]).config()
            if cfg is None:
                continue
            b = cfg.base_recipe
            text = (f"batch {b['base_batch_size']}, peak LR {b['peak_lr']:g}, warmup "
                    f"{b['warmup_epochs']:g} epochs, {b['epochs']:g} epochs, {b['decay']} "
                    f"decay; optimizer {cfg.optimizer}")
            version = f"torch {cfg.versions['torch']}, {cfg.versions['platform']}"
        except (KeyError, TypeError, ValueError):  # not a legw config.json
            continue
        if version not in versions:
            versions.append(version)
        batches = recipes.setdefault(text, {}).setdefault(r["method"], [])
        if r["batch_size"] not in batches:
            batches.append(r["batch_size"])
    if not recipes:
        return ""
    ran = "; ".join(versions) + "."
    if len(recipes) == 1:
        return (f"Base recipe (before each method's scaling/warmup rule): "
                f"{next(iter(recipes))}; {ran}")
    users = {text: ", ".join(f"{m} at {', '.join(map(str, sorted(bs)))}"
                             for m, bs in methods.items())
             for text, methods in recipes.items()}
    return "\n".join([f"Base recipes (before each method's scaling/warmup rule); {ran}", ""]
                     + [f"- {who}: {text}" for text, who in users.items()])


def write_report(root: Path, out: Path | None = None,
                 extra_tune_dirs: tuple[Path, ...] = ()) -> Path:
    """Read the records under ``root`` and write ``report.md`` + PNGs to ``out`` (or root)."""
    from legw.experiments import plots

    out = out or root
    sweeps, tunes = find_records(root)
    for d in extra_tune_dirs:
        if not (d / "trials.json").is_file():
            raise FileNotFoundError(f"--tune: no trials.json in {d}")
    tunes += [d for d in extra_tune_dirs if d not in tunes]
    if not sweeps and not tunes:
        raise FileNotFoundError(f"DIR: no results.json or trials.json in {root} or its "
                                "subdirectories")
    check_writable_dir(out, "--out")
    records = [(d, read_rows(d / "results.json")) for d in sweeps]  # all checked before
    studies = [(d, read_rows(d / "trials.json")) for d in tunes]    # anything is written
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# legw report: {root.resolve().name}", "", f"Records read from `{root}`; this "
          "report only reads records (`legw report` trains nothing).", ""]
    commands: list[str] = []
    # Sweeps of one task are pooled into one set of figures and tables (e.g. a LEGW sweep over
    # all batch sizes plus a comparison sweep at the largest): run dirs become absolute.
    by_task: dict[str, list[tuple[Path, dict[str, Any]]]] = defaultdict(list)
    pooled: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sdir, (meta, rows) in records:
        for r in rows:
            r["run_dir"] = str((sdir / r["run_dir"]).resolve())
        by_task[meta["task"]].append((sdir, meta))
        pooled[meta["task"]] += rows
    from legw.experiments.sweep import METHODS
    from legw.tasks import get_task

    order = {m: i for i, m in enumerate(METHODS)}
    for i, (task, parts) in enumerate(by_task.items()):
        rows = sorted(pooled[task], key=lambda r: order.get(r["method"], len(order)))
        suffix = "" if len(by_task) == 1 else f"-{i + 1}"
        metric = get_task(task).metric
        figs = {"metric_vs_batch": f"metric_vs_batch{suffix}.png",
                "curves": f"curves{suffix}.png", "lr": f"lr_schedules{suffix}.png"}
        plots.plot_metric_vs_batch(rows, metric, out / figs["metric_vs_batch"],
                                   title=f"{task}: final metric vs batch size (x: diverged)")
        series = _series(Path("."), rows)
        curve_label = "test error (%)" if metric == "accuracy" else "valid perplexity"
        plots.plot_series(series.evals, curve_label, out / figs["curves"],
                          f"{task}: {curve_label} vs epoch (first seed; x: diverged)",
                          series.diverged, log_y=metric == "perplexity")
        plots.plot_series(series.lrs, "learning rate", out / figs["lr"],
                          f"{task}: LR used per step (from metrics.jsonl)", share_y=False)
        if series.noise:
            figs["noise"] = f"noise_scale{suffix}.png"
            plots.plot_series(series.noise, "B_noise (samples)", out / figs["noise"],
                              f"{task}: gradient noise scale measured while training "
                              "(windowed; runs with 2+ micro-gradients per step)")
        if series.batches:
            figs["batch"] = f"batch_ramp{suffix}.png"
            plots.plot_series(series.batches, "global batch", out / figs["batch"],
                              f"{task}: the global batch per step of the batch ramps "
                              "(line: its largest batch)", share_y=False, log_y=True,
                              clip=False)
        if series.gains:
            figs["gain"] = f"adaptive_gain{suffix}.png"
            plots.plot_series(series.gains, "gain r", out / figs["gain"],
                              f"{task}: the adaptive rule's gain per step (1 <= r <= B/B0)")
        dirs = ", ".join(f"`{_rel(sdir, out)}`" for sdir, _ in parts)
        sizes = sorted({r["batch_size"] for r in rows})
        md += [f"## {task}: batch {sizes[0]} -> {sizes[-1]}, methods "
               f"{', '.join(dict.fromkeys(r['method'] for r in rows))} ({dirs})", ""]
        for sdir, meta in parts:
            spec = meta.get("spec", {})
            md += [f"- `{_rel(sdir, out)}`: methods {', '.join(spec.get('methods', []))}; "
                   f"batch sizes {', '.join(map(str, spec.get('batch_sizes', [])))}; seeds "
                   f"{', '.join(map(str, spec.get('seeds', [])))}; overrides "
                   f"`{json.dumps(spec.get('overrides', {}))}`."]
            commands += spec.get("commands", [])
        md += ["", _base_recipe_line(Path("."), rows), "", reading(rows, metric), "",
               f"![final metric vs batch size]({figs['metric_vs_batch']})", "",
               sweep_tables(rows, metric), "",
               f"![metric vs epoch]({figs['curves']})", "",
               f"![LR schedules]({figs['lr']})", ""]
        if "noise" in figs:
            md += ["The gradient noise scale `B_noise = tr(Σ)/|G|²` each run measured online "
                   "(McCandlish et al. 2018): batches well below it scale almost perfectly, "
                   "batches above it need more epochs.", "",
                   f"![gradient noise scale]({figs['noise']})", ""]
        if "batch" in figs:
            md += ["`--batch-ramp`: each step's global batch against the epoch position "
                   "(samples / N; `docs/batch-ramp.md`); the LR above follows it.", "",
                   f"![batch ramps]({figs['batch']})", ""]
        if "gain" in figs:
            md += ["`--scaling adaptive`: the gain `r` is the batch's effective scale, measured "
                   "from `B_noise` (1 at a batch far above it, `k = B/B0` far below); each step "
                   "trains at the base recipe's LR at position `tau` times `r^P` and advances "
                   "`tau` by `r` base steps (by 1 during the base warmup, under the default "
                   "`--adaptive-warmup legw`), and the run ends when `tau` reaches the base "
                   "budget (`docs/adaptive.md`).", "", f"![adaptive gain]({figs['gain']})", ""]
    for tdir, (meta, rows) in studies:
        result = {**meta, "rows": rows}
        name = tdir.name
        plots.plot_landscape(result, out / f"landscape-{name}.png")
        plots.plot_lr_curve(result, out / f"lr_curve-{name}.png")
        md += [f"## Tuning study: {meta['task']} at batch {meta['batch_size']} "
               f"(`{_rel(tdir, out)}`)", "", _tune_summary(result), "",
               f"![tuning landscape](landscape-{name}.png)", "",
               f"![metric vs peak LR](lr_curve-{name}.png)", ""]
        commands += meta.get("spec", {}).get("commands", [])
    commands = list(dict.fromkeys(commands))    # records from before resumes were recorded once
    md += ["## Commands that produced the records", "", "```"] + (commands or ["(not recorded)"]) \
        + ["```", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(md))
    return path


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def _tune_summary(result: dict[str, Any]) -> str:
    metric, label = result["metric"], OBJECTIVES[result["metric"]][1]
    done = [r for r in result["rows"] if r["method"] == "tuned"]
    ok = sorted((r for r in done if objective(r, metric) is not None),
                key=lambda r: objective(r, metric))
    legw, best = result.get("legw"), result.get("best")
    lines = [f"{len(done)} tuned trials ({len(ok)} completed, "
             f"{sum(r['status'] == 'diverged' for r in done)} diverged), "
             f"search `{result.get('spec', {}).get('search')}`.", "",
             f"| trial | peak LR | warmup epochs | {label} | status |", "|---|---|---|---|---|"]
    shown = ([legw] if legw else []) + ok[:10]
    for r in shown:
        v = objective(r, metric)
        lines.append(f"| {r['trial']} | {r['peak_lr']:.4g} | {r['warmup_epochs']:.4g} | "
                     f"{'-' if v is None else _num(v)} | {r['status']} |")
    if best and legw and objective(legw, metric) is not None:
        lines += ["", f"Best tuned: `{best['trial']}` {_num(objective(best, metric))}; "
                      f"LEGW untuned: {_num(objective(legw, metric))}."]
    return "\n".join(lines)
