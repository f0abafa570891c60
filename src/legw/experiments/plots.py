"""The experiment figures, drawn from records only (``records`` rows, ``metrics.jsonl``).

Every figure plots a lower-is-better number (test error in percent, or perplexity) and marks
runs that diverged with an ``x`` at the top of the axes, so a missing point is never silent.
Perplexity has no upper bound: a run that blew up without going non-finite (perplexity 1e80,
say) would flatten every other line, so a perplexity axis stops at ``OFF_SCALE`` times the
best value in the figure and such points are drawn as a ``^`` on the top edge.
PNG files are written atomically.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

from legw.experiments.records import OBJECTIVES, objective
from legw.figures import pyplot, save_figure

Series = dict[str, dict[int, list[tuple[float, float]]]]
"""method -> batch size -> [(epoch, value), ...]."""


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


OFF_SCALE = 10.0


def _mark_diverged(ax, xs: list[float], color: str, label: str | None = None,
                   marker: str = "x", y: float = 0.97) -> None:
    """``x`` markers at the top edge of ``ax`` (x in data units, y in axes units)."""
    if xs:
        ax.scatter(xs, [y] * len(xs), marker=marker, s=60, color=color, label=label,
                   transform=ax.get_xaxis_transform(), clip_on=False, zorder=5)


def _off_scale_limits(values: list[float], log_y: bool = False) -> tuple[float, float] | None:
    """(bottom, top) of a y axis that stops below the values more than OFF_SCALE x the best;
    None if there are none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite or min(finite) <= 0 or max(finite) <= OFF_SCALE * min(finite):
        return None
    low = min(finite)
    top = max(v for v in finite if v <= OFF_SCALE * low) * 1.15
    return (low / 1.15 if log_y else low - 0.05 * (top - low)), top


def plot_metric_vs_batch(rows: list[dict[str, Any]], metric: str, path: Path,
                         title: str = "") -> None:
    """Final metric vs batch size (log2 axis), one line per method, mean +- std over seeds."""
    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    limits = _off_scale_limits([v for r in rows if (v := objective(r, metric)) is not None]) \
        if metric == "perplexity" else None
    for i, method in enumerate(methods):
        color = f"C{i}"
        by_batch: dict[int, list[float]] = defaultdict(list)
        diverged = []
        for r in rows:
            if r["method"] != method:
                continue
            v = objective(r, metric)
            if v is not None:
                by_batch[r["batch_size"]].append(v)
            elif r["status"] == "diverged":
                diverged.append(r["batch_size"])
        bs = sorted(by_batch)
        means = [float(np.mean(by_batch[b])) for b in bs]
        stds = [float(np.std(by_batch[b])) for b in bs]
        ax.errorbar(bs, means, yerr=stds, marker="o", capsize=3, color=color, label=method)
        _mark_diverged(ax, sorted(set(diverged)), color)
        if limits is not None:
            _mark_diverged(ax, [b for b, m in zip(bs, means) if m > limits[1]], color,
                           marker="^", y=0.97 - 0.05 * i)  # a row per method: none hides another
    if limits is not None:
        ax.set_ylim(*limits)
    ax.set_xscale("log", base=2)
    sizes = sorted({r["batch_size"] for r in rows if r["batch_size"]})
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set(xlabel="global batch size", ylabel=OBJECTIVES[metric][1] + " (lower is better)",
           title=(title or "final metric vs batch size (x: diverged)")
           + (f" (^: > {OFF_SCALE:g}x the best, off scale)" if limits is not None else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    _save(fig, path)


def plot_series(series: Series, ylabel: str, path: Path, title: str,
                diverged: dict[str, dict[int, float]] | None = None, log_y: bool = False,
                share_y: bool = True, clip: bool = True) -> None:
    """One panel per method, one line per batch size: ``value`` vs epoch. A log axis stops
    above ``OFF_SCALE`` x the smallest value (perplexities that blew up) unless not ``clip``."""
    plt = pyplot()
    methods = list(series)
    cols = min(3, max(1, len(methods)))
    nrows = math.ceil(len(methods) / cols) if methods else 1
    width = max(6.4, 4.6 * cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(width, 3.6 * nrows), squeeze=False,
                             sharey=share_y)
    sizes = sorted({b for per in series.values() for b in per})
    colors = {b: f"C{i}" for i, b in enumerate(sizes)}
    limits = _off_scale_limits([v for per in series.values() for pts in per.values()
                                for _, v in pts], log_y=True) if log_y and clip else None
    for ax, method in zip(axes.flat, methods):
        for b in sorted(series[method]):
            pts = series[method][b]
            ax.plot([e for e, _ in pts], [v for _, v in pts], marker="." if len(pts) < 30
                    else None, color=colors[b], label=f"B={b}")
            if limits is not None:
                _mark_diverged(ax, [e for e, v in pts if v > limits[1]], colors[b], marker="^")
        for b, epoch in (diverged or {}).get(method, {}).items():
            _mark_diverged(ax, [epoch], colors.get(b, "k"))
        ax.set(title=method, xlabel="epoch")
        if log_y:
            from matplotlib.ticker import LogFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False,
                                                      minor_thresholds=(2, 0.5)))
        if limits is not None:  # lines that blew up leave through the top edge
            ax.set_ylim(*limits)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in (axes[:, 0] if share_y else axes.flat):
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(methods):]:
        ax.set_visible(False)
    title += f" (^: > {OFF_SCALE:g}x the best, off scale)" if limits else ""
    fig.suptitle(textwrap.fill(title, width=int(13 * width)))  # ~13 characters per inch
    _save(fig, path)


