"""``legw sweep TASK``: batch sizes x methods x seeds, each a ``legw train`` run; resumable.

``legw sweep --out DIR`` with no other flags continues the sweep stored in ``DIR/sweep.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

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

SWEEP_FIELDS = ("batch_sizes", "methods", "seeds")
LR_OPTIMIZERS = ("adam", "adamw", "lars", "lamb")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from legw.experiments.sweep import SweepSpec
    from legw.tasks import TASKS

    p.add_argument("task", metavar="TASK", nargs="?",
                   help=f"task preset ({', '.join(TASKS)}); omit to continue DIR's sweep")
    g = p.add_argument_group("sweep")
    flags.add_arguments(g, SweepSpec, SWEEP_FIELDS)
    for opt in LR_OPTIMIZERS:
        g.add_argument(f"--{opt}-lr", type=flags.number, metavar="LR",
                       help=f"base LR of the {opt} method, tuned at the base batch")
    add_study_arguments(p)
    add_worker_arguments(p)


def run(args: argparse.Namespace) -> int:
    from legw.experiments.launcher import stop_on_sigterm
    from legw.experiments.sweep import load_spec, merge_spec, run_sweep

    stop_on_sigterm()
    out = study_dir(args)
    study, cluster = worker_options(args)
    stored = load_spec(out)
    given: dict[str, Any] = {
        "task": args.task, **flags.given(args, (*SWEEP_FIELDS, *LAUNCH_FIELDS)),
        "overrides": flags.given(args, RUN_OVERRIDES),
        "optimizer_lrs": {o: getattr(args, f"{o}_lr") for o in LR_OPTIMIZERS
                          if getattr(args, f"{o}_lr") is not None}}
    if stored is None:
        given.setdefault("methods", ["legw", "linear", "sqrt-nowarmup"])
        if args.task is not None and "batch_sizes" not in given:
            raise ValueError("--batch-sizes: give the batch sizes to sweep")
    spec = merge_spec(stored, given, out)
    if cluster.launcher == "slurm":
        return submit("sweep", spec, out, study, cluster)
    rows = run_sweep(spec, out, command=command_line("sweep"),
                     log=lambda m: print(m, file=sys.stderr, flush=True), study=study)
    return 1 if any(r["status"] == "failed" for r in rows) else 0
