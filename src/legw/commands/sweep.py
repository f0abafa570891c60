"""``legw sweep TASK``: batch sizes x methods x seeds, each a ``legw train`` run; resumable.

``legw sweep --out DIR`` with no other flags continues the sweep stored in ``DIR/sweep.json``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

# Flags passed through to every run: flag dest -> TrainConfig field.
_PASS_THROUGH = {
    "epochs": "epochs", "base_batch_size": "base_batch_size", "base_lr": "base_lr",
    "base_warmup_epochs": "base_warmup_epochs", "decay": "decay", "power": "power",
    "end_lr": "end_lr", "milestones": "milestones", "gamma": "gamma",
    "weight_decay": "weight_decay", "momentum": "momentum", "clip_grad_norm": "clip_grad_norm",
    "max_steps": "max_steps", "device": "device", "checkpoint_every": "checkpoint_every",
}


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Base-recipe and run flags shared by ``legw sweep`` and ``legw tune``."""
    from legw.schedule import DECAYS

    g = p.add_argument_group("base recipe overrides (default: the task's)")
    g.add_argument("--epochs", type=float)
    g.add_argument("--base-batch-size", type=int, metavar="B0")
    g.add_argument("--base-lr", type=float, metavar="LR", help="peak LR at the base batch")
    g.add_argument("--base-warmup-epochs", type=float, metavar="W0")
    g.add_argument("--decay", choices=DECAYS)
    g.add_argument("--power", type=float)
    g.add_argument("--end-lr", type=float)
    g.add_argument("--milestones", type=float, nargs="+", metavar="EPOCH")
    g.add_argument("--gamma", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--clip-grad-norm", type=float, metavar="C")
    g = p.add_argument_group("runs")
    g.add_argument("--out", metavar="DIR", required=True, help="experiment directory")
    g.add_argument("--micro-batch-size", type=int, metavar="CAP",
                   help="micro batch = min(B, CAP); the rest by gradient accumulation")
    g.add_argument("--jobs", type=int, metavar="N", help="runs in parallel (default 1)")
    g.add_argument("--threads", type=int, metavar="T",
                   help="torch threads per run (default: cores / jobs)")
    g.add_argument("--data-dir", metavar="DIR")
    g.add_argument("--max-steps", type=int, metavar="N", help="cut every run short (smoke tests)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"))
    g.add_argument("--checkpoint-every", type=int, metavar="STEPS")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {f: getattr(args, a) for a, f in _PASS_THROUGH.items() if getattr(args, a) is not None}


def command_line(name: str) -> str | None:
    """The invoking command line, when this process was started as ``legw NAME ...``."""
    return shlex.join(["legw", *sys.argv[1:]]) if sys.argv[1:2] == [name] else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    from legw.experiments.sweep import METHODS
    from legw.tasks import TASKS

    p.add_argument("task", metavar="TASK", nargs="?",
                   help=f"task preset ({', '.join(TASKS)}); omit to continue DIR's sweep")
    g = p.add_argument_group("sweep")
    g.add_argument("--batch-sizes", type=int, nargs="+", metavar="B")
    g.add_argument("--methods", nargs="+", metavar="M",
                   help=f"{', '.join(METHODS)} (default: legw linear sqrt-nowarmup)")
    g.add_argument("--seeds", type=int, nargs="+", metavar="S", help="default: 0")
    g.add_argument("--adam-lr", type=float, metavar="LR", help="base LR of the adam method")
    g.add_argument("--lars-lr", type=float, metavar="LR", help="base LR of the lars method")
    g.add_argument("--lamb-lr", type=float, metavar="LR", help="base LR of the lamb method")
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    from legw.experiments.launcher import stop_on_sigterm
    from legw.experiments.sweep import load_spec, merge_spec, run_sweep

    stop_on_sigterm()
    out = Path(args.out)
    stored = load_spec(out)
    lrs = {o: getattr(args, f"{o}_lr") for o in ("adam", "lars", "lamb")
           if getattr(args, f"{o}_lr") is not None}
    given = {"task": args.task, "batch_sizes": args.batch_sizes, "methods": args.methods,
             "seeds": args.seeds, "overrides": overrides_from_args(args), "optimizer_lrs": lrs,
             "micro_batch_size": args.micro_batch_size, "jobs": args.jobs,
             "threads": args.threads, "data_dir": args.data_dir}
    if stored is None:
        if args.task is None:
            raise ValueError(f"TASK: no sweep in {out} to continue; give a task")
        given["methods"] = given["methods"] or ["legw", "linear", "sqrt-nowarmup"]
        if not given["batch_sizes"]:
            raise ValueError("--batch-sizes: give the batch sizes to sweep")
    spec = merge_spec(stored, given, out)
    rows = run_sweep(spec, out, command=command_line("sweep"),
                     log=lambda m: print(m, file=sys.stderr, flush=True))
    return 1 if any(r["status"] == "failed" for r in rows) else 0
