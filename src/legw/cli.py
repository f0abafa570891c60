"""``legw <command>``: a thin dispatcher over plain functions.

Each command lives in ``legw.commands.<name>`` with ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so ``legw schedule``
starts without importing torch.

One error boundary: a user or disk error (bad flags, invalid recipes, missing or unreadable
files, an output path that cannot be written, a full disk, out of memory) prints one line on
stderr naming the flag or file and exits 2; set ``LEGW_DEBUG=1`` to see the traceback instead.
Anything else is a bug and keeps its traceback. Other exit statuses: 3 a diverged run
(``legw train``), 1 a failed run in a sweep or study, 130 interrupted, 141 stdout closed early
(``legw ... | head``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import sys
import warnings

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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """legw's own warnings (a recipe that will not train as meant) as one line on stderr."""
    print(f"legw: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run(argv)


def _run(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        code = _command_module(args._module).run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:  # `legw ... | head`: the reader has gone; not an error of legw's
        _discard_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a process killed by it
    except KeyboardInterrupt:
        print("legw: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = user_error(e)
        if message is None or os.environ.get("LEGW_DEBUG"):
            raise
        print(message, file=sys.stderr)
        return 2


def user_error(error: Exception) -> str | None:
    """The one line the CLI prints for a user or disk error, ``None`` for anything else (a bug,
    which keeps its traceback)."""
    if isinstance(error, UsageError):
        return str(error)
    if isinstance(error, ValueError) or (isinstance(error, OSError) and error.errno is None):
        return f"legw: error: {error}"  # legw's own messages name the flag or file
    if isinstance(error, OSError):
        return f"legw: error: {_os_error(error)}"
    from legw.training.device import is_out_of_memory

    if is_out_of_memory(error):
        return ("legw: error: out of memory; use a smaller --micro-batch-size (the global "
                "batch is reached by gradient accumulation) or a smaller batch")
    return None


_OS_HINTS = {
    errno.ENOSPC: "free disk space and run again (legw train --resume continues a run)",
    errno.EDQUOT: "free disk space and run again (legw train --resume continues a run)",
    errno.EACCES: "choose a writable location or change its permissions",
    errno.EPERM: "choose a writable location or change its permissions",
    errno.EROFS: "the file system is read-only; choose another location",
    errno.ENOTDIR: "a component of the path is a file; choose another path",
    errno.EEXIST: "a file is in the way; choose another path",
    errno.EISDIR: "give a file name",
}


def _os_error(error: OSError) -> str:
    where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
    what = error.strerror or str(error)
    hint = _OS_HINTS.get(error.errno, "check the path and the disk")
    return f"{where}: {what}; {hint}" if where else f"{what}; {hint}"


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
