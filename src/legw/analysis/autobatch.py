"""Find the micro batch size that reaches this device's peak training throughput.

The talk's advice for large-batch training on real machines: the *global* batch is a
statistical choice (the recipe), the *local* (micro) batch is a hardware choice -- pick the
smallest micro batch that keeps the device at its peak, and reach the global batch with
gradient accumulation and data-parallel ranks::

    global_batch_size = micro_batch_size * accumulation_steps * world_size

Throughput is measured, not assumed: on a small CPU the largest batch is often *slower* per
sample than a medium one (caches), on an accelerator throughput saturates. The timing function
is injected, so the selection logic is independent of torch (``time_training_step`` is the
real one).

Selection rule: ``peak`` = the size with the highest median throughput (the smallest such size
on a tie); ``chosen`` = the smallest size whose throughput is at least ``(1 - tolerance)`` of
the peak.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from legw.figures import pyplot, save_figure

OK, OOM, SKIPPED = "ok", "out of memory", "skipped"

STATISTICS = {"median": statistics.median, "min": min}
"""How the repeats of one size are summarised: the median (default), or the minimum, which is
the better estimate of the intrinsic step time when other processes share the cores (noise
from contention only ever adds time)."""


def powers_of_two(smallest: int, largest: int) -> list[int]:
    """``[smallest, 2*smallest, ...]`` up to ``largest`` (both must be powers of two)."""
    for name, v in (("smallest", smallest), ("largest", largest)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v & (v - 1):
            raise ValueError(f"{name} micro batch size must be a power of two, got {v!r}")
    if largest < smallest:
        raise ValueError(f"largest micro batch size {largest} < smallest {smallest}")
    return doublings(smallest, largest)


def doublings(smallest: int, largest: int) -> list[int]:
    """``smallest`` doubled while it stays within ``largest`` (``smallest`` itself always),
    for sizes that are no power of two (PTB's micro batch 10)."""
    sizes = [smallest]
    while sizes[-1] * 2 <= largest:
        sizes.append(sizes[-1] * 2)
    return sizes


@dataclass
class ThroughputPoint:
    """Timings of one micro batch size: seconds per training step, one entry per repeat."""

    micro_batch_size: int
    status: str = OK
    step_seconds: list[float] = field(default_factory=list)
    statistic: str = "median"
    """Key of :data:`STATISTICS` that turns the repeats into one step time."""

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.step_seconds) if self.step_seconds else None

    @property
    def step_s(self) -> float | None:
        return STATISTICS[self.statistic](self.step_seconds) if self.step_seconds else None

    @property
    def samples_per_s(self) -> float | None:
        t = self.step_s
        return None if t is None or self.status != OK else self.micro_batch_size / t

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median_s": self.median_s,
                "min_s": min(self.step_seconds) if self.step_seconds else None,
                "step_s": self.step_s, "samples_per_s": self.samples_per_s}


