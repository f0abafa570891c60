"""Every flag of every command says what it does."""

import argparse

from legw.cli import build_parser


def test_every_flag_and_argument_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [(name, a.option_strings or a.dest) for name, sp in sub.choices.items()
               for a in sp._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert missing == []
    assert "large-batch training" in parser.format_help()
    assert "thin dispatcher" not in parser.format_help()


def test_recipe_warnings_are_one_line_at_the_cli(capsys):
    from legw.cli import main

    assert main(["schedule", "--task", "fashion-mnist-lstm", "--batch-size", "8192"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("legw: warning: at global_batch_size 8192 the warmup is 45 of 70")
    assert err.count("\n") == 1
