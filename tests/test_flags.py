"""Flags derive from dataclass fields: type, help (the field docstring), defaults left out."""

import argparse
import dataclasses

from legw import flags
from legw.commands.train import FIELDS
from legw.experiments.launcher import LaunchOptions
from legw.training.config import TrainConfig


@dataclasses.dataclass
class Example:
    count: int | None = dataclasses.field(default=None, metadata=flags.flag("--n", "N"))
    """How many (help of --n)."""
    sizes: list[int] = dataclasses.field(default_factory=list)
    """Sizes."""
    rule: str | float = "sqrt"
    """A rule name or a number."""
    check: bool = dataclasses.field(default=True, metadata=flags.flag("--no-check", negate=True))
    """Check things."""
    mode: str = dataclasses.field(default="a", metadata=flags.flag(choices=("a", "b")))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    flags.add_arguments(p, Example, ("count", "sizes", "rule", "check", "mode"))
    return p


def test_types_lists_negation_and_choices():
    args = parser().parse_args(["--n", "3", "--sizes", "1", "2", "--rule", "0.75", "--no-check"])
    assert flags.given(args, ("count", "sizes", "rule", "check", "mode")) == \
        {"count": 3, "sizes": [1, 2], "rule": "0.75", "check": False}
    assert parser().parse_args(["--mode", "b"]).mode == "b"


def test_flags_not_given_are_absent():
    assert flags.given(parser().parse_args([]), ("count", "sizes", "check")) == {}


def test_help_is_the_field_docstring():
    text = parser().format_help()
    assert "How many (help of --n)." in text and "Check things." in text
    assert flags.flag_name(Example, "count") == "--n"
    assert flags.flag_name(Example, "sizes") == "--sizes"


def test_every_train_flag_and_launch_flag_has_help():
    docs = flags.field_docs(TrainConfig)
    assert all(docs.get(name) for name in FIELDS), [n for n in FIELDS if not docs.get(n)]
    assert all(flags.field_docs(LaunchOptions).get(n)
               for n in ("micro_batch_size", "jobs", "threads", "data_dir"))


def test_a_train_config_round_trips_through_its_flags():
    from legw.cli import build_parser
    from legw.commands.train import config_from_args

    args = build_parser().parse_args(
        ["train", "ptb-small", "--batch-size", "40", "--milestones", "2", "4.5",
         "--scaling", "linear", "--warmup", "constant", "--no-eval", "--threads", "2",
         "--out", "x"])
    config = config_from_args(args)
    assert config == TrainConfig(task="ptb-small", global_batch_size=40,
                                 milestones=(2.0, 4.5), scaling="linear", warmup="constant",
                                 evaluate=False, num_threads=2, out_dir="x")
