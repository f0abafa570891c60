"""``legw schedule``: the scaled recipe for one or many batch sizes, as a table, JSON or plot.

Pure python apart from the plot (matplotlib, imported only for ``--plot``); never imports torch.
"""

from __future__ import annotations

import argparse
import json
import math

from legw.schedule import DECAYS, WARMUP_RULES, BaseRecipe, Recipe


def add_recipe_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The base-recipe flags, shared with the commands that train."""
    g = p.add_argument_group("base recipe (what was tuned at the base batch size)")
    g.add_argument("--base-batch-size", type=int, required=required, metavar="B0",
                   help="global batch size the recipe was tuned at")
    g.add_argument("--base-lr", type=float, required=required, metavar="LR",
                   help="peak LR at the base batch size")
    g.add_argument("--base-warmup-epochs", type=float, metavar="W0",
                   help="warmup epochs at the base batch size (default 0)")
    g.add_argument("--epochs", type=float, required=required,
                   help="training epochs (the same at every batch size)")
    g.add_argument("--decay", choices=DECAYS, help="decay after warmup (default poly)")
    g.add_argument("--power", type=float, help="poly decay power (default 2)")
    g.add_argument("--end-lr", type=float, help="final LR of poly/cosine decay (default 0)")
    g.add_argument("--milestones", type=float, nargs="+", metavar="EPOCH",
                   help="multistep decay epochs (inside training, after the scaled warmup)")
    g.add_argument("--gamma", type=float,
                   help="multistep factor per milestone / exponential factor per epoch, "
                        "in (0, 1] (default 0.1)")
    g.add_argument("--scaling", metavar="RULE",
                   help="LR scaling: sqrt (default), linear, none, or a power of k")
    g.add_argument("--warmup", choices=WARMUP_RULES, help="warmup rule (default legw)")


_FLAG_TO_FIELD = {
    "base_batch_size": "base_batch_size", "base_lr": "peak_lr",
    "base_warmup_epochs": "warmup_epochs", "epochs": "epochs", "decay": "decay",
    "power": "power", "end_lr": "end_lr", "milestones": "milestones", "gamma": "gamma",
    "scaling": "scaling", "warmup": "warmup",
}


def recipe_from_args(args: argparse.Namespace, base: BaseRecipe | None = None) -> BaseRecipe:
    """Build a :class:`BaseRecipe` from flags; flags override ``base`` where given."""
    fields = base.to_dict() if base is not None else {"warmup_epochs": 0.0}
    for flag, field in _FLAG_TO_FIELD.items():
        value = getattr(args, flag, None)
        if value is not None:
            fields[field] = value
    missing = [f"--{f.replace('_', '-')}" for f, fld in _FLAG_TO_FIELD.items()
               if fld in ("base_batch_size", "peak_lr", "epochs") and fld not in fields]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (or give --task)")
    with _naming_flags():
        return BaseRecipe(**fields)


_FIELD_TO_FLAG = {fld: f"--{flag.replace('_', '-')}" for flag, fld in _FLAG_TO_FIELD.items()}
_FIELD_TO_FLAG.update(global_batch_size="--batch-size", dataset_size="--dataset-size")


class _naming_flags:
    """Re-raise ``ValueError("field: ...")`` as ``"field (--flag): ..."`` for CLI users."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ, err, tb) -> bool:
        if isinstance(err, ValueError):
            field, sep, rest = str(err).partition(": ")
            if sep and field in _FIELD_TO_FLAG:
                raise ValueError(f"{field} ({_FIELD_TO_FLAG[field]}): {rest}") from None
        return False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="start from a task's base recipe and data set size")
    add_recipe_arguments(p, required=False)
    p.add_argument("--dataset-size", type=int, metavar="N", help="training samples per epoch")
    p.add_argument("--batch-size", type=int, nargs="+", metavar="B",
                   help="global batch sizes (default: the base batch size)")
    p.add_argument("--keep-last", action="store_true",
                   help="count a partial last batch per epoch (default: drop it)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE", help="draw the LR curves to a PNG")


def run(args: argparse.Namespace) -> int:
    base, dataset_size = None, args.dataset_size
    if args.task:
        try:
            from legw.tasks import get_task
        except ModuleNotFoundError as e:
            if e.name != "legw.tasks":
                raise
            raise ValueError("--task: task presets are not available in this install") from None
        task = get_task(args.task)
        base = task.recipe
        dataset_size = dataset_size or task.dataset_size
    recipe = recipe_from_args(args, base)
    if dataset_size is None:
        raise ValueError("missing --dataset-size (or give --task)")
    sizes = args.batch_size or [recipe.base_batch_size]
    with _naming_flags():
        recipes = [recipe.scale(b, dataset_size, drop_last=not args.keep_last) for b in sizes]
    if args.plot:  # before printing, so a failed plot leaves no half-reported run
        try:
            plot_recipes(recipes, args.plot)
        except OSError as e:
            raise ValueError(f"--plot: cannot write {args.plot!r}: {e.strerror or e}") from None
    if args.json:
        print(json.dumps([r.summary() for r in recipes], indent=2))
    else:
        print(format_table(recipes))
        if args.plot:
            print(f"wrote {args.plot}")
    return 0


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from legw.io import atomic_path

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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
