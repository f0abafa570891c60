"""``legw autobatch``: time training steps over micro batch sizes, find the throughput peak and
the smallest micro batch near it, and plan micro batch x accumulation x world size."""

from __future__ import annotations

import argparse
import json
from typing import Any

from legw.flags import integer, number, option
from legw.training.config import check_seed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", metavar="TASK", help="task whose model is timed")
    p.add_argument("--min-micro-batch-size", type=integer, default=1, metavar="B",
                   help="smallest micro batch timed (default 1); sizes are powers of two")
    p.add_argument("--max-micro-batch-size", type=integer, default=1024, metavar="B",
                   help="largest micro batch timed (default 1024); stops early at out-of-memory")
    p.add_argument("--repeats", type=integer, default=5, help="timed steps per size (median)")
    p.add_argument("--statistic", choices=["median", "min"], default="median",
                   help="summary of the repeats (min resists load from other processes)")
    p.add_argument("--tolerance", type=number, default=0.05,
                   help="choose the smallest size within this fraction of the peak (0.05)")
    p.add_argument("--global-batch-size", type=integer, metavar="B",
                   help="plan micro batch x accumulation x world size for this global batch")
    p.add_argument("--world-size", type=integer, default=1, metavar="P",
                   help="data-parallel processes of the plan (default 1)")
    p.add_argument("--threads", type=integer, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=integer, default=0,
                   help="seed of the model and inputs (default 0)")
    p.add_argument("--data-dir", help="where the task's data lives (default: its loader's)")
    p.add_argument("--out", default="runs/autobatch.json", metavar="FILE", help="JSON record")
    p.add_argument("--plot", default="runs/autobatch.png", metavar="FILE", help="PNG")
    p.add_argument("--json", action="store_true", help="print the record as JSON")


def _check_args(args: argparse.Namespace) -> None:
    from legw.io import check_writable_file

    for name in ("min_micro_batch_size", "max_micro_batch_size"):
        v = getattr(args, name)
        if v < 1 or v & (v - 1):
            raise ValueError(f"{option(name)}: must be a power of two, got {v}")
    if args.max_micro_batch_size < args.min_micro_batch_size:
        raise ValueError(f"--max-micro-batch-size: {args.max_micro_batch_size} is below "
                         f"--min-micro-batch-size {args.min_micro_batch_size}")
    for name in ("repeats", "world_size", "threads", "global_batch_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"{option(name)}: must be a positive integer, got {v}")
    if not 0 <= args.tolerance < 1:
        raise ValueError(f"--tolerance: must be in [0, 1), got {args.tolerance}")
    if args.global_batch_size is not None and args.global_batch_size % args.world_size:
        raise ValueError(f"--global-batch-size: {args.global_batch_size} is not divisible by "
                         f"--world-size {args.world_size}")
    check_seed(args.seed)
    check_writable_file(args.out, "--out")
    check_writable_file(args.plot, "--plot")


def run(args: argparse.Namespace) -> int:
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

    _check_args(args)  # before the model is built and timed
    sizes = powers_of_two(args.min_micro_batch_size, args.max_micro_batch_size)
    import torch

    from legw.analysis.workload import load_workload

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    workload = load_workload(args.task, data_dir=args.data_dir)
    timer = time_training_step(workload.model, workload.loss_fn, workload.random_batch)
    load_before = load_average()
    points = measure_curve(timer, sizes, repeats=args.repeats, statistic=args.statistic)
    if all(p.samples_per_s is None for p in points):
        raise ValueError(f"--min-micro-batch-size: every size from {sizes[0]} to {sizes[-1]} "
                         "ran out of memory; give smaller sizes")
    selection = select_micro_batch(points, args.tolerance)
    record: dict[str, Any] = {
        "task": args.task, "device": "cpu", "threads": torch.get_num_threads(),
        "torch": torch.__version__, "repeats": args.repeats, "interleaved": True,
        "statistic": args.statistic,
        "load_average_before_after": [load_before, load_average()],
        "points": [p.to_dict() for p in points], "selection": selection.__dict__,
    }
    if args.global_batch_size is not None:
        plan = plan_batches(args.global_batch_size, selection.chosen_micro_batch_size,
                            args.world_size)
        record["plan"] = {**plan.__dict__, "per_rank_batch_size": plan.per_rank_batch_size}
    from legw.io import atomic_write_json

    atomic_write_json(args.out, record)
    plot_curve(record, args.plot)
    print(json.dumps(record, indent=2) if args.json else format_report(record))
    if not args.json:
        print(f"wrote {args.out} and {args.plot}")
    return 0
