"""``legw report DIR``: ``report.md`` + PNG figures from sweep and tuning records in DIR."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR",
                   help="a sweep or tune directory, or a directory holding several")
    p.add_argument("--tune", metavar="TUNE_DIR", nargs="+", default=[],
                   help="tuning studies to add (found automatically inside DIR)")
    p.add_argument("--out", metavar="OUT", help="where to write report.md and the PNGs "
                   "(default: DIR)")


def run(args: argparse.Namespace) -> int:
    from legw.experiments.report import write_report

    path = write_report(Path(args.dir), Path(args.out) if args.out else None,
                        tuple(Path(t) for t in args.tune))
    print(f"wrote {path}")
    return 0
