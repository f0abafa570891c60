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

