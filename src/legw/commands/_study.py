"""What ``legw sweep`` and ``legw tune`` share: the per-run flags and the command record."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

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


def study_dir(args: argparse.Namespace) -> Path:
    """``--out`` as a path, refused before anything runs when it cannot be written."""
    check_writable_dir(args.out, "--out")
    return Path(args.out)


def command_line(name: str) -> str | None:
    """The invoking command line, when this process was started as ``legw NAME ...``."""
    return shlex.join(["legw", *sys.argv[1:]]) if sys.argv[1:2] == [name] else None
