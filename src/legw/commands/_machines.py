"""What ``legw comm`` and ``legw plan`` share: the workers, the network and one worker's
compute rate (flags and their resolution)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from legw.flags import integer, number

DEFAULT_WORKERS = [1, 2, 4, 8, 16, 32, 64]


def add_machine_arguments(group: argparse._ArgumentGroup, *, measure_help: str | None) -> None:
    """--workers, the alpha-beta network and the compute rate (--samples-per-second,
    --throughput-from, and --measure when ``measure_help`` is given)."""
    group.add_argument("--workers", type=integer, nargs="+", metavar="P",
                       default=DEFAULT_WORKERS,
                       help="data-parallel worker counts (default 1 2 4 ... 64)")
    group.add_argument("--latency-us", type=number, default=25.0, metavar="ALPHA",
                       help="per-message latency in microseconds (default 25, TCP/Ethernet)")
    group.add_argument("--bandwidth-gbps", type=number, default=10.0, metavar="BETA",
                       help="link bandwidth in Gbit/s (default 10, 10 GbE)")
    rate = group.add_mutually_exclusive_group()
    rate.add_argument("--samples-per-second", type=number, metavar="R",
                      help="one worker's training throughput (constant in the local batch)")
    rate.add_argument("--throughput-from", metavar="JSON",
                      help="a `legw autobatch` record: throughput as a function of local batch")
    if measure_help:
        rate.add_argument("--measure", action="store_true", help=measure_help)


def check_machine_arguments(args: argparse.Namespace) -> None:
    """The machine flags, by name, before any work."""
    from legw.io import check_input_file

    for p in args.workers:
        if p < 1:
            raise ValueError(f"--workers: must be a positive integer, got {p}")
    if args.samples_per_second is not None and not args.samples_per_second > 0:
        raise ValueError(f"--samples-per-second: must be positive, got "
                         f"{args.samples_per_second:g}")
    if not args.bandwidth_gbps > 0:
        raise ValueError(f"--bandwidth-gbps: must be positive, got {args.bandwidth_gbps:g}")
    if args.latency_us < 0:
        raise ValueError(f"--latency-us: must be >= 0, got {args.latency_us:g}")
    if args.throughput_from:
        check_input_file(args.throughput_from, "--throughput-from")


def network(args: argparse.Namespace) -> tuple[float, float]:
    """``(latency in s, bandwidth in bytes/s)`` from the flags."""
    return args.latency_us * 1e-6, args.bandwidth_gbps * 1e9 / 8


def given_compute_time(args: argparse.Namespace
                       ) -> tuple[Callable[[float], float], str] | None:
    """One worker's step time ``t(local batch)`` and where it comes from, when a flag gives it
    (``None``: measure it, or go without)."""
    from legw.analysis.comm import constant_rate, curve_step_time

    if args.samples_per_second is not None:
        return (constant_rate(args.samples_per_second),
                f"{args.samples_per_second:g} samples/s (given)")
    if args.throughput_from:
        return curve_step_time(args.throughput_from)
    return None
