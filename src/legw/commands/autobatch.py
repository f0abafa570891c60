"""``legw autobatch``: time training steps over micro batch sizes, find the throughput peak and
the smallest micro batch near it, and plan micro batch x accumulation x world size."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields
from typing import Any

from legw import flags
from legw.analysis.autobatch import STATISTICS
from legw.flags import POSITIVE_INT, POWER_OF_TWO, flag, interval
from legw.io import check_writable_file
from legw.training.config import check_seed


@dataclass
class AutobatchSpec:
    """What ``legw autobatch`` times, how it chooses, and the plan it makes."""

    task: str
    """Task whose model is timed."""
    min_micro_batch_size: int = field(default=1, metadata=flag(metavar="b", check=POWER_OF_TWO))
    """Smallest micro batch timed (default 1); sizes are powers of two."""
    max_micro_batch_size: int = field(default=1024,
                                      metadata=flag(metavar="b", check=POWER_OF_TWO))
    """Largest micro batch timed (default 1024); stops early at out-of-memory."""
    repeats: int = field(default=5, metadata=flag(metavar="N", check=POSITIVE_INT))
    """Timed steps per size (default 5)."""
    statistic: str = field(default="median", metadata=flag(choices=STATISTICS))
    """Summary of the repeats: median, or min (resists load from other processes)."""
    tolerance: float = field(default=0.05,
                             metadata=flag(metavar="F", check=interval(0, 1, "[)")))
    """Choose the smallest size within this fraction of the peak (default 0.05)."""
    batch_size: int | None = field(default=None, metadata=flag(
        metavar="B", check=POSITIVE_INT, aliases=["--global-batch-size"]))
    """Global batch to plan as micro batch x accumulation x world size."""
    world_size: int = field(default=1, metadata=flag(metavar="P", check=POSITIVE_INT))
    """Data-parallel processes of the plan (default 1)."""
    threads: int | None = field(default=None, metadata=flag(metavar="N", check=POSITIVE_INT))
    """Torch CPU threads (default: torch's choice)."""
    seed: int = field(default=0, metadata=flag(check=check_seed))
    """Seed of the model and inputs (default 0)."""
    data_dir: str | None = field(default=None, metadata=flag(metavar="DIR"))
    """Where the task's data lives (default: its loader's)."""
    out: str = field(default="runs/autobatch.json",
                     metadata=flag(metavar="FILE", check=check_writable_file))
    """JSON record (default runs/autobatch.json)."""
    plot: str = field(default="runs/autobatch.png",
                      metadata=flag(metavar="FILE", check=check_writable_file))
    """Throughput vs micro batch, PNG (default runs/autobatch.png)."""
    json: bool = False
    """Print the record as JSON."""

    def __post_init__(self) -> None:
        flags.check_fields(self)
        if self.max_micro_batch_size < self.min_micro_batch_size:
            raise ValueError(f"--max-micro-batch-size: {self.max_micro_batch_size} is below "
                             f"--min-micro-batch-size {self.min_micro_batch_size}")
        if self.batch_size is not None and self.batch_size % self.world_size:
            raise ValueError(f"--batch-size: {self.batch_size} is not divisible by "
                             f"--world-size {self.world_size}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", metavar="TASK", help=flags.field_docs(AutobatchSpec)["task"])
    flags.add_arguments(p, AutobatchSpec, [f.name for f in fields(AutobatchSpec)][1:])


def run(args: argparse.Namespace) -> int:
    """The spec from the flags given (every check before the model is built and timed), then
    :func:`autobatch`."""
    return autobatch(flags.from_args(AutobatchSpec, args))


def autobatch(spec: AutobatchSpec) -> int:
    from legw.analysis.autobatch import (
        format_report,
        load_average,
        measure_curve,
        plan_batches,
        plot_curve,
        powers_of_two,
        select_micro_batch,
        time_training_step,
    )

    sizes = powers_of_two(spec.min_micro_batch_size, spec.max_micro_batch_size)
    import torch

    from legw.analysis.workload import load_workload

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    workload = load_workload(spec.task, data_dir=spec.data_dir)
    timer = time_training_step(workload.model, workload.loss_fn, workload.random_batch)
    load_before = load_average()
    points = measure_curve(timer, sizes, repeats=spec.repeats, statistic=spec.statistic)
    if all(p.samples_per_s is None for p in points):
        raise ValueError(f"--min-micro-batch-size: every size from {sizes[0]} to {sizes[-1]} "
                         "ran out of memory; give smaller sizes")
    selection = select_micro_batch(points, spec.tolerance)
    record: dict[str, Any] = {
        "task": spec.task, "device": "cpu", "threads": torch.get_num_threads(),
        "torch": torch.__version__, "repeats": spec.repeats, "interleaved": True,
        "statistic": spec.statistic,
        "load_average_before_after": [load_before, load_average()],
        "points": [p.to_dict() for p in points], "selection": selection.__dict__,
    }
    if spec.batch_size is not None:
        plan = plan_batches(spec.batch_size, selection.chosen_micro_batch_size,
                            spec.world_size)
        record["plan"] = {**plan.__dict__, "per_rank_batch_size": plan.per_rank_batch_size}
    from legw.io import atomic_write_json

    atomic_write_json(spec.out, record)
    plot_curve(record, spec.plot)
    print(json.dumps(record, indent=2) if spec.json else format_report(record))
    if not spec.json:
        print(f"wrote {spec.out} and {spec.plot}")
    return 0
