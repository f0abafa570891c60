"""``legw tune TASK --batch-size B``: the tuned baseline at B (peak LR x warmup epochs).

Every trial is a ``legw train`` run; finished trials are skipped when the command is repeated.
The untuned LEGW recipe at B runs as the ``legw`` trial. ``legw tune --out DIR`` alone
continues the study stored in ``DIR/tune.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from legw.commands.sweep import add_run_arguments, command_line, overrides_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    from legw.experiments.tune import SEARCHES
    from legw.tasks import TASKS

    p.add_argument("task", metavar="TASK", nargs="?",
                   help=f"task preset ({', '.join(TASKS)}); omit to continue DIR's study")
    g = p.add_argument_group("search")
    g.add_argument("--batch-size", type=int, metavar="B", help="global batch size to tune at")
    g.add_argument("--trials", type=int, metavar="N", help="trial budget (default 12)")
    g.add_argument("--search", choices=SEARCHES, help="grid (default), random or optuna (TPE)")
    g.add_argument("--lr-factors", type=float, nargs="+", metavar="F",
                   help="peak LRs as multiples of the LEGW peak LR (default 2^-3 ... 2^3)")
    g.add_argument("--warmup-epochs", type=float, nargs="+", metavar="W",
                   help="warmup lengths to try (default 0, w/4, w, 4w; w = LEGW warmup)")
    g.add_argument("--seed", type=int, help="seed of every trial and of the search (default 0)")
    g.add_argument("--optimizer", help="optimizer of every trial (default: the task's)")
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    from legw.experiments.launcher import stop_on_sigterm
    from legw.experiments.tune import TuneSpec, load_tune_spec, run_tune

    stop_on_sigterm()
    out = Path(args.out)
    stored = load_tune_spec(out)
    overrides = overrides_from_args(args)
    if args.optimizer is not None:
        overrides["optimizer"] = args.optimizer
    given = {"task": args.task, "batch_size": args.batch_size, "trials": args.trials,
             "search": args.search, "lr_factors": args.lr_factors,
             "warmup_epochs": args.warmup_epochs, "seed": args.seed,
             "micro_batch_size": args.micro_batch_size, "jobs": args.jobs,
             "threads": args.threads, "data_dir": args.data_dir}
    given = {k: v for k, v in given.items() if v is not None}
    if stored is None:
        if "task" not in given or "batch_size" not in given:
            raise ValueError(f"TASK and --batch-size: no study in {out} to continue; give both")
        spec = TuneSpec(**given, overrides=overrides)
    else:
        fixed = {"task", "batch_size", "search", "lr_factors", "warmup_epochs", "seed"}
        merged = stored.to_dict()
        for key, value in [*given.items(), *(("overrides", {**merged["overrides"], **overrides}),)]:
            if key in fixed | {"overrides"} and value != merged[key]:
                raise ValueError(f"{key}: {value!r} differs from the study in {out} "
                                 f"({merged[key]!r}); start a new study with another --out")
            merged[key] = value
        spec = TuneSpec(**merged)
    result = run_tune(spec, out, command=command_line("tune"),
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    return 1 if any(r["status"] == "failed" for r in result["rows"]) else 0
