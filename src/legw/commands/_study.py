"""What ``legw sweep`` and ``legw tune`` share: the per-run flags, the workers' flags (a shared
study, Slurm jobs) and the command record."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from legw import flags
from legw.experiments.launcher import LAUNCH_FIELDS, RUN_OVERRIDES, LaunchOptions
from legw.io import check_writable_dir
from legw.training.config import TrainConfig


def add_study_arguments(p: argparse.ArgumentParser) -> None:
    """The run overrides and launch flags shared by ``legw sweep`` and ``legw tune``."""
    flags.add_arguments(p.add_argument_group("base recipe overrides (default: the task's)"),
                        TrainConfig, RUN_OVERRIDES)
    g = p.add_argument_group("runs")
    g.add_argument("--out", metavar="DIR", required=True, help="experiment directory")
    flags.add_arguments(g, LaunchOptions, LAUNCH_FIELDS)


STUDY_FIELDS = ("storage", "study_name", "heartbeat")
CLUSTER_FIELDS = ("launcher", "workers", "slurm_partition", "nodes", "gpus_per_node", "time",
                  "account", "sbatch")


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of workers on several machines (a ``--storage`` study) and on Slurm."""
    from legw.experiments.coordinator import StudyOptions
    from legw.experiments.slurm import ClusterOptions

    flags.add_arguments(p.add_argument_group("workers on several machines (an Optuna study)"),
                        StudyOptions, STUDY_FIELDS)
    flags.add_arguments(p.add_argument_group("workers as Slurm jobs (submitit)"),
                        ClusterOptions, CLUSTER_FIELDS)


def worker_options(args: argparse.Namespace) -> tuple[Any, Any]:
    """The study and cluster options given, checked together before anything is written."""
    from legw.experiments.coordinator import StudyOptions
    from legw.experiments.slurm import ClusterOptions

    study = StudyOptions(**flags.given(args, STUDY_FIELDS))
    cluster = ClusterOptions(**flags.given(args, CLUSTER_FIELDS))
    if study.storage is not None and getattr(args, "jobs", 1) > 1:
        raise ValueError("--jobs: a worker of a --storage study runs one run at a time; start "
                         "more workers instead (the same command again)")
    stray = [n for n in flags.given(args, CLUSTER_FIELDS[1:]) if cluster.launcher == "local"]
    if stray:
        raise ValueError(f"{flags.option(stray[0])}: only with --launcher slurm (on this "
                         "machine, start more workers by running the same command again)")
    return study, cluster


def submit(kind: str, spec: Any, out: Path, study: Any, cluster: Any) -> int:
    """``--launcher slurm``: submit the workers of ``kind``'s study and say where they write."""
    from legw.experiments.slurm import submit_workers

    jobs = submit_workers(kind, spec, out, study, cluster)
    results = out / ("results.csv" if kind == "sweep" else "trials.csv")
    print(f"submitted {len(jobs)} workers: Slurm jobs {' '.join(j.job_id for j in jobs)}; "
          f"logs in {out / 'slurm'}; results in {results}", file=sys.stderr)
    return 0


def study_dir(args: argparse.Namespace) -> Path:
    """``--out`` as a path, refused before anything runs when it cannot be written."""
    check_writable_dir(args.out, "--out")
    return Path(args.out)


def command_line(name: str) -> str | None:
    """The invoking command line, when this process was started as ``legw NAME ...``."""
    return shlex.join(["legw", *sys.argv[1:]]) if sys.argv[1:2] == [name] else None
