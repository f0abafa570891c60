"""Interleaved timing for the scripts in ``benchmarks/``: alternate the variants, then medians.

A shared machine's load comes and goes. Timing variant A for a minute and then B for a minute
lets a load spike land on one of them; calling them in rounds (A, B, C, A, B, C, ...) spreads
it over all alike, and the median over the rounds drops the rounds it hit hardest. On such a
machine read the *ratios* of the medians; the absolute figures only where it is idle.

A variant is a function of no arguments that runs once and returns its figures, a dict of
named numbers (:func:`clock` gives the wall and CPU seconds of a call)::

    t = alternate({"off": lambda: clock(run, 0), "on": lambda: clock(run, 50)}, rounds=5)
    t.median("on", "cpu"), t.ratios("off", "wall")["on"]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Figures = dict[str, float]


def clock(fn: Callable[..., object], *args: object) -> Figures:
    """``{"wall": s, "cpu": s}`` of one call ``fn(*args)``. CPU is this process's, summed over
    its threads (``time.process_time``): steadier than the wall clock when jobs share cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


@dataclass
class Timings:
    """Every variant's figures, one entry per call, in call order."""

    samples: dict[str, list[Figures]]

    def values(self, name: str, key: str) -> list[float]:
        return [f[key] for f in self.samples[name]]

    def median(self, name: str, key: str) -> float:
        return statistics.median(self.values(name, key))

    def ratios(self, reference: str, key: str) -> dict[str, float]:
        """``median(variant) / median(reference)`` of ``key`` for every variant."""
        ref = self.median(reference, key)
        return {name: self.median(name, key) / ref for name in self.samples}


def alternate(variants: Mapping[str, Callable[[], Figures]], rounds: int, *, calls: int = 1,
              warmup: int = 0, on_round: Callable[[dict[str, Figures]], None] | None = None
              ) -> Timings:
    """``warmup`` untimed rounds, then ``rounds`` rounds that call each variant ``calls`` times
    in turn, in the mapping's order; ``on_round`` gets each round's last figures per variant
    (to print progress)."""
    if rounds < 1 or calls < 1 or warmup < 0:
        raise ValueError(f"rounds and calls must be >= 1 and warmup >= 0, got rounds {rounds}, "
                         f"calls {calls}, warmup {warmup}")
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    timings = Timings({name: [] for name in variants})
    for _ in range(rounds):
        last: dict[str, Figures] = {}
        for name, fn in variants.items():
            for _ in range(calls):
                last[name] = fn()
                timings.samples[name].append(last[name])
        if on_round is not None:
            on_round(last)
    return timings
