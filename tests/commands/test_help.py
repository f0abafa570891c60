"""Every flag of every command says what it does."""

import argparse
import dataclasses
import importlib
import re

import pytest

from legw import flags
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

    assert main(["schedule", "--task", "fashion-mnist-lstm", "--batch-sizes", "8192"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("legw: warning: at global_batch_size 8192 the warmup is 45 of 70")
    assert err.count("\n") == 1


SPECS = {"comm": ("legw.commands.comm", "CommSpec"),
         "autobatch": ("legw.commands.autobatch", "AutobatchSpec"),
         "noise-scale": ("legw.commands.noise_scale", "NoiseScaleSpec"),
         "plan": ("legw.commands.plan", "PlanSpec")}


@pytest.mark.parametrize("command", SPECS)
def test_every_spec_field_is_a_flag_with_its_docstring_as_help(command, capsys):
    """A command built from a spec: each field is a flag (the task the positional TASK),
    helped by its docstring; deprecated spellings are hidden."""
    module, name = SPECS[command]
    spec = getattr(importlib.import_module(module), name)
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    docs = flags.field_docs(spec)
    for f in dataclasses.fields(spec):
        shown = "TASK" if f.name == "task" else flags.flag_name(spec, f.name)
        assert re.search(rf"{shown}(?![\w-])", text), (command, shown)
        assert " ".join(docs[f.name].split()[:4]) in text, (command, f.name)
        for alias in f.metadata.get("aliases", ()):
            assert not re.search(rf"{alias} [A-Z]", text), (command, alias)
