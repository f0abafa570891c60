"""``legw sweep TASK``: batch sizes x methods x seeds, each a ``legw train`` run; resumable.

``legw sweep --out DIR`` with no other flags continues the sweep stored in ``DIR/sweep.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from legw import flags
from legw.commands._study import add_study_arguments, command_line, study_dir
from legw.experiments.launcher import LAUNCH_FIELDS, RUN_OVERRIDES

SWEEP_FIELDS = ("batch_sizes", "methods", "seeds")
STUDY_FIELDS = ("storage", "study_name", "heartbeat")
CLUSTER_FIELDS = ("launcher", "workers", "slurm_partition", "nodes", "gpus_per_node", "time",
                  "account", "sbatch")
LR_OPTIMIZERS = ("adam", "lars", "lamb")


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
    from legw.experiments.coordinator import StudyOptions

    flags.add_arguments(p.add_argument_group("workers on several machines (an Optuna study)"),
                        StudyOptions, STUDY_FIELDS)
    from legw.experiments.slurm import ClusterOptions

    flags.add_arguments(p.add_argument_group("workers as Slurm jobs (submitit)"),
                        ClusterOptions, CLUSTER_FIELDS)


def run(args: argparse.Namespace) -> int:
    from legw.experiments.coordinator import StudyOptions
    from legw.experiments.launcher import stop_on_sigterm
    from legw.experiments.slurm import ClusterOptions, submit_workers
    from legw.experiments.sweep import load_spec, merge_spec, run_sweep

    stop_on_sigterm()
    out = study_dir(args)
    study = StudyOptions(**flags.given(args, STUDY_FIELDS))
    cluster = ClusterOptions(**flags.given(args, CLUSTER_FIELDS))
    if study.storage is not None and getattr(args, "jobs", 1) > 1:
        raise ValueError("--jobs: a worker of a --storage study runs one run at a time; start "
                         "more workers instead (the same command again)")
    stray = [n for n in flags.given(args, CLUSTER_FIELDS[1:]) if cluster.launcher == "local"]
    if stray:
        raise ValueError(f"{flags.option(stray[0])}: only with --launcher slurm (on this "
                         "machine, start more workers by running the same command again)")
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
        jobs = submit_workers(spec, out, study, cluster)
        print(f"submitted {len(jobs)} workers: Slurm jobs {' '.join(j.job_id for j in jobs)}; "
              f"logs in {out / 'slurm'}; results in {out / 'results.csv'}", file=sys.stderr)
        return 0
    rows = run_sweep(spec, out, command=command_line("sweep"),
                     log=lambda m: print(m, file=sys.stderr, flush=True), study=study)
    return 1 if any(r["status"] == "failed" for r in rows) else 0
