"""``legw schedule``: the scaled recipe for one or many batch sizes, as a table, JSON or plot.

With ``--optimizer-scaling srr`` it also prints the optimizer's other batch-dependent
hyperparameters at each batch (:mod:`legw.hyper`: Adam's betas ``1 - k (1 - beta)`` and
``eps / sqrt(k)``, Malladi et al. 2022, arXiv 2205.10287; weight decay ``lambda k / r``; an EMA's
``rho ** k``, Busbridge et al. 2023, arXiv 2307.13813).

Pure python apart from the plot (matplotlib, imported only for ``--plot``); never imports torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from legw import flags
from legw.hyper import MAX_ONE_MINUS_BETA, OPTIMIZER_SCALINGS, Hyperparameters
from legw.tasks import Task
from legw.training.config import (
    TrainConfig,
    build_base_recipe,
    config_fields,
    recipe_errors_name_flags,
)
from legw.training.spec import MOMENT_OPTIMIZERS, optimizer_hyperparameters

OPTIMIZER_NAMES = ("sgd", "lars", *MOMENT_OPTIMIZERS)
"""``legw.optim.OPTIMIZERS``' names (this command does not import torch)."""

RECIPE_FIELDS = config_fields(group="recipe")

# The flags that must be given when no --task supplies them.
_REQUIRED = ("base_batch_size", "base_lr", "epochs")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="start from a task's base recipe and data set size")
    g = p.add_argument_group("base recipe (from --task; without it give --base-batch-size, "
                             "--base-lr, --epochs)")
    flags.add_arguments(g, TrainConfig, RECIPE_FIELDS)
    p.add_argument("--dataset-size", type=flags.integer, metavar="N",
                   help="training samples per epoch")
    p.add_argument("--batch-sizes", dest="batch_size", type=flags.integer, nargs="+",
                   metavar="B", help="global batch sizes (default: the base batch size)")
    flags.add_deprecated(p, "--batch-size", "--batch-sizes", dest="batch_size",
                         type=flags.integer, nargs="+", metavar="B")
    p.add_argument("--keep-last", action="store_true",
                   help="count a partial last batch per epoch (default: drop it)")
    h = p.add_argument_group("the optimizer's other hyperparameters at B0 (legw.hyper)")
    h.add_argument("--optimizer-scaling", choices=OPTIMIZER_SCALINGS, default="none",
                   help="srr: also print the betas, epsilon, weight decay (and EMA decay) "
                        "scaled to each batch; none (default): the LR recipe only")
    h.add_argument("--optimizer", choices=OPTIMIZER_NAMES,
                   help="whose hyperparameters: the Adam family has betas and an epsilon, SGD "
                        "and LARS only a weight decay, Adam's an L2 term kept as it is "
                        "(default: the task's, else adamw)")
    h.add_argument("--betas", type=flags.number, nargs=2, metavar=("B1", "B2"),
                   help="Adam/AdamW/LAMB betas at B0 (0.9 0.999)")
    h.add_argument("--eps", type=flags.number,
                   help="their epsilon at B0 (torch's default: 1e-8; LAMB 1e-6)")
    h.add_argument("--weight-decay", type=flags.number, metavar="WD",
                   help="weight decay at B0 (default: the task's, else 0)")
    h.add_argument("--ema-decay", type=flags.number, metavar="RHO",
                   help="a model EMA's decay per step at B0 (default: no EMA column)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE", help="draw the LR curves to a PNG")


