"""``legw plan TASK``: epochs, steps, time and worker-hours to match the base run at bigger
batches, predicted from the gradient noise measured while training (``legw.analysis.planner``).

The noise comes from a training run's ``metrics.jsonl``: ``--from-run RUN`` (a base run that
measured it, i.e. trained with 2+ micro-gradients per step), or a short measurement run at the
base batch that this command starts (``--steps`` / ``--seconds``). Throughput per device comes
from ``--samples-per-second``, a ``legw autobatch`` record (``--throughput-from``), or an
autobatch measurement here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from legw.commands._machines import (
    add_machine_arguments,
    check_machine_arguments,
    given_compute_time,
    network,
)
from legw.flags import integer, number


def add_arguments(p: argparse.ArgumentParser) -> None:
    from legw.tasks import TASKS

    p.add_argument("task", metavar="TASK", nargs="?",
                   help=f"task preset ({', '.join(TASKS)}); optional with --from-run")
    m = p.add_argument_group("noise measurement")
    m.add_argument("--from-run", metavar="RUN",
                   help="a legw train run directory whose metrics.jsonl has online B_noise "
                        "(its base recipe and batch are the base); no measurement run")
    m.add_argument("--steps", type=integer, metavar="N",
                   help="steps of the measurement run at the base batch (default: 1 epoch)")
    m.add_argument("--seconds", type=number, metavar="S",
                   help="time budget of the measurement run instead of --steps")
    m.add_argument("--micro-batch-size", type=integer, metavar="b",
                   help="micro batch of the measurement run (default: half the base batch)")
    m.add_argument("--run-dir", metavar="DIR",
                   help="where the measurement run goes (default runs/plan-TASK)")
    m.add_argument("--data-dir", metavar="DIR", help="directory with the data set files")
    m.add_argument("--threads", type=integer, metavar="N", help="torch threads")
    c = p.add_argument_group("candidates and machines")
    c.add_argument("--batch-sizes", type=integer, nargs="+", metavar="B",
                   help="global batch sizes to plan (default: base batch x 1, 2, 4, ... 64)")
    c.add_argument("--cost-limit", type=number, metavar="H",
                   help="worker-hours the plan may cost (default: 2x the cheapest plan)")
    add_machine_arguments(c, measure_help=None)
    o = p.add_argument_group("output")
    o.add_argument("--out", default="runs/plan.json", metavar="FILE",
                   help="JSON record (default runs/plan.json)")
    o.add_argument("--plot", metavar="FILE",
                   help="epochs, time and cost vs batch, PNG (default: --out with .png)")
    o.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace) -> int:
    from legw.analysis import planner
    from legw.io import atomic_write_json

    _check(args)
    rate = given_compute_time(args)
    if args.from_run:
        records, base, dataset_size, micro, task = _from_run(args)
    else:
        records, base, dataset_size, micro, task, rate = _measure(args, rate)
    compute_time, rate_source = rate or _measure_throughput(args, task, micro)
    from legw.analysis.workload import load_workload

    model_bytes = 4 * load_workload(task, data_dir=args.data_dir).num_params()
    recipe = base.scale(base.base_batch_size, dataset_size)
    profile = planner.noise_profile(records, recipe.total_steps, micro, base.base_batch_size)
    latency, bandwidth = network(args)
    plan = planner.make_plan(profile, base, dataset_size, batch_sizes=args.batch_sizes,
                             workers=args.workers, model_bytes=model_bytes,
                             compute_time=compute_time, latency=latency,
                             bandwidth=bandwidth, cost_limit=args.cost_limit)
    plan.update(task=task, throughput=rate_source,
                noise_source=args.from_run or str(_run_dir(args)))
    atomic_write_json(args.out, plan)
    planner.plot_plan(plan, args.plot)
    print(json.dumps(plan, indent=2) if args.json else planner.format_plan(plan))
    if not args.json:
        print(f"wrote {args.out} and {args.plot}")
    return 0


def _check(args: argparse.Namespace) -> None:
    from legw.io import check_writable_file

    if args.from_run is None and args.task is None:
        raise ValueError("TASK: give a task preset (or --from-run RUN)")
    if args.from_run and (args.steps or args.seconds):
        raise ValueError("--steps/--seconds: not with --from-run (nothing is measured)")
    if args.steps is not None and args.seconds is not None:
        raise ValueError("--steps and --seconds: give one budget")
    for name in ("steps", "micro_batch_size", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')}: must be at least 1, got {v}")
    for name in ("seconds", "cost_limit"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise ValueError(f"--{name.replace('_', '-')}: must be positive, got {v}")
    if any(b < 1 for b in args.batch_sizes or []):
        raise ValueError("--batch-sizes: must be positive integers")
    check_machine_arguments(args)
    if args.plot is None:
        args.plot = str(Path(args.out).with_suffix(".png"))
    if Path(args.plot).resolve() == Path(args.out).resolve():
        raise ValueError(f"--plot: {args.plot} is also the JSON record (--out); give the plot "
                         "another name")
    for name in ("out", "plot"):
        check_writable_file(getattr(args, name), f"--{name}")


def _run_dir(args: argparse.Namespace) -> Path:
    return Path(args.run_dir or f"runs/plan-{args.task}")


def _from_run(args: argparse.Namespace):
    from legw.training.run_dir import RunDir

    run = RunDir(args.from_run)
    record = run.config()
    if record is None:
        raise ValueError(f"--from-run: {run.path} has no {run.config_file.name}; give a legw "
                         "train run directory")
    if args.task is not None and args.task != record.task:
        raise ValueError(f"TASK: {args.task} differs from the run's task {record.task} "
                         f"({record.path})")
    base = record.base()
    if record.batch_size != base.base_batch_size:
        raise ValueError(f"--from-run: {run.path} trained at batch {record.batch_size}, not at "
                         f"its base batch {base.base_batch_size}; plan from a base run")
    micro = record.noise_batch_size
    if not micro:
        raise ValueError(f"--from-run: {run.path} measured no gradient noise (it had one "
                         "micro-gradient per step); train the base run with --micro-batch-size "
                         "B0/2, or measure here without --from-run")
    return (run.metrics(), base, record.dataset_size, micro, record.task)


def _measure(args: argparse.Namespace, rate: tuple[Any, str] | None):
    """A short training run at the base batch with the online noise measurement on; a
    ``--seconds`` budget needs the throughput first (``rate``, measured here if not given),
    which is returned for the plan too."""
    from legw.training.config import TrainConfig
    from legw.training.run_dir import RunDir
    from legw.training.trainer import train

    probe = TrainConfig(task=args.task, data_dir=args.data_dir).resolve()
    b0 = probe.base.base_batch_size
    micro = args.micro_batch_size or b0 // 2
    if micro >= b0 or b0 % micro:
        raise ValueError(f"--micro-batch-size: {micro} must divide the base batch {b0} and be "
                         "smaller (the noise needs 2+ micro-batches per step)")
    steps = args.steps or probe.task.dataset_size // b0  # default: one epoch
    if args.seconds is not None:
        rate = rate or _measure_throughput(args, args.task, micro)
        steps = max(20, int(args.seconds / rate[0](b0)))
    config = TrainConfig(task=args.task, global_batch_size=b0, micro_batch_size=micro,
                         max_steps=steps, out_dir=str(_run_dir(args)), data_dir=args.data_dir,
                         num_threads=args.threads, quiet=True, evaluate=False,
                         keep_checkpoints=1)
    run = RunDir(train(config)["run_dir"])
    return (run.metrics(), probe.base, run.config().dataset_size, micro, args.task, rate)


def _measure_throughput(args: argparse.Namespace, task: str, micro: int
                        ) -> tuple[Any, str]:
    """Throughput vs local batch, timed here with ``legw autobatch``'s interleaved timer."""
    import torch

    from legw.analysis.autobatch import doublings, measure_curve, time_training_step
    from legw.analysis.comm import step_time_from_points
    from legw.analysis.workload import load_workload

    if args.threads:
        torch.set_num_threads(args.threads)
    w = load_workload(task, data_dir=args.data_dir)
    timer = time_training_step(w.model, w.loss_fn, w.random_batch)
    points = measure_curve(timer, doublings(micro, 1024), repeats=3)
    measured = [(p.micro_batch_size, p.samples_per_s) for p in points if p.samples_per_s]
    return (step_time_from_points(measured),
            f"measured here: {', '.join(f'{b}: {r:.0f}/s' for b, r in measured)}")
