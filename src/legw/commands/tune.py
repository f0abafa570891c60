"""``legw tune TASK --batch-size B``: the tuned baseline at B (peak LR x warmup epochs).

Every trial is a ``legw train`` run; finished trials are skipped when the command is repeated.
The untuned LEGW recipe at B runs as the ``legw`` trial. ``legw tune --out DIR`` alone
continues the study stored in ``DIR/tune.json``.
"""

from __future__ import annotations

import argparse
import sys

from legw import flags
from legw.commands._study import (
    add_study_arguments,
    add_worker_arguments,
    command_line,
    study_dir,
    submit,
    worker_options,
)
from legw.experiments.launcher import LAUNCH_FIELDS, RUN_OVERRIDES
from legw.training.config import TrainConfig

SEARCH_FIELDS = ("batch_size", "trials", "search", "lr_factors", "warmup_epochs", "seed")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from legw.experiments.tune import TuneSpec
    from legw.tasks import TASKS

    p.add_argument("task", metavar="TASK", nargs="?",
                   help=f"task preset ({', '.join(TASKS)}); omit to continue DIR's study")
    g = p.add_argument_group("search")
    flags.add_arguments(g, TuneSpec, SEARCH_FIELDS)
    flags.add_arguments(g, TrainConfig, ("optimizer",))
    add_study_arguments(p)
    add_worker_arguments(p)


def run(args: argparse.Namespace) -> int:
    from legw.experiments.launcher import stop_on_sigterm
    from legw.experiments.tune import load_tune_spec, merge_tune_spec, run_tune

    stop_on_sigterm()
    out = study_dir(args)
    study, cluster = worker_options(args)
    given = {"task": args.task, **flags.given(args, (*SEARCH_FIELDS, *LAUNCH_FIELDS)),
             "overrides": flags.given(args, (*RUN_OVERRIDES, "optimizer"))}
    spec = merge_tune_spec(load_tune_spec(out), given, out)
    if cluster.launcher == "slurm":
        if spec.search == "optuna":
            raise ValueError("--search: optuna picks each trial from the results so far; a "
                             "--storage study takes a fixed list: use --search grid or random")
        return submit("tune", spec, out, study, cluster)
    result = run_tune(spec, out, command=command_line("tune"),
                      log=lambda m: print(m, file=sys.stderr, flush=True), study=study)
    return 1 if any(r["status"] == "failed" for r in result["rows"]) else 0
