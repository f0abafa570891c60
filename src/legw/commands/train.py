"""``legw train TASK``: train a task preset at any global batch size with the scaled recipe.

Runs the same code as one process (``python -m legw train``) or N under
``torchrun --nproc_per_node N -m legw train``. Exit status: 0 completed, 2 usage error,
3 diverged (non-finite loss; see ``RUN/summary.json``).
"""

from __future__ import annotations

import argparse

from legw.commands.schedule import add_recipe_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    from legw.tasks import TASKS

    p.add_argument("task", metavar="TASK", help=f"task preset: {', '.join(TASKS)}")
    g = p.add_argument_group("batch")
    g.add_argument("--batch-size", type=int, metavar="B",
                   help="global batch size, over all processes (default: the base batch)")
    g.add_argument("--micro-batch-size", type=int, metavar="b",
                   help="per-process batch per forward pass (default: B / world size); "
                        "B / (b x world size) micro-steps are accumulated per step")
    add_recipe_arguments(p, required=False)
    g = p.add_argument_group("optimizer")
    g.add_argument("--optimizer", help="sgd, adam, adamw, lars or lamb (default: the task's)")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--momentum", type=float, help="momentum of sgd / lars")
    g.add_argument("--clip-grad-norm", type=float, metavar="C",
                   help="clip the global gradient norm (0: off; default: the task's)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")
    g.add_argument("--out", metavar="DIR", help="run directory (default runs/TASK-bB-sSEED)")
    g.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in the run directory")
    g.add_argument("--data-dir", metavar="DIR", help="where the data set files are")
    g.add_argument("--quiet", action="store_true", help="no progress bar; a line per epoch")
    g.add_argument("--max-steps", type=int, metavar="N",
                   help="stop after N optimizer steps (the schedule still spans all epochs)")
    g.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                   help="also checkpoint every STEPS steps (default: each epoch end only)")
    g.add_argument("--keep-checkpoints", type=int, default=2, metavar="K")
    g.add_argument("--threads", type=int, metavar="N", help="torch threads per process")
    g.add_argument("--no-eval", action="store_true",
                   help="skip evaluation (training only, e.g. for benchmarks)")


def config_from_args(args: argparse.Namespace):
    from legw.training.config import TrainConfig

    return TrainConfig(
        task=args.task, global_batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size, optimizer=args.optimizer,
        scaling=args.scaling, warmup=args.warmup, epochs=args.epochs,
        base_batch_size=args.base_batch_size, base_lr=args.base_lr,
        base_warmup_epochs=args.base_warmup_epochs, decay=args.decay, power=args.power,
        end_lr=args.end_lr, milestones=args.milestones, gamma=args.gamma,
        weight_decay=args.weight_decay, momentum=args.momentum,
        clip_grad_norm=args.clip_grad_norm, seed=args.seed, device=args.device,
        out_dir=args.out, resume=args.resume, quiet=args.quiet,
        keep_checkpoints=args.keep_checkpoints, checkpoint_every=args.checkpoint_every,
        max_steps=args.max_steps, data_dir=args.data_dir, num_threads=args.threads,
        evaluate=not args.no_eval)


def run(args: argparse.Namespace) -> int:
    from legw.training.trainer import DIVERGED_EXIT_STATUS, train

    summary = train(config_from_args(args))
    return DIVERGED_EXIT_STATUS if summary["status"] == "diverged" else 0