def measure_curve(time_steps: Callable[[int, int], Sequence[float]], sizes: Sequence[int], *,
                  repeats: int = 5, stop_after_oom: bool = True,
                  interleave: bool = True, statistic: str = "median") -> list[ThroughputPoint]:
    """Time ``repeats`` training steps at each micro batch size.

    ``time_steps(micro_batch_size, n)`` runs and returns the seconds of ``n`` timed steps.
    With ``interleave`` (the default) the sizes are visited round-robin, one step each per
    round, so a load spike from other processes hits all sizes alike instead of one size's
    whole measurement. ``statistic`` (a key of :data:`STATISTICS`) summarises the repeats.
    An out-of-memory error (:func:`legw.training.device.is_out_of_memory`) marks the size
    and, with ``stop_after_oom``, every larger size as skipped; other errors propagate.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if not sizes:
        raise ValueError("sizes must not be empty")
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(STATISTICS)}, got {statistic!r}")
    points = {size: ThroughputPoint(size, statistic=statistic) for size in sorted(sizes)}
    rounds = [(1, r) for r in range(repeats)] if interleave else [(repeats, 0)]
    for n, _ in rounds:
        for size, point in points.items():
            if point.status != OK:
                continue
            try:
                seconds = [float(s) for s in time_steps(size, n)]
            except Exception as e:  # only memory errors are expected; the rest re-raise
                from legw.training.device import is_out_of_memory  # torch only when timing

                if not is_out_of_memory(e):
                    raise
                point.status, point.step_seconds = OOM, []
                if stop_after_oom:
                    for bigger in points.values():
                        if bigger.micro_batch_size > size and bigger.status == OK:
                            bigger.status = (f"{SKIPPED} (larger than {size}, which ran out "
                                             "of memory)")
                            bigger.step_seconds = []
                continue
            if len(seconds) != n or not all(math.isfinite(t) and t > 0 for t in seconds):
                raise ValueError(f"step times for micro batch {size} must be {n} positive "
                                 f"numbers, got {seconds}")
            point.step_seconds += seconds
    return list(points.values())


@dataclass(frozen=True)
class Selection:
    """The peak of a throughput curve and the smallest size within ``tolerance`` of it."""

    peak_micro_batch_size: int
    peak_samples_per_s: float
    chosen_micro_batch_size: int
    chosen_samples_per_s: float
    tolerance: float


def select_micro_batch(points: Sequence[ThroughputPoint], tolerance: float = 0.05) -> Selection:
    """Peak = highest median throughput (smallest size on ties); chosen = smallest size with
    ``throughput >= (1 - tolerance) * peak``."""
    if not (math.isfinite(tolerance) and 0 <= tolerance < 1):
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
    ok = sorted((p for p in points if p.samples_per_s is not None),
                key=lambda p: p.micro_batch_size)
    if not ok:
        raise ValueError("no micro batch size could be timed (all ran out of memory?)")
    peak = max(ok, key=lambda p: p.samples_per_s)  # max keeps the first (smallest) on ties
    threshold = (1 - tolerance) * peak.samples_per_s
    chosen = next(p for p in ok if p.samples_per_s >= threshold)
    return Selection(peak.micro_batch_size, peak.samples_per_s, chosen.micro_batch_size,
                     chosen.samples_per_s, tolerance)


@dataclass(frozen=True)
class BatchPlan:
    """``global_batch_size = micro_batch_size * accumulation_steps * world_size``."""

    global_batch_size: int
    world_size: int
    micro_batch_size: int
    accumulation_steps: int

    @property
    def per_rank_batch_size(self) -> int:
        return self.micro_batch_size * self.accumulation_steps


def plan_batches(global_batch_size: int, target_micro_batch_size: int,
                 world_size: int = 1) -> BatchPlan:
    """Fewest accumulation steps whose micro batch divides the per-rank batch and is at most
    ``target_micro_batch_size``."""
    for name, v in (("global_batch_size", global_batch_size), ("world_size", world_size),
                    ("target_micro_batch_size", target_micro_batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if global_batch_size % world_size:
        raise ValueError(f"global_batch_size {global_batch_size} is not divisible by "
                         f"world_size {world_size}")
    per_rank = global_batch_size // world_size
    accumulation = math.ceil(per_rank / target_micro_batch_size)
    while per_rank % accumulation:
        accumulation += 1
    return BatchPlan(global_batch_size, world_size, per_rank // accumulation, accumulation)


def time_training_step(model: Any, loss_fn: Callable[[Any, Any], Any],
                       make_batch: Callable[[int], tuple[Any, Any]], *, lr: float = 1e-3,
                       warmup: int = 1) -> Callable[[int, int], list[float]]:
    """A ``time_steps(micro_batch_size, repeats)`` for :func:`measure_curve` on a torch model.

    Each timed step is forward + backward + ``torch.optim.SGD`` (momentum 0.9) step on one
    micro batch from ``make_batch(n) -> (inputs, targets)``; ``warmup`` untimed steps at the
    first visit of a size. The batch is built (once per size) before the clock starts, so
    data loading is not timed. The model is trained on random data: use a throwaway copy.
    """
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    device = next(model.parameters()).device

    def step(inputs: Any, targets: Any) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), targets).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    batches: dict[int, tuple[Any, Any]] = {}

    def time_steps(micro_batch_size: int, repeats: int) -> list[float]:
        model.train()
        if micro_batch_size not in batches:  # first visit: build the batch, warm up
            batches[micro_batch_size] = make_batch(micro_batch_size)
            for _ in range(warmup):
                step(*batches[micro_batch_size])
        inputs, targets = batches[micro_batch_size]
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step(inputs, targets)
            seconds.append(time.perf_counter() - t0)
        return seconds

    return time_steps


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def load_average() -> float | None:
    """The 1-minute load average (other processes competing for the cores), when known."""
    import os

    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def format_report(record: dict[str, Any]) -> str:
    lines = [f"{record['task']}: training-step throughput on {record['device']} "
             f"({_threads(record['threads'])}), {record['statistic']} of {record['repeats']} "
             "interleaved steps"]
    load = record.get("load_average_before_after")
    if load and None not in load:
        lines[0] += f"; load average {load[0]:.1f} -> {load[1]:.1f}"
    lines.append(f"{'micro batch':>11}  {'median ms':>10}  {'min ms':>10}  {'samples/s':>10}  "
                 "status")
    for p in record["points"]:
        med = "-" if p["median_s"] is None else f"{p['median_s'] * 1e3:.2f}"
        low = "-" if p["min_s"] is None else f"{p['min_s'] * 1e3:.2f}"
        sps = "-" if p["samples_per_s"] is None else f"{p['samples_per_s']:.0f}"
        lines.append(f"{p['micro_batch_size']:>11}  {med:>10}  {low:>10}  {sps:>10}  "
                     f"{p['status']}")
    s = record["selection"]
    lines.append(f"peak {s['peak_samples_per_s']:.0f} samples/s at micro batch "
                 f"{s['peak_micro_batch_size']}; chosen {s['chosen_micro_batch_size']} "
                 f"({s['chosen_samples_per_s']:.0f} samples/s, within {s['tolerance']:.0%})")
    if "plan" in record:
        pl = record["plan"]
        lines.append(f"global batch {pl['global_batch_size']} = micro batch "
                     f"{pl['micro_batch_size']} x {pl['accumulation_steps']} accumulation steps "
                     f"x world size {pl['world_size']}")
    return "\n".join(lines)


def plot_curve(record: dict[str, Any], path: str) -> None:
    """Throughput vs micro batch (log2 axis), peak and chosen sizes marked."""
    plt = pyplot()

    ok = [p for p in record["points"] if p["samples_per_s"] is not None]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    xs = [p["micro_batch_size"] for p in ok]
    ax.plot(xs, [p["samples_per_s"] for p in ok], marker="o", color="C0",
            label=f"{record['statistic']} of {record['repeats']} steps (bars: all)")
    for p in ok:  # spread of the repeats
        rates = [p["micro_batch_size"] / t for t in p["step_seconds"]]
        ax.vlines(p["micro_batch_size"], min(rates), max(rates), color="C0", alpha=0.4)
    s = record["selection"]
    ax.axhline((1 - s["tolerance"]) * s["peak_samples_per_s"], color="gray", ls=":", lw=1,
               label=f"{1 - s['tolerance']:.0%} of peak")
    ax.plot(s["peak_micro_batch_size"], s["peak_samples_per_s"], "*", ms=16, color="C3",
            label=f"peak ({s['peak_micro_batch_size']})")
    ax.plot(s["chosen_micro_batch_size"], s["chosen_samples_per_s"], "o", ms=13, mfc="none",
            mew=2, color="C2", label=f"chosen ({s['chosen_micro_batch_size']})")
    for p in record["points"]:
        if p["samples_per_s"] is None:
            ax.axvline(p["micro_batch_size"], color="C3", alpha=0.3, lw=6)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_ylim(bottom=0)
    ax.set(xlabel="micro batch size", ylabel="training samples / s",
           title=f"{record['task']}: forward + backward + SGD step ({record['device']}, "
                 f"{_threads(record['threads'])})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
