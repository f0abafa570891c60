"""``legw noise-scale``: train a task with its recipe and measure the gradient noise scale
``B_simple`` (McCandlish et al. 2018) every few steps."""

from __future__ import annotations

import argparse
from typing import Any

from legw.flags import integer, option
from legw.io import check_writable_file
from legw.training.config import check_seed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", metavar="TASK", help="task preset whose model and data are measured")
    p.add_argument("--batch-size", type=integer, default=256, metavar="B",
                   help="big batch B of each draw (a multiple of the micro batch; default 256)")
    p.add_argument("--micro-batch-size", type=integer, default=16, metavar="b",
                   help="small batch b: gradients of B/b micro batches per draw (default 16)")
    p.add_argument("--draws", type=integer, default=20, help="draws per measurement (default 20)")
    p.add_argument("--points", type=integer, default=5, metavar="K",
                   help="measurements, evenly spaced from step 0 to --steps (default 5)")
    p.add_argument("--steps", type=integer, metavar="S",
                   help="training steps (default: one epoch at the training batch size)")
    p.add_argument("--train-batch-size", type=integer, metavar="B",
                   help="batch of the training run (default: the task's base batch size)")
    p.add_argument("--threads", type=integer, help="torch CPU threads")
    p.add_argument("--seed", type=integer, default=0,
                   help="seed of the model, the batches and the bootstrap (default 0)")
    p.add_argument("--data-dir", help="where the task's data lives (default: its loader's)")
    p.add_argument("--out", default="runs/noise-scale.json", metavar="FILE",
                   help="JSON record, rewritten after each measurement (default "
                        "runs/noise-scale.json)")
    p.add_argument("--plot", default="runs/noise-scale.png", metavar="FILE",
                   help="B_simple vs training step, PNG (default runs/noise-scale.png)")


def _positive_int(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")


def run(args: argparse.Namespace) -> int:
    for name, minimum in (("batch_size", 2), ("micro_batch_size", 1), ("draws", 2),
                          ("points", 1), ("steps", 0), ("train_batch_size", 1), ("threads", 1)):
        _positive_int(option(name), getattr(args, name), minimum)
    if args.batch_size <= args.micro_batch_size or args.batch_size % args.micro_batch_size:
        raise ValueError(f"--batch-size ({args.batch_size}) must be a multiple of "
                         f"--micro-batch-size ({args.micro_batch_size}) and larger")
    check_seed(args.seed)
    check_writable_file(args.out, "--out")
    check_writable_file(args.plot, "--plot")
    import torch

    from legw.analysis.noise_scale import noise_scale_during_training, plot_noise_scale
    from legw.analysis.workload import load_workload
    from legw.io import atomic_write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    w = load_workload(args.task, load_data=True, data_dir=args.data_dir)
    train_bs = args.train_batch_size or w.recipe.base_batch_size
    if train_bs > w.dataset_size:
        raise ValueError(f"--train-batch-size: {train_bs} exceeds the {w.dataset_size} "
                         f"training samples of {w.source or 'the data'}; give a smaller one")
    recipe = w.recipe.scale(train_bs, w.dataset_size)
    steps = recipe.steps_per_epoch if args.steps is None else args.steps
    print(f"{args.task}: data {w.source}, {w.dataset_size} samples per epoch")
    print(f"{args.task}: training at batch {train_bs} for {steps} steps; B_simple at "
          f"{args.points} points from {args.draws} draws of "
          f"{args.batch_size // args.micro_batch_size} x {args.micro_batch_size} samples")
    record: dict[str, Any] = {}
    for record in noise_scale_during_training(
            w, recipe, steps, points=args.points, micro_batch_size=args.micro_batch_size,
            batch_size=args.batch_size, draws=args.draws, seed=args.seed):
        atomic_write_json(args.out, record)  # partial results survive an interruption
        pt = record["points"][-1]
        print(f"step {pt['step']:>6}  B_simple {pt['b_simple']:10.1f} +- {pt['stderr']:8.1f}  "
              f"(68% ci {pt['ci_low']:.1f}..{pt['ci_high']:.1f})  |G|^2 {pt['grad_sq']:.3g}  "
              f"tr(Sigma) {pt['trace_sigma']:.3g}" + ("" if pt["valid"] else "  INVALID"))
    plot_noise_scale(record, args.plot)
    print(f"wrote {args.out} and {args.plot}")
    return 0