def run(args: argparse.Namespace) -> int:
    base, dataset_size, task = {"warmup_epochs": 0.0}, args.dataset_size, None
    if args.task:
        from legw.tasks import get_task

        task = get_task(args.task)
        base = task.recipe.to_dict()
        if dataset_size is None:  # 0 is a value (refused below), not "unset"
            dataset_size = task.dataset_size
    given = flags.given(args, RECIPE_FIELDS)
    if not args.task:
        missing = [flags.flag_name(TrainConfig, f) for f in _REQUIRED if f not in given]
        if missing:
            raise ValueError(f"missing {', '.join(missing)} (or give --task)")
    hyper = _base_hyperparameters(args, task)
    recipe = build_base_recipe(base, given)
    if dataset_size is None:
        raise ValueError("missing --dataset-size (or give --task)")
    sizes = args.batch_size or [recipe.base_batch_size]
    with recipe_errors_name_flags(global_batch_size="--batch-sizes"):
        recipes = [recipe.scale(b, dataset_size, drop_last=not args.keep_last) for b in sizes]
    scaled = [r.hyperparameters(hyper, args.optimizer_scaling) for r in recipes]
    from legw.analysis.recipes import format_table

    if args.plot:  # before printing, so a failed plot leaves no half-reported run
        from legw.analysis.recipes import plot_recipes
        from legw.io import check_writable_file

        check_writable_file(args.plot, "--plot")
        plot_recipes(recipes, args.plot)
    if args.json:
        rows = [r.summary() for r in recipes]
        if args.optimizer_scaling != "none":
            rows = [{**row, "hyperparameters": h.to_dict()} for row, h in zip(rows, scaled)]
        print(json.dumps(rows, indent=2))
    else:
        table = format_table(recipes)
        if args.optimizer_scaling != "none":
            table = _with_hyperparameters(table, hyper, scaled)
        print(table)
        if args.plot:
            print(f"wrote {args.plot}")
    return 0


def _base_hyperparameters(args: argparse.Namespace, task: Task | None) -> Hyperparameters:
    """The base values of ``--betas --eps --weight-decay --ema-decay`` for ``--optimizer``
    (defaults: torch's betas and epsilon, the task's decay), each checked."""
    if args.optimizer_scaling == "none":
        for flag in ("optimizer", "betas", "eps", "weight_decay", "ema_decay"):
            if getattr(args, flag) is not None:
                name = "--" + flag.replace("_", "-")
                raise ValueError(f"{name}: prints nothing without --optimizer-scaling srr; "
                                 f"add it, or drop {name}")
    optimizer = args.optimizer or (task.optimizer if task else "adamw")
    if optimizer not in MOMENT_OPTIMIZERS:
        for flag in ("betas", "eps"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag}: {optimizer} has no {flag} (only the Adam family: "
                                 f"{', '.join(MOMENT_OPTIMIZERS)}); drop it or give --optimizer")
    weight_decay = args.weight_decay
    if weight_decay is None:
        weight_decay = task.weight_decay if task else 0.0
    base = optimizer_hyperparameters(optimizer, weight_decay,
                                     tuple(args.betas) if args.betas is not None else None,
                                     args.eps)
    for beta in base.betas or ():
        flags.interval(0, 1, "[)")(beta, "--betas")
    if base.eps is not None:
        flags.NON_NEGATIVE(base.eps, "--eps")
    flags.NON_NEGATIVE(weight_decay, "--weight-decay")
    if args.ema_decay is not None:
        flags.interval(0, 1, "[)")(args.ema_decay, "--ema-decay")
    return dataclasses.replace(base, ema_decay=args.ema_decay)


def _with_hyperparameters(table: str, base: Hyperparameters,
                          scaled: list[Hyperparameters]) -> str:
    """``format_table``'s table with a column per scaled hyperparameter appended (every line of
    it has the same width), a clamped beta marked ``*`` and explained in a footnote."""
    moments = base.betas is not None
    cols = (["beta1", "beta2", "eps"] if moments else []) + ["weight decay"]
    if base.ema_decay is not None:
        cols.append("EMA decay")
    rows = []
    for h in scaled:
        row = []
        if moments:
            row += [f"{b:.6g}" + ("*" if f"betas[{i}]" in h.clamped else "")
                    for i, b in enumerate(h.betas)] + [f"{h.eps:.6g}"]
        row.append(f"{h.weight_decay:.6g}")
        rows.append(row + ([f"{h.ema_decay:.8g}"] if h.ema_decay is not None else []))
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    head, *lines = table.splitlines()
    head += ("; optimizer scaling srr from "
             + (f"betas {base.betas[0]:g} {base.betas[1]:g}, eps {base.eps:g}, " if moments else "")
             + f"weight decay {base.weight_decay:g}"
             + (f", EMA decay {base.ema_decay:g}" if base.ema_decay is not None else ""))
    out = [head] + [line + "  " + "  ".join(v.rjust(w) for v, w in zip(row, widths))
                    for line, row in zip(lines, [cols, *rows])]
    if any(h.clamped for h in scaled):
        out.append(f"* clamped: k (1 - beta) > {MAX_ONE_MINUS_BETA:g} is past the square-root "
                   f"rule's limit; held at 1 - beta = {MAX_ONE_MINUS_BETA:g}")
    return "\n".join(out)
