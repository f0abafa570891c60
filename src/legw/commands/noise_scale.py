"""``legw noise-scale``: train a task with its recipe and measure the gradient noise scale
``B_simple`` (McCandlish et al. 2018) every few steps."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any

from legw import flags
from legw.flags import NON_NEGATIVE_INT, POSITIVE_INT, at_least, flag
from legw.io import check_writable_file
from legw.training.config import check_seed


@dataclass
class NoiseScaleSpec:
    """What ``legw noise-scale`` trains and how it draws: the training run at ``--batch-size``
    (the global batch, as everywhere in legw), and at ``--points`` steps ``--draws`` draws of
    ``--draw-batch-size`` samples cut into micro batches of ``--micro-batch-size``."""

    task: str
    """Task preset whose model and data are measured."""
    batch_size: int | None = field(default=None, metadata=flag(
        metavar="B", check=POSITIVE_INT, aliases=["--train-batch-size"]))
    """Global batch of the training run (default: the task's base batch size). Changed
    meaning: --batch-size used to be the draw's big batch, now --draw-batch-size; this flag's
    old name is --train-batch-size."""
    draw_batch_size: int = field(default=256, metadata=flag(metavar="B", check=at_least(2)))
    """Big batch B of each draw: a multiple of --micro-batch-size, and larger (default 256;
    formerly --batch-size)."""
    micro_batch_size: int = field(default=16, metadata=flag(metavar="b", check=POSITIVE_INT))
    """Small batch b: the gradients of B/b micro batches per draw (default 16)."""
    draws: int = field(default=20, metadata=flag(metavar="N", check=at_least(2)))
    """Draws per measurement (default 20)."""
    points: int = field(default=5, metadata=flag(metavar="K", check=POSITIVE_INT))
    """Measurements, evenly spaced from step 0 to --steps (default 5)."""
    steps: int | None = field(default=None, metadata=flag(metavar="S", check=NON_NEGATIVE_INT))
    """Training steps (default: one epoch at the training batch size)."""
    threads: int | None = field(default=None, metadata=flag(metavar="N", check=POSITIVE_INT))
    """Torch CPU threads (default: torch's choice)."""
    seed: int = field(default=0, metadata=flag(check=check_seed))
    """Seed of the model, the batches and the bootstrap (default 0)."""
    data_dir: str | None = field(default=None, metadata=flag(metavar="DIR"))
    """Where the task's data lives (default: its loader's)."""
    out: str = field(default="runs/noise-scale.json",
                     metadata=flag(metavar="FILE", check=check_writable_file))
    """JSON record, rewritten after each measurement (default runs/noise-scale.json)."""
    plot: str = field(default="runs/noise-scale.png",
                      metadata=flag(metavar="FILE", check=check_writable_file))
    """B_simple vs training step, PNG (default runs/noise-scale.png)."""

    def __post_init__(self) -> None:
        flags.check_fields(self)
        b, big = self.micro_batch_size, self.draw_batch_size
        if big <= b or big % b:
            raise ValueError(f"--draw-batch-size ({big}) must be a multiple of "
                             f"--micro-batch-size ({b}) and larger")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", metavar="TASK", help=flags.field_docs(NoiseScaleSpec)["task"])
    flags.add_arguments(p, NoiseScaleSpec, [f.name for f in fields(NoiseScaleSpec)][1:])


def run(args: argparse.Namespace) -> int:
    """The spec from the flags given (every check before the data is loaded), then
    :func:`noise_scale`."""
    return noise_scale(flags.from_args(NoiseScaleSpec, args))


def noise_scale(spec: NoiseScaleSpec) -> int:
    import torch

    from legw.analysis.noise_scale import noise_scale_during_training, plot_noise_scale
    from legw.analysis.workload import load_workload
    from legw.io import atomic_write_json

    if spec.threads:
        torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    w = load_workload(spec.task, load_data=True, data_dir=spec.data_dir)
    train_bs = spec.batch_size or w.recipe.base_batch_size
    if train_bs > w.dataset_size:
        raise ValueError(f"--batch-size: {train_bs} exceeds the {w.dataset_size} "
                         f"training samples of {w.source or 'the data'}; give a smaller one")
    recipe = w.recipe.scale(train_bs, w.dataset_size)
    steps = recipe.steps_per_epoch if spec.steps is None else spec.steps
    print(f"{spec.task}: data {w.source}, {w.dataset_size} samples per epoch")
    print(f"{spec.task}: training at batch {train_bs} for {steps} steps; B_simple at "
          f"{spec.points} points from {spec.draws} draws of "
          f"{spec.draw_batch_size // spec.micro_batch_size} x {spec.micro_batch_size} samples")
    record: dict[str, Any] = {}
    for record in noise_scale_during_training(
            w, recipe, steps, points=spec.points, micro_batch_size=spec.micro_batch_size,
            draw_batch_size=spec.draw_batch_size, draws=spec.draws, seed=spec.seed):
        atomic_write_json(spec.out, record)  # partial results survive an interruption
        pt = record["points"][-1]
        print(f"step {pt['step']:>6}  B_simple {pt['b_simple']:10.1f} +- {pt['stderr']:8.1f}  "
              f"(68% ci {pt['ci_low']:.1f}..{pt['ci_high']:.1f})  |G|^2 {pt['grad_sq']:.3g}  "
              f"tr(Sigma) {pt['trace_sigma']:.3g}" + ("" if pt["valid"] else "  INVALID"))
    plot_noise_scale(record, spec.plot)
    print(f"wrote {spec.out} and {spec.plot}")
    return 0
