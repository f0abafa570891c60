"""``TrainConfig``: every knob of a training run, typed, checked, and derived in one place.

``None`` means "the task's default". Batch arithmetic (nanoGPT convention)::

    global_batch_size = micro_batch_size * world_size * accumulation_steps

The global batch is what the recipe is scaled to; the micro batch is what one forward pass
holds; accumulation steps are derived and must be a whole number.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from legw.schedule import BaseRecipe
from legw.tasks import Task, get_task

DEVICES = ("auto", "cpu", "cuda")

# Base-recipe override field -> BaseRecipe field.
_RECIPE_OVERRIDES = {
    "base_batch_size": "base_batch_size", "base_lr": "peak_lr",
    "base_warmup_epochs": "warmup_epochs", "epochs": "epochs", "decay": "decay",
    "power": "power", "end_lr": "end_lr", "milestones": "milestones", "gamma": "gamma",
    "scaling": "scaling", "warmup": "warmup",
}


def _flag(field: str) -> str:
    return "--" + {"global_batch_size": "batch-size", "out_dir": "out",
                   "num_threads": "threads"}.get(field, field).replace("_", "-")


@dataclass
class TrainConfig:
    """One training run. Field docstrings double as the ``legw train`` flag help."""

    task: str
    """Task preset (see ``legw.tasks.TASKS``)."""
    global_batch_size: int | None = None
    """Samples per optimizer step over all processes (default: the task's base batch)."""
    micro_batch_size: int | None = None
    """Samples per forward pass on one process (default: global batch / world size)."""
    optimizer: str | None = None
    """Optimizer name (default: the task's)."""
    scaling: str | None = None
    """LR scaling rule: sqrt, linear, none or a power of k (default: the recipe's)."""
    warmup: str | None = None
    """Warmup rule: legw, constant or none (default: the recipe's)."""
    epochs: float | None = None
    """Training length in epochs (default: the recipe's)."""
    base_batch_size: int | None = None
    """Batch size the base recipe was tuned at (default: the task's)."""
    base_lr: float | None = None
    """Peak LR at the base batch size."""
    base_warmup_epochs: float | None = None
    """Warmup epochs at the base batch size."""
    decay: str | None = None
    """Decay after warmup: multistep, poly, cosine, exponential, constant."""
    power: float | None = None
    """Poly decay power."""
    end_lr: float | None = None
    """Final LR of poly / cosine decay."""
    milestones: tuple[float, ...] | None = None
    """Multistep decay epochs."""
    gamma: float | None = None
    """Multistep factor / exponential factor per epoch."""
    weight_decay: float | None = None
    """Weight decay (bias and normalisation parameters excluded)."""
    momentum: float | None = None
    """Momentum of sgd / lars."""
    clip_grad_norm: float | None = None
    """Clip the global gradient norm to this value; 0 turns clipping off."""
    seed: int = 0
    """Seeds the model initialisation, the data order and dropout."""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    out_dir: str | None = None
    """Run directory (default: runs/TASK-bBATCH-sSEED)."""
    resume: bool = False
    """Continue from the newest checkpoint in the run directory."""
    quiet: bool = False
    """No progress bar: one log line per epoch."""
    keep_checkpoints: int = 2
    """How many checkpoints to keep (the newest)."""
    checkpoint_every: int = 0
    """Also checkpoint every this many steps (0: only at the end of each epoch)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (the schedule still spans all epochs)."""
    data_dir: str | None = None
    """Directory with the data set files (default: the loader's own location)."""
    num_threads: int | None = None
    """torch intra-op threads per process (default: torch's choice)."""
    evaluate: bool = True
    """Evaluate at each epoch end and at the end (off: training only, e.g. for benchmarks)."""

    def __post_init__(self) -> None:
        get_task(self.task)
        if self.milestones is not None:
            self.milestones = tuple(float(m) for m in self.milestones)
        for name in ("global_batch_size", "micro_batch_size", "base_batch_size", "max_steps",
                     "num_threads"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ValueError(f"{_flag(name)}: must be a positive integer, got {v!r}")
        for name in ("weight_decay", "momentum", "clip_grad_norm"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{_flag(name)}: must be a non-negative number, got {v!r}")
        if self.momentum is not None and self.momentum >= 1:
            raise ValueError(f"--momentum: must be below 1, got {self.momentum!r}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"--keep-checkpoints: must be at least 1, got "
                             f"{self.keep_checkpoints!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"--checkpoint-every: must be >= 0, got {self.checkpoint_every!r}")
        if self.device not in DEVICES:
            raise ValueError(f"--device: must be one of {', '.join(DEVICES)}, "
                             f"got {self.device!r}")
        if self.optimizer is not None:
            from legw.optim import OPTIMIZERS

            if self.optimizer not in OPTIMIZERS:
                raise ValueError(f"--optimizer: unknown {self.optimizer!r}; choose from "
                                 f"{', '.join(OPTIMIZERS)}")
        b, m = self.global_batch_size, self.micro_batch_size
        if b is not None and m is not None and b % m:
            raise ValueError(f"--micro-batch-size: {m} does not divide --batch-size {b}")
        self.base_recipe()  # recipe overrides are checked here, naming the field

    # --- derived values ---------------------------------------------------------------------

    def get_task(self) -> Task:
        return get_task(self.task)

    def base_recipe(self) -> BaseRecipe:
        """The task's base recipe with the overrides applied."""
        fields = self.get_task().recipe.to_dict()
        for name, field in _RECIPE_OVERRIDES.items():
            v = getattr(self, name)
            if v is not None:
                fields[field] = v
        try:
            return BaseRecipe(**fields)
        except ValueError as e:
            hint = ""
            if str(e).startswith("milestones") and self.epochs is not None:
                hint = " (with --epochs give --milestones too, or cut a run short with --max-steps)"
            raise ValueError(f"recipe {e}{hint}") from None

    def batch_size(self) -> int:
        """The global batch size (the task's base batch unless given)."""
        return self.global_batch_size or self.base_recipe().base_batch_size

    def micro_batch(self, world_size: int) -> int:
        """Samples per forward pass on one process."""
        b = self.batch_size()
        if self.micro_batch_size is not None:
            return self.micro_batch_size
        if b % world_size:
            raise ValueError(f"--batch-size: {b} is not divisible by the world size "
                             f"{world_size}")
        return b // world_size

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-steps per optimizer step: ``B / (b * W)``, which must be a whole number."""
        b, m = self.batch_size(), self.micro_batch(world_size)
        if b % (m * world_size):
            raise ValueError(f"--batch-size {b} is not --micro-batch-size {m} x world size "
                             f"{world_size} x a whole number of accumulation steps")
        return b // (m * world_size)

    def optimizer_name(self) -> str:
        return self.optimizer or self.get_task().optimizer

    def resolved_weight_decay(self) -> float:
        return self.get_task().weight_decay if self.weight_decay is None else self.weight_decay

    def resolved_momentum(self) -> float:
        return self.get_task().momentum if self.momentum is None else self.momentum

    def resolved_clip(self) -> float | None:
        """Clip threshold, or ``None`` for no clipping."""
        c = self.get_task().clip_grad_norm if self.clip_grad_norm is None else self.clip_grad_norm
        return c if c else None

    def run_dir(self) -> str:
        return self.out_dir or f"runs/{self.task}-b{self.batch_size()}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["milestones"] is not None:
            d["milestones"] = list(d["milestones"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config: unknown fields {unknown}")
        return cls(**d)
