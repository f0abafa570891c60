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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legw import flags
from legw.commands._machines import MachineSpec
from legw.flags import POSITIVE, POSITIVE_INT, flag
from legw.io import check_writable_file

GROUPS = {"noise": "noise measurement", "candidates": "candidates and machines",
          "machines": "candidates and machines", "output": "output"}
"""The ``--help`` sections of ``legw plan`` (each field's ``group``) and their titles."""


def noise(metavar: str | None = None, **meta: Any) -> dict[str, Any]:
    """Metadata of a noise-measurement flag (``--help`` section ``noise``)."""
    return flag(metavar=metavar, group="noise", **meta)


def output(metavar: str | None = None, **meta: Any) -> dict[str, Any]:
    """Metadata of an output flag (``--help`` section ``output``)."""
    return flag(metavar=metavar, group="output", **meta)


@dataclass
class PlanSpec(MachineSpec):
    """What ``legw plan`` measures (or reads), the candidates it plans and where it writes."""

    task: str | None = None
    """Task preset (optional with --from-run)."""
    from_run: str | None = field(default=None, metadata=noise("RUN"))
    """A legw train run directory whose metrics.jsonl has online B_noise (its base recipe and
    batch are the base); no measurement run."""
    steps: int | None = field(default=None, metadata=noise("N", check=POSITIVE_INT))
    """Steps of the measurement run at the base batch (default: 1 epoch)."""
    seconds: float | None = field(default=None, metadata=noise("S", check=POSITIVE))
    """Time budget of the measurement run instead of --steps."""
    micro_batch_size: int | None = field(default=None, metadata=noise("b", check=POSITIVE_INT))
    """Micro batch of the measurement run (default: half the base batch)."""
    run_dir: str | None = field(default=None, metadata=noise("DIR"))
    """Where the measurement run goes (default runs/plan-TASK)."""
    data_dir: str | None = field(default=None, metadata=noise("DIR"))
    """Directory with the data set files."""
    threads: int | None = field(default=None, metadata=noise("N", check=POSITIVE_INT))
    """Torch threads."""
    batch_sizes: list[int] | None = field(default=None, metadata=flag(
        metavar="B", check=POSITIVE_INT, group="candidates"))
    """Global batch sizes to plan (default: base batch x 1, 2, 4, ... 64)."""
    cost_limit: float | None = field(default=None, metadata=flag(
        metavar="H", check=POSITIVE, group="candidates"))
    """Worker-hours the plan may cost (default: 2x the cheapest plan)."""
    out: str = field(default="runs/plan.json",
                     metadata=output("FILE", check=check_writable_file))
    """JSON record (default runs/plan.json)."""
    plot: str | None = field(default=None, metadata=output("FILE", check=check_writable_file))
    """Epochs, time and cost vs batch, PNG (default: --out with .png)."""
    json: bool = field(default=False, metadata=output())
    """Print the plan as JSON."""

    def __post_init__(self) -> None:
        if self.from_run is None and self.task is None:
            raise ValueError("TASK: give a task preset (or --from-run RUN)")
        if self.from_run and (self.steps or self.seconds):
            raise ValueError("--steps/--seconds: not with --from-run (nothing is measured)")
        if self.steps is not None and self.seconds is not None:
            raise ValueError("--steps and --seconds: give one budget")
        if self.plot is None:
            self.plot = str(Path(self.out).with_suffix(".png"))
        super().__post_init__()  # every field's rule, and one compute rate
        if Path(self.plot).resolve() == Path(self.out).resolve():
            raise ValueError(f"--plot: {self.plot} is also the JSON record (--out); give the "
                             "plot another name")

    def measurement_dir(self) -> Path:
        """Where the measurement run goes."""
        return Path(self.run_dir or f"runs/plan-{self.task}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from legw.tasks import TASKS

    p.add_argument("task", metavar="TASK", nargs="?",
                   help=f"{flags.field_docs(PlanSpec)['task']} Presets: {', '.join(TASKS)}.")
    flags.add_groups(p, PlanSpec, GROUPS)


def run(args: argparse.Namespace) -> int:
    """The spec from the flags given (every check before any run or timing), then
    :func:`plan`."""
    return plan(flags.from_args(PlanSpec, args))


def plan(spec: PlanSpec) -> int:
    from legw.analysis import planner
    from legw.io import atomic_write_json
    from legw.tasks import get_task

    rate = spec.given_compute_time()
    if spec.from_run:
        records, base, dataset_size, micro, task = _from_run(spec)
    else:
        records, base, dataset_size, micro, task, rate = _measure(spec, rate)
    compute_time, rate_source = rate or _measure_throughput(spec, task, micro)
    from legw.analysis.workload import load_workload

    model_bytes = 4 * load_workload(task, data_dir=spec.data_dir).num_params()
    recipe = base.scale(base.base_batch_size, dataset_size)
    profile = planner.noise_profile(records, recipe.total_steps, micro, base.base_batch_size)
    latency, bandwidth = spec.network()
    result = planner.make_plan(profile, base, dataset_size, batch_sizes=spec.batch_sizes,
                               workers=spec.workers, model_bytes=model_bytes,
                               compute_time=compute_time, latency=latency,
                               bandwidth=bandwidth, cost_limit=spec.cost_limit,
                               streams=get_task(task).kind == "text")
    result.update(task=task, throughput=rate_source,
                  noise_source=spec.from_run or str(spec.measurement_dir()))
    atomic_write_json(spec.out, result)
    planner.plot_plan(result, spec.plot)
    print(json.dumps(result, indent=2) if spec.json else planner.format_plan(result))
    if not spec.json:
        print(f"wrote {spec.out} and {spec.plot}")
    return 0


def _from_run(spec: PlanSpec):
    from legw.training.run_dir import RunDir

    run = RunDir(spec.from_run)
    record = run.config()
    if record is None:
        raise ValueError(f"--from-run: {run.path} has no {run.config_file.name}; give a legw "
                         "train run directory")
    if spec.task is not None and spec.task != record.task:
        raise ValueError(f"TASK: {spec.task} differs from the run's task {record.task} "
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


def _measure(spec: PlanSpec, rate: tuple[Any, str] | None):
    """A short training run at the base batch with the online noise measurement on; a
    ``--seconds`` budget needs the throughput first (``rate``, measured here if not given),
    which is returned for the plan too."""
    from legw.training.config import TrainConfig
    from legw.training.run_dir import RunDir
    from legw.training.trainer import train

    probe = TrainConfig(task=spec.task, data_dir=spec.data_dir).resolve()
    b0 = probe.base.base_batch_size
    micro = spec.micro_batch_size or b0 // 2
    if micro >= b0 or b0 % micro:
        raise ValueError(f"--micro-batch-size: {micro} must divide the base batch {b0} and be "
                         "smaller (the noise needs 2+ micro-batches per step)")
    steps = spec.steps or probe.task.dataset_size // b0  # default: one epoch
    if spec.seconds is not None:
        rate = rate or _measure_throughput(spec, spec.task, micro)
        steps = max(20, int(spec.seconds / rate[0](b0)))
    config = TrainConfig(task=spec.task, global_batch_size=b0, micro_batch_size=micro,
                         max_steps=steps, out_dir=str(spec.measurement_dir()),
                         data_dir=spec.data_dir, num_threads=spec.threads, quiet=True,
                         evaluate=False, keep_checkpoints=1)
    run = RunDir(train(config)["run_dir"])
    return (run.metrics(), probe.base, run.config().dataset_size, micro, spec.task, rate)


def _measure_throughput(spec: PlanSpec, task: str, micro: int
                        ) -> tuple[Any, str]:
    """Throughput vs local batch, timed here with ``legw autobatch``'s interleaved timer."""
    import torch

    from legw.analysis.autobatch import doublings, measure_curve, time_training_step
    from legw.analysis.comm import step_time_from_points
    from legw.analysis.workload import load_workload

    if spec.threads:
        torch.set_num_threads(spec.threads)
    w = load_workload(task, data_dir=spec.data_dir)
    timer = time_training_step(w.model, w.loss_fn, w.random_batch)
    points = measure_curve(timer, doublings(micro, 1024), repeats=3)
    measured = [(p.micro_batch_size, p.samples_per_s) for p in points if p.samples_per_s]
    return (step_time_from_points(measured),
            f"measured here: {', '.join(f'{b}: {r:.0f}/s' for b, r in measured)}")