def _tune_points(result: dict[str, Any]):
    metric = result["metric"]
    pts = []
    for r in result["rows"]:
        if r["method"] != "tuned" or r["status"] in ("pending", "failed"):
            continue
        pts.append((r["peak_lr"], r["warmup_epochs"], objective(r, metric), r["status"]))
    return pts


def plot_landscape(result: dict[str, Any], path: Path) -> None:
    """Heatmap of the final metric over (peak LR, warmup epochs); LEGW marked with a star.

    Axes are the distinct values tried (evenly spaced); a search that is not a grid (too
    many distinct values) is drawn as a scatter over log2(peak LR) and warmup epochs.
    """
    import numpy as np

    plt = pyplot()
    metric, pts = result["metric"], _tune_points(result)
    lr_legw, w_legw = result["legw_point"]["peak_lr"], result["legw_point"]["warmup_epochs"]
    legw_val = objective(result["legw"], metric) if result.get("legw") else None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    lrs = sorted({p[0] for p in pts})
    ws = sorted({p[1] for p in pts})
    label = OBJECTIVES[metric][1]
    if pts and len(lrs) * len(ws) <= 2 * len(pts):
        grid = np.full((len(ws), len(lrs)), np.nan)
        for lr, w, v, status in pts:
            i, j = ws.index(w), lrs.index(lr)
            if v is not None:
                grid[i, j] = v
            elif status == "diverged":
                ax.text(j, i, "x", ha="center", va="center", fontsize=14, color="red")
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis_r")
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i - 0.3, f"{v:.3g}", ha="center", va="center", fontsize=8,
                        color="k" if im.norm(v) < 0.5 else "w")  # dark text on bright cells
        ax.set_xticks(range(len(lrs)), [f"{x:.3g}" for x in lrs], rotation=45)
        ax.set_yticks(range(len(ws)), [f"{w:.3g}" for w in ws])
        x_star = np.interp(math.log2(lr_legw), [math.log2(x) for x in lrs], range(len(lrs)))
        y_star = np.interp(w_legw, ws, range(len(ws))) if len(ws) > 1 else 0
    else:
        done = [p for p in pts if p[2] is not None]
        im = ax.scatter([p[0] for p in done], [p[1] for p in done], c=[p[2] for p in done],
                        cmap="viridis_r", s=80)
        bad = [p for p in pts if p[2] is None]
        if bad:
            ax.scatter([p[0] for p in bad], [p[1] for p in bad], marker="x", color="red", s=60,
                       label="diverged")
        ax.set_xscale("log", base=2)
        x_star, y_star = lr_legw, w_legw
    ax.scatter([x_star], [y_star], marker="*", s=220, color="red", edgecolor="k",
               label="LEGW (untuned)" + (f": {legw_val:.3g}" if legw_val is not None else ""))
    fig.colorbar(im, ax=ax, label=label)
    ax.set(xlabel="peak LR", ylabel="warmup epochs",
           title=f"{result['task']}, batch {result['batch_size']}: tuning landscape")
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def plot_lr_curve(result: dict[str, Any], path: Path) -> None:
    """Metric vs peak LR (one line per warmup), LEGW's untuned result as a horizontal line."""
    plt = pyplot()
    metric, pts = result["metric"], _tune_points(result)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ws = sorted({p[1] for p in pts})
    grid_like = len(ws) <= 6
    for i, w in enumerate(ws if grid_like else [None]):
        sel = sorted(p for p in pts if w is None or p[1] == w)
        ok = [p for p in sel if p[2] is not None]
        ax.plot([p[0] for p in ok], [p[2] for p in ok], marker="o",
                linestyle="-" if grid_like else "none", color=f"C{i}",
                label=f"warmup {w:.3g} ep" if w is not None else "trials")
        _mark_diverged(ax, [p[0] for p in sel if p[3] == "diverged"], f"C{i}")
    legw = result.get("legw")
    legw_val = objective(legw, metric) if legw else None
    if legw_val is not None:
        ax.axhline(legw_val, color="red", linestyle="--", label=f"LEGW untuned: {legw_val:.3g}")
    ax.axvline(result["legw_point"]["peak_lr"], color="red", alpha=0.3, linewidth=4)
    ax.set_xscale("log", base=2)
    lrs = sorted({p[0] for p in pts})
    if 0 < len(lrs) <= 10:  # label the LRs tried (log2 ticks alone can be too sparse)
        ax.set_xticks(lrs, [f"{x:.3g}" for x in lrs])
        ax.minorticks_off()
    ax.set(xlabel="peak LR (tuned)", ylabel=OBJECTIVES[metric][1] + " (lower is better)",
           title=f"{result['task']}, batch {result['batch_size']}: tuned LR vs LEGW "
                 "(x: diverged)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
