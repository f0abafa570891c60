"""``legw schedule``: the scaled recipe for one or many batch sizes, as a table, JSON or plot.

Pure python apart from the plot (matplotlib, imported only for ``--plot``); never imports torch.
"""

from __future__ import annotations

import argparse
import json

from legw import flags
from legw.training.config import (
    TrainConfig,
    build_base_recipe,
    config_fields,
    recipe_errors_name_flags,
)

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
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE", help="draw the LR curves to a PNG")


def run(args: argparse.Namespace) -> int:
    base, dataset_size = {"warmup_epochs": 0.0}, args.dataset_size
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
    recipe = build_base_recipe(base, given)
    if dataset_size is None:
        raise ValueError("missing --dataset-size (or give --task)")
    sizes = args.batch_size or [recipe.base_batch_size]
    with recipe_errors_name_flags(global_batch_size="--batch-sizes"):
        recipes = [recipe.scale(b, dataset_size, drop_last=not args.keep_last) for b in sizes]
    from legw.analysis.recipes import format_table

    if args.plot:  # before printing, so a failed plot leaves no half-reported run
        from legw.analysis.recipes import plot_recipes
        from legw.io import check_writable_file

        check_writable_file(args.plot, "--plot")
        plot_recipes(recipes, args.plot)
    if args.json:
        print(json.dumps([r.summary() for r in recipes], indent=2))
    else:
        print(format_table(recipes))
        if args.plot:
            print(f"wrote {args.plot}")
    return 0
