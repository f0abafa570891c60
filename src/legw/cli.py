"""``legw <command>``: a thin dispatcher over plain functions.

Each command lives in ``legw.commands.<name>`` with ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so ``legw schedule``
starts without importing torch.

User errors (bad flags, invalid recipes, missing files) print one line on stderr and exit 2;
set ``LEGW_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "train": ("legw.commands.train", "train a task preset at a global batch size"),
    "schedule": ("legw.commands.schedule", "print and plot the scaled recipe for batch sizes"),
    "sweep": ("legw.commands.sweep", "batch sizes x methods x seeds, resumable; results.csv"),
    "tune": ("legw.commands.tune", "tune peak LR x warmup at one batch size (the baseline)"),
    "report": ("legw.commands.report", "plots and a markdown report from sweep/tune records"),
    "comm": ("legw.commands.comm", "communication per batch size and a p-worker prediction"),
    "autobatch": ("legw.commands.autobatch", "time micro batch sizes, recommend one"),
    "noise-scale": ("legw.commands.noise_scale", "gradient noise scale during training"),
    "plan": ("legw.commands.plan", "predict epochs, time and cost of bigger batches from the "
             "gradient noise"),
}


class UsageError(Exception):
    """A user error the CLI reports in one line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="legw", description="legw: large-batch training for PyTorch -- "
                     "tune once at a small batch, scale the batch with sqrt LR scaling and "
                     "linear-epoch warmup (LEGW) on SGD, LARS or LAMB.",
                     epilog="legw COMMAND --help for a command's flags; README.md for a tour.")
    from legw import __version__

    parser.add_argument("--version", action="version", version=f"legw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        _command_module(module).add_arguments(p)
    return parser


def _command_module(module: str):
    return importlib.import_module(module)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        return _command_module(args._module).run(args)
    except (UsageError, ValueError, FileNotFoundError) as e:
        if os.environ.get("LEGW_DEBUG"):
            raise
        msg = str(e) if isinstance(e, UsageError) else f"legw: error: {e}"
        print(msg, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("legw: interrupted", file=sys.stderr)
        return 130
