"""Views of scaled recipes: the ``legw schedule`` table and the LR-curve figure."""

from __future__ import annotations

import math

from legw.figures import pyplot, save_figure
from legw.schedule import Recipe


def format_table(recipes: list[Recipe]) -> str:
    base = recipes[0].base
    head = (f"base: batch {base.base_batch_size}, peak LR {base.peak_lr:g}, warmup "
            f"{base.warmup_epochs:g} epochs, {base.epochs:g} epochs, decay {base.decay}, "
            f"scaling {base.scaling}, warmup rule {base.warmup}; {recipes[0].dataset_size} samples")
    cols = ("batch", "k", "peak LR", "log2 LR", "warmup ep", "warmup steps", "steps/epoch",
            "total steps")
    rows = [(str(r.global_batch_size), f"{base.k(r.global_batch_size):g}", f"{r.peak_lr:.6g}",
             f"{math.log2(r.peak_lr):.3f}", f"{r.warmup_epochs:g}", str(r.warmup_steps),
             str(r.steps_per_epoch), str(r.total_steps)) for r in recipes]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    lines = [head, "  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _plot_steps(r: Recipe, n: int = 800) -> list[float]:
    """Positions to draw: a linear grid (epoch panel), a geometric one (log step panel) and
    the corners (last warmup step, first step after it, milestones, the end), so kinks are sharp.
    """
    t_end = r.total_steps
    lin = [t_end * i / n for i in range(n + 1)]
    geo = [(t_end + 1) ** (i / n) - 1 for i in range(n + 1)]
    corners = [r.warmup_steps - 1, r.warmup_steps, t_end - 1, t_end]
    for m in r.milestone_steps:
        corners += [m - 1e-6, m]
    return sorted({s for s in lin + geo + corners if 0 <= s <= t_end})


def plot_recipes(recipes: list[Recipe], path: str) -> None:
    """LR vs epoch and LR vs step (log axis, ``x = step + 1``), one line per batch size, with
    the end of warmup marked, to a PNG (written atomically)."""
    plt = pyplot()
    fig, (ax_e, ax_s) = plt.subplots(1, 2, figsize=(12, 4.6))
    for r in recipes:
        steps = _plot_steps(r)
        lrs = [r.lr_at_step(s) for s in steps]
        label = f"B={r.global_batch_size}: peak {r.peak_lr:.3g}, warmup {r.warmup_steps} steps"
        (line,) = ax_e.plot([r.epoch_at_step(s) for s in steps], lrs, lw=1.4, label=label)
        ax_s.plot([s + 1 for s in steps], lrs, lw=1.4, color=line.get_color())
        if r.warmup_steps:  # the peak is reached at step W - 1, i.e. x = W on the step axis
            ax_e.plot(r.epoch_at_step(r.warmup_steps), r.peak_lr, "o", ms=4,
                      color=line.get_color())
            ax_s.plot(r.warmup_steps, r.peak_lr, "o", ms=4, color=line.get_color())
    ax_e.set(xlabel="epoch", ylabel="learning rate", title="LR vs epoch")
    ax_s.set(xlabel="optimizer step + 1 (log scale)", ylabel="learning rate",
             title="LR vs step (dot: end of warmup)", xscale="log")
    for ax in (ax_e, ax_s):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    ax_e.legend(fontsize=8)
    b = recipes[0].base
    fig.suptitle(f"{b.scaling} LR scaling, {b.warmup} warmup, {b.decay} decay; base batch "
                 f"{b.base_batch_size}, peak LR {b.peak_lr:g}, warmup {b.warmup_epochs:g} epochs, "
                 f"{recipes[0].dataset_size} samples")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
