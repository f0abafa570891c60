"""What ``legw comm`` and ``legw plan`` share: the workers, the network and one worker's
compute rate, as a spec their own specs extend (flags from the fields, ``legw.flags``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from legw.flags import NON_NEGATIVE, POSITIVE, POSITIVE_INT, check_fields, flag
from legw.io import check_input_file

DEFAULT_WORKERS = (1, 2, 4, 8, 16, 32, 64)


def machine(metavar: str | None = None, **meta: Any) -> dict[str, Any]:
    """Metadata of a machine flag (``--help`` section ``machines``)."""
    return flag(metavar=metavar, group="machines", **meta)


@dataclass
class MachineSpec:
    """The p-worker prediction's machines: ring all-reduce over an alpha-beta network (latency
    alpha, bandwidth beta), and one worker's training throughput."""

    workers: list[int] = field(default_factory=lambda: list(DEFAULT_WORKERS),
                               metadata=machine("P", check=POSITIVE_INT))
    """Data-parallel worker counts (default 1 2 4 ... 64)."""
    latency_us: float = field(default=25.0, metadata=machine("ALPHA", check=NON_NEGATIVE))
    """Per-message latency in microseconds (default 25, TCP/Ethernet)."""
    bandwidth_gbps: float = field(default=10.0, metadata=machine("BETA", check=POSITIVE))
    """Link bandwidth in Gbit/s (default 10, 10 GbE)."""
    samples_per_second: float | None = field(default=None,
                                             metadata=machine("R", check=POSITIVE))
    """One worker's training throughput (constant in the local batch)."""
    throughput_from: str | None = field(default=None,
                                        metadata=machine("JSON", check=check_input_file))
    """A legw autobatch record: throughput as a function of the local batch."""

    def __post_init__(self) -> None:
        check_fields(self)
        rates = self.rate_flags()
        if len(rates) > 1:
            raise ValueError(f"{', '.join(rates)}: give one compute rate")

    def rate_flags(self) -> list[str]:
        """The flags that gave a compute rate."""
        return [f for f, v in (("--samples-per-second", self.samples_per_second),
                               ("--throughput-from", self.throughput_from)) if v is not None]

    def network(self) -> tuple[float, float]:
        """``(latency in s, bandwidth in bytes/s)``."""
        return self.latency_us * 1e-6, self.bandwidth_gbps * 1e9 / 8

    def given_compute_time(self) -> tuple[Callable[[float], float], str] | None:
        """One worker's step time ``t(local batch)`` and where it comes from, when a flag gives
        it (``None``: measure it, or go without)."""
        from legw.analysis.comm import constant_rate, curve_step_time

        if self.samples_per_second is not None:
            return (constant_rate(self.samples_per_second),
                    f"{self.samples_per_second:g} samples/s (given)")
        if self.throughput_from:
            return curve_step_time(self.throughput_from)
        return None


# --- legacy: legw plan still builds its machine flags by hand (until it has its spec) ---
import argparse  # noqa: E402
from legw.flags import integer, number  # noqa: E402


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
