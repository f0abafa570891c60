"""``legw train TASK``: train a task preset at any global batch size with the scaled recipe.

Runs the same code as one process (``python -m legw train``) or N under
``torchrun --nproc_per_node N -m legw train``. ``--config FILE`` starts from a ``TrainConfig``
written as JSON (what ``legw sweep`` and ``legw tune`` launch); flags given beside it override
it. Exit status: 0 completed or stopped (``--max-steps``), 2 usage or disk error (one line on
stderr), 3 diverged (non-finite loss; see ``RUN/summary.json``).
"""

from __future__ import annotations

import argparse

from legw import flags
from legw.training.config import TrainConfig, config_fields

GROUPS = {"batch": "batch", "recipe": "base recipe (default: the task's)",
          "optimizer": "optimizer", "run": "run"}
"""The flag groups of ``legw train`` (each field's ``group`` metadata) and their titles."""
FIELDS = tuple(name for group in GROUPS for name in config_fields(group=group))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from legw.tasks import TASKS

    p.add_argument("task", metavar="TASK", nargs="?",
                   help=f"task preset: {', '.join(TASKS)} (optional with --config)")
    p.add_argument("--config", metavar="FILE",
                   help="a TrainConfig as JSON (RUN/launch.json of a sweep or tune run); "
                        "flags given beside it override it")
    for group, title in GROUPS.items():
        flags.add_arguments(p.add_argument_group(title), TrainConfig, config_fields(group=group))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's configuration: ``--config`` (if any), then the flags given, then the task."""
    values = flags.given(args, FIELDS)
    if args.task is not None:
        values["task"] = args.task
    if args.config is not None:
        from legw.io import check_input_file, read_dataclass

        check_input_file(args.config, "--config")
        return read_dataclass(TrainConfig, args.config, **values)
    if "task" not in values:
        raise ValueError("TASK: give a task preset (or --config FILE)")
    return TrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    import os

    from legw.training.trainer import DIVERGED_EXIT_STATUS, train

    if os.environ.get("LEGW_DIE_WITH_PARENT") == "1":  # a sweep's run (under torchrun, too)
        from legw.experiments.launcher import die_with_parent

        die_with_parent()

    summary = train(config_from_args(args))
    return DIVERGED_EXIT_STATUS if summary["status"] == "diverged" else 0
