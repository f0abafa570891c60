"""``legw autobatch``: time training steps over micro batch sizes, find the throughput peak and
the smallest micro batch near it, and plan micro batch x accumulation x world size."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", metavar="TASK", help="task whose model is timed")
    p.add_argument("--min-micro-batch-size", type=int, default=1, metavar="B")
    p.add_argument("--max-micro-batch-size", type=int, default=1024, metavar="B")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per size (median)")
    p.add_argument("--statistic", choices=["median", "min"], default="median",
                   help="summary of the repeats (min resists load from other processes)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="choose the smallest size within this fraction of the peak (0.05)")
    p.add_argument("--global-batch-size", type=int, metavar="B",
                   help="plan micro batch x accumulation x world size for this global batch")
    p.add_argument("--world-size", type=int, default=1, metavar="P")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="where the task's data lives (default: its loader's)")
    p.add_argument("--out", default="runs/autobatch.json", metavar="FILE", help="JSON record")
    p.add_argument("--plot", default="runs/autobatch.png", metavar="FILE", help="PNG")
    p.add_argument("--json", action="store_true", help="print the record as JSON")


def run(args: argparse.Namespace) -> int:
    from legw.analysis.autobatch import (
        measure_curve,
        plan_batches,
        powers_of_two,
        select_micro_batch,
        time_training_step,
    )

    sizes = powers_of_two(args.min_micro_batch_size, args.max_micro_batch_size)
    if not 0 <= args.tolerance < 1:
        raise ValueError(f"--tolerance must be in [0, 1), got {args.tolerance}")
    if args.global_batch_size is not None:
        plan_batches(args.global_batch_size, 1, args.world_size)  # validate before timing
    import torch

    from legw.analysis.workload import load_workload

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    workload = load_workload(args.task, data_dir=args.data_dir)
    timer = time_training_step(workload.model, workload.loss_fn, workload.random_batch)
    load_before = _load_average()
    points = measure_curve(timer, sizes, repeats=args.repeats, statistic=args.statistic)
    selection = select_micro_batch(points, args.tolerance)
    record: dict[str, Any] = {
        "task": args.task, "device": "cpu", "threads": torch.get_num_threads(),
        "torch": torch.__version__, "repeats": args.repeats, "interleaved": True,
        "statistic": args.statistic,
        "load_average_before_after": [load_before, _load_average()],
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


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _load_average() -> float | None:
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from legw.io import atomic_path

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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
