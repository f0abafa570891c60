"""Flags derive from dataclass fields: type, help (the field docstring), defaults left out."""

import argparse
import dataclasses

import pytest

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


@dataclasses.dataclass
class Checked:
    count: int | None = dataclasses.field(
        default=None, metadata=flags.flag("--n", check=flags.POSITIVE_INT, group="main"))
    """How many."""
    sizes: list[int] = dataclasses.field(
        default_factory=lambda: [2], metadata=flags.flag(
            check=flags.POWER_OF_TWO, aliases=("--size",), group="main"))
    """Sizes, powers of two."""
    rate: float = dataclasses.field(
        default=0.5, metadata=flags.flag(check=flags.interval(0, 1, "[)"), group="other"))
    """A fraction."""
    mode: str = dataclasses.field(default="a", metadata=flags.flag(choices=("a", "b")))
    """A mode (no group: not added by add_groups)."""
    quiet: bool = dataclasses.field(
        default=False, metadata=flags.flag(aliases=("--silent",), group="other"))
    """Say less."""

    def __post_init__(self) -> None:
        flags.check_fields(self)


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 0}, "--n: must be a positive integer, got 0"),
    ({"count": True}, "--n: must be a positive integer, got True"),
    ({"sizes": [4, 6]}, "--sizes: must be a power of two, got 6"),
    ({"rate": 1.0}, "--rate: must be a number in [0, 1), got 1"),
    ({"rate": float("nan")}, "--rate: must be a number in [0, 1), got nan"),
    ({"mode": "c"}, "--mode: must be one of a, b, got 'c'"),
])
def test_check_fields_names_the_flag_and_the_value(kwargs, message):
    with pytest.raises(ValueError) as e:
        Checked(**kwargs)
    assert str(e.value) == message


def test_none_is_a_default_and_is_not_checked():
    assert Checked(count=None).count is None
    assert Checked(count=3, sizes=[1, 8], rate=0.0, mode="b").sizes == [1, 8]


@pytest.mark.parametrize("check, good, bad", [
    (flags.POSITIVE, [1e-9, 3], [0, -1.0, float("inf"), "1"]),
    (flags.NON_NEGATIVE, [0, 2.5], [-1e-9, float("nan")]),
    (flags.NON_NEGATIVE_INT, [0, 7], [-1, 1.0]),
    (flags.at_least(2), [2, 10], [1, 2.0]),
    (flags.interval(0, 1, "(]"), [1, 0.5], [0, 1.5]),
    (flags.interval(0, 1), [0, 1], [-0.1, 1.1]),
])
def test_named_checks(check, good, bad):
    for v in good:
        check(v, "--x")
    for v in bad:
        with pytest.raises(ValueError, match=r"^--x: must be .*, got "):
            check(v, "--x")


def test_any_callable_of_value_and_flag_is_a_check():
    def even(value, flag):
        if value % 2:
            raise ValueError(f"{flag}: must be even, got {value}")

    @dataclasses.dataclass
    class Even:
        k: int = dataclasses.field(default=0, metadata=flags.flag(check=even))

        def __post_init__(self):
            flags.check_fields(self)

    with pytest.raises(ValueError, match="^--k: must be even, got 3$"):
        Even(3)


def grouped_parser() -> tuple[argparse.ArgumentParser, tuple[str, ...]]:
    p = argparse.ArgumentParser(prog="legw x")
    return p, flags.add_groups(p, Checked, {"main": None, "other": "other things"})


def test_add_groups_adds_the_grouped_fields_under_their_titles():
    p, names = grouped_parser()
    assert names == ("count", "sizes", "rate", "quiet")
    text = p.format_help()
    assert "other things:\n  --rate RATE" in text and "--mode" not in text
    assert Checked(**flags.given(p.parse_args(["--n", "2", "--quiet"]), names)) == \
        Checked(count=2, quiet=True)


def test_an_alias_is_hidden_and_says_what_replaces_it(capsys):
    p, names = grouped_parser()
    assert "--size " not in p.format_help() and "--silent" not in p.format_help()
    args = p.parse_args(["--size", "4", "8", "--silent"])
    assert flags.given(args, names) == {"sizes": [4, 8], "quiet": True}
    assert capsys.readouterr().err.splitlines() == [
        "legw: --size is deprecated; use --sizes", "legw: --silent is deprecated; use --quiet"]
    p.parse_args(["--sizes", "4"])
    assert capsys.readouterr().err == ""
