"""``TrainConfig``: every knob of a training run, typed, checked, and derived in one place.

``None`` means "the task's default". Batch arithmetic (nanoGPT convention)::

    global_batch_size = micro_batch_size * world_size * accumulation_steps

The global batch is what the recipe is scaled to; the micro batch is what one forward pass
holds; accumulation steps are derived and must be a whole number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from legw.adaptive import (
    ADAPTIVE_WARMUPS,
    NORMALISED_OPTIMIZERS,
    default_lr_power,
    default_noise_window,
)
from legw.flags import flag, flag_name
from legw.schedule import DECAYS, WARMUP_RULES, BaseRecipe, Recipe, RecipeWarning
from legw.tasks import Task, get_task

DEVICES = ("auto", "cpu", "cuda")
SEED_LIMIT = 2**32
"""Seeds lie in ``[0, 2^32)``: numpy's range, and the data order seeds a torch generator with
``seed * 1_000_003 + epoch``, which must fit in 64 bits."""
FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: a peak LR above it cannot be written into an optimizer."""
RESUME_FREE = ("global_batch_size", "micro_batch_size", "device", "out_dir", "resume", "quiet",
               "keep_checkpoints", "checkpoint_every", "max_steps", "data_dir", "num_threads",
               "evaluate", "eval_every", "channels_last")
"""The fields a resumed run may change: the batch (elastic resume) and how the run executes
(and ``noise_window``, which :meth:`TrainConfig.identity` compares for adaptive runs only).
Any other change would continue one run as another (see :meth:`TrainConfig.check_resume`)."""

RECIPE_FIELDS = {
    "base_batch_size": "base_batch_size", "base_lr": "peak_lr",
    "base_warmup_epochs": "warmup_epochs", "epochs": "epochs", "decay": "decay",
    "power": "power", "end_lr": "end_lr", "milestones": "milestones", "gamma": "gamma",
    "scaling": "scaling", "warmup": "warmup",
}
"""Base-recipe fields of :class:`TrainConfig` -> the :class:`~legw.schedule.BaseRecipe` field."""


def build_base_recipe(base: dict[str, Any], overrides: dict[str, Any]) -> BaseRecipe:
    """``BaseRecipe(**base)`` with the :data:`RECIPE_FIELDS` in ``overrides`` applied; an
    invalid value raises ``ValueError`` naming its flag (see :func:`naming_flags`)."""
    fields = dict(base)
    for name, recipe_field in RECIPE_FIELDS.items():
        if overrides.get(name) is not None:
            fields[recipe_field] = overrides[name]
    with naming_flags():
        return BaseRecipe(**fields)


class naming_flags(contextlib.AbstractContextManager):
    """Re-raise a recipe's ``ValueError("peak_lr: ...")`` as ``"peak_lr (--base-lr): ..."``,
    so a command-line user learns which flag to change."""

    def __exit__(self, typ: Any, err: Any, tb: Any) -> bool:
        if isinstance(err, ValueError):
            field_name, sep, rest = str(err).partition(": ")
            by_recipe_field = {v: k for k, v in RECIPE_FIELDS.items()}
            by_recipe_field.update(global_batch_size="global_batch_size",
                                   dataset_size="dataset_size")
            if sep and field_name in by_recipe_field:
                name = by_recipe_field[field_name]
                flag = "--dataset-size" if name == "dataset_size" else _flag(name)
                raise ValueError(f"{field_name} ({flag}): {rest}") from None
        return False


def _flag(name: str) -> str:
    return "TASK" if name == "task" else flag_name(TrainConfig, name)


def check_seed(seed: Any, flag: str = "--seed") -> None:
    """``ValueError`` naming ``flag`` unless ``seed`` is an integer in ``[0, 2^32)``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"{flag}: must be an integer in [0, 2^32), got {seed!r}")


@dataclass
class TrainConfig:
    """One training run. ``None`` means "the task's default". The field docstrings are the
    flag help of ``legw train`` (and of ``schedule``, ``sweep``, ``tune``), via ``legw.flags``."""

    task: str
    """Task preset (see legw.tasks.TASKS)."""
    global_batch_size: int | None = field(default=None, metadata=flag("--batch-size", "B"))
    """Global batch size: samples per optimizer step over all processes (default: the base
    batch)."""
    micro_batch_size: int | None = field(default=None, metadata=flag(metavar="b"))
    """Samples per forward pass on one process (default: B / world size); B / (b x world size)
    micro-steps are accumulated per optimizer step."""
    optimizer: str | None = None
    """Optimizer: sgd, adam, adamw, lars or lamb (default: the task's)."""
    scaling: str | None = field(default=None, metadata=flag(metavar="RULE"))
    """LR scaling with k = B / B0: sqrt (peak LR x k^0.5), linear, none, the power of k, or
    adaptive (the gain measured from the gradient noise sets the LR and the number of steps;
    see legw.adaptive) (default: the recipe's, sqrt)."""
    warmup: str | None = field(default=None, metadata=flag(choices=WARMUP_RULES))
    """Warmup rule: legw (warmup epochs x k), constant (same epochs) or none (default: the
    recipe's)."""
    epochs: float | None = None
    """Training length in epochs, the same at every batch size (default: the recipe's)."""
    base_batch_size: int | None = field(default=None, metadata=flag(metavar="B0"))
    """Global batch size the base recipe was tuned at (default: the task's)."""
    base_lr: float | None = field(default=None, metadata=flag(metavar="LR"))
    """Peak LR at the base batch size (default: the task's)."""
    base_warmup_epochs: float | None = field(default=None, metadata=flag(metavar="W0"))
    """Warmup epochs at the base batch size (default: the task's)."""
    decay: str | None = field(default=None, metadata=flag(choices=DECAYS))
    """Decay after warmup (default: the recipe's)."""
    power: float | None = None
    """Power of the poly decay (default: the recipe's, 2)."""
    end_lr: float | None = None
    """Final LR of the poly and cosine decays (default: 0)."""
    milestones: tuple[float, ...] | None = field(default=None, metadata=flag(metavar="EPOCH"))
    """Epochs at which multistep decay multiplies the LR by gamma (after the scaled warmup)."""
    gamma: float | None = None
    """Factor per milestone (multistep) or per epoch (exponential), in (0, 1]."""
    weight_decay: float | None = None
    """Weight decay; bias and normalisation parameters get none (default: the task's)."""
    momentum: float | None = None
    """Momentum of sgd and lars (default: the task's)."""
    clip_grad_norm: float | None = field(default=None, metadata=flag(metavar="C"))
    """Clip the global gradient norm to C; 0 turns clipping off (default: the task's)."""
    seed: int = 0
    """Seed of the model initialisation, the data order and dropout (default 0)."""
    device: str = field(default="auto", metadata=flag(choices=DEVICES))
    """auto (CUDA when available), cpu or cuda."""
    out_dir: str | None = field(default=None, metadata=flag("--out", "DIR"))
    """Run directory (default: runs/TASK-bB-sSEED)."""
    resume: bool = False
    """Continue from the newest checkpoint in the run directory."""
    quiet: bool = False
    """No progress bar: a log line per epoch."""
    keep_checkpoints: int = field(default=2, metadata=flag(metavar="K"))
    """Checkpoints to keep, the newest (default 2)."""
    checkpoint_every: int = field(default=0, metadata=flag(metavar="STEPS"))
    """Also checkpoint every STEPS optimizer steps (default 0: at each epoch end only)."""
    max_steps: int | None = field(default=None, metadata=flag(metavar="N"))
    """Stop after N optimizer steps; the schedule still spans all epochs."""
    data_dir: str | None = field(default=None, metadata=flag(metavar="DIR"))
    """Directory with the data set files (default: the loader's own location)."""
    num_threads: int | None = field(default=None, metadata=flag("--threads", "N"))
    """torch intra-op threads per process (default: torch's choice)."""
    eval_every: float = field(default=0.0, metadata=flag(metavar="EPOCHS"))
    """Also evaluate every EPOCHS epochs, e.g. 0.25 (default 0: at each epoch end only); in
    epochs, not steps, so runs at different batch sizes are evaluated at the same points."""
    adaptive_lr_power: float | None = field(default=None, metadata=flag(metavar="P"))
    """With --scaling adaptive, the LR multiplier is gain^P (default by optimizer: 1, AdaScale's,
    for SGD and LARS; 0.5, the sqrt rule, for Adam, AdamW and LAMB, which the full gain blew
    up: docs/adaptive.md)."""
    adaptive_warmup: str = field(default="legw", metadata=flag(choices=ADAPTIVE_WARMUPS))
    """With --scaling adaptive, how the base warmup is replayed: legw (default), its steps at
    every batch; gain, advanced by the gain like the rest of the recipe (AdaScale's)."""
    noise_window: int | None = field(default=None, metadata=flag(metavar="STEPS"))
    """Steps over which the online gradient noise scale B_noise (logged per step to
    metrics.jsonl) is smoothed; 0 turns it off. Measured when a step has two or more
    micro-gradients: gradient accumulation or DDP ranks (default 50; with --scaling adaptive,
    1000 x B0 / B steps but at least 10: a horizon of 1000 base batches, as AdaScale's)."""
    channels_last: bool = False
    """Keep the model's 4-D weights and the image batches in channels-last (NHWC) memory:
    convolutions run ~1.4x faster on the CPU (docs/training.md); models without them are
    unaffected. Results agree with the default layout up to float rounding."""
    evaluate: bool = field(default=True, metadata=flag("--no-eval", negate=True))
    """Evaluate at each epoch end and at the end (--no-eval: training only, e.g. for
    benchmarks)."""

    def __post_init__(self) -> None:
        get_task(self.task)
        if self.milestones is not None:
            try:
                self.milestones = tuple(float(m) for m in self.milestones)
            except (TypeError, ValueError):
                raise ValueError(f"--milestones: expected a list of epochs, got "
                                 f"{self.milestones!r}") from None
        for name in ("out_dir", "data_dir"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise ValueError(f"{_flag(name)}: give a directory, got {v!r}")
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
        check_seed(self.seed)
        if self.keep_checkpoints < 1:
            raise ValueError(f"--keep-checkpoints: must be at least 1, got "
                             f"{self.keep_checkpoints!r}")
        if self.noise_window is not None and (self.noise_window == 1 or self.noise_window < 0):
            raise ValueError(f"--noise-window: must be 0 (off) or at least 2 steps, got "
                             f"{self.noise_window!r}")
        if self.adaptive_lr_power is not None and not (
                math.isfinite(self.adaptive_lr_power) and 0 <= self.adaptive_lr_power <= 1):
            raise ValueError(f"--adaptive-lr-power: must lie in [0, 1], got "
                             f"{self.adaptive_lr_power!r}")
        if self.adaptive_warmup not in ADAPTIVE_WARMUPS:
            raise ValueError(f"--adaptive-warmup: one of {', '.join(ADAPTIVE_WARMUPS)}, got "
                             f"{self.adaptive_warmup!r}")
        if not (math.isfinite(self.eval_every) and self.eval_every >= 0):
            raise ValueError(f"--eval-every: must be a number of epochs >= 0, got "
                             f"{self.eval_every!r}")
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
        base = self.base_recipe()  # recipe overrides are checked here, naming the field
        peak = base.scaled_peak_lr(self.batch_size())
        if peak > FLOAT32_MAX:
            raise ValueError(f"--base-lr: the peak LR at batch {self.batch_size()} is "
                             f"{peak:g}, beyond float32; use a smaller base LR (or --scaling)")

    # --- derived values ---------------------------------------------------------------------

    def get_task(self) -> Task:
        return get_task(self.task)

    def base_recipe(self) -> BaseRecipe:
        """The task's base recipe with the overrides applied."""
        fields = dataclasses.asdict(self)
        if self.is_adaptive():  # the gain replaces the rules; the recipe keeps the base's
            fields.update(scaling="sqrt", warmup="legw")
        try:
            return build_base_recipe(self.get_task().recipe.to_dict(), fields)
        except ValueError as e:
            if str(e).startswith("milestones") and self.epochs is not None:
                raise ValueError(f"{e} (with --epochs give --milestones too, or cut a run "
                                 "short with --max-steps)") from None
            raise

    def is_adaptive(self) -> bool:
        """``--scaling adaptive``: the run follows :class:`legw.adaptive.AdaptiveSchedule`."""
        return self.scaling == "adaptive"

    def noise_source(self, world_size: int) -> str | None:
        """Where the online ``B_noise`` gets its small-batch gradients: ``micro`` (every
        micro-step's, when accumulating), ``rank`` (each rank's before the all-reduce, under
        DDP without accumulation), or ``None`` (one micro-gradient per step, or the window 0)."""
        if self.resolved_noise_window() == 0:
            return None
        if self.accumulation_steps(world_size) >= 2:
            return "micro"
        return "rank" if world_size >= 2 else None

    def check_adaptive(self, world_size: int, flag: str = "--scaling adaptive",
                       noise_remedy: str = "give --micro-batch-size (e.g. the base batch) or "
                                           "several ranks, and keep --noise-window > 0") -> None:
        """Refuse ``--scaling adaptive`` where it cannot train: below the base batch, or above
        it with no step that has the two or more micro-gradients its gain is measured from.
        The ``ValueError`` starts with ``flag`` and, for the latter, ends with
        ``noise_remedy`` (a sweep names its own flags). A normalised-update optimizer (Adam,
        AdamW, LAMB) given the full gain gets a :class:`~legw.RecipeWarning` (it blew LAMB up:
        docs/adaptive.md)."""
        if not self.is_adaptive():
            return
        b0 = self.base_recipe().base_batch_size
        if self.batch_size() < b0:
            raise ValueError(f"{flag}: adaptive scaling grows the batch; {self.batch_size()} is "
                             f"below the base {b0}")
        if self.batch_size() > b0 and self.noise_source(world_size) is None:
            raise ValueError(f"{flag}: the gain needs the gradient noise, measured when a step "
                             f"has 2+ micro-gradients: {noise_remedy}")
        power = self.resolved_adaptive_lr_power()
        if self.optimizer_name() in NORMALISED_OPTIMIZERS and power > 0.5:
            warnings.warn(RecipeWarning(
                f"{flag} with {self.optimizer_name()} and --adaptive-lr-power {power:g}: its "
                f"step is normalised by the gradient's own magnitude, and the full gain blew "
                f"LAMB up at batch 8192 (docs/adaptive.md); leave --adaptive-lr-power at its "
                f"default (0.5 for {self.optimizer_name()})"), stacklevel=2)

    def resolved_adaptive_lr_power(self) -> float:
        """``adaptive_lr_power``, or the optimizer's default
        (:func:`legw.adaptive.default_lr_power`)."""
        if self.adaptive_lr_power is not None:
            return self.adaptive_lr_power
        return default_lr_power(self.optimizer_name())

    def resolved_noise_window(self) -> int:
        """``noise_window``, or its default (see the field)."""
        if self.noise_window is not None:
            return self.noise_window
        if self.is_adaptive():
            return default_noise_window(self.base_recipe().base_batch_size, self.batch_size())
        return 50

    def scaled_recipe(self, dataset_size: int) -> Recipe:
        """The base recipe scaled to this run's batch and ``dataset_size`` training samples;
        ``ValueError`` naming the flag when the result is not a valid schedule."""
        with naming_flags():
            return self.base_recipe().scale(self.batch_size(), dataset_size)

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

    def identity(self) -> dict[str, Any]:
        """What makes a run this run, resolved against the task: the task, seed, optimizer
        and its hyperparameters, and an adaptive run's gain settings (the base recipe is
        compared separately)."""
        adaptive = self.is_adaptive()
        return {"task": self.task, "seed": self.seed, "optimizer": self.optimizer_name(),
                "weight_decay": self.resolved_weight_decay(),
                "momentum": self.resolved_momentum(), "clip_grad_norm": self.resolved_clip(),
                # the base recipe of an adaptive run keeps sqrt as its rule: compare the switch
                "scaling": "adaptive" if adaptive else self.base_recipe().scaling,
                "adaptive_lr_power": self.resolved_adaptive_lr_power() if adaptive else None,
                "adaptive_warmup": self.adaptive_warmup if adaptive else None,
                # the window smooths the gain, so under adaptive scaling it sets the LR (as
                # given: the default window follows the batch, which an elastic resume changes)
                "noise_window": self.noise_window if adaptive else None}

    def check_resume(self, saved_config: dict[str, Any], saved_recipe: dict[str, Any],
                     source: str) -> None:
        """Refuse to continue the run recorded in ``source`` (its configuration and base
        recipe) as another one: every field but :data:`RESUME_FREE` must resolve to the same
        value. ``ValueError`` names the first flag that differs; nothing is changed."""
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        try:
            saved = TrainConfig(**{k: v for k, v in saved_config.items() if k in known})
        except (TypeError, ValueError) as e:
            raise ValueError(f"--resume: {source} records a configuration this version cannot "
                             f"read ({e}); train into a new --out") from None
        theirs, mine = saved.identity(), self.identity()
        if self.resolved_noise_window() == saved.resolved_noise_window():
            # the default window given explicitly (or the reverse): the same smoothing
            theirs["noise_window"] = mine["noise_window"]
        diffs = [(_flag(k), mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]]
        by_recipe_field = {v: k for k, v in RECIPE_FIELDS.items()}
        recipe = self.base_recipe().to_dict()
        diffs += [(_flag(by_recipe_field[k]), recipe[k], saved_recipe[k]) for k in recipe
                  if k in by_recipe_field and k in saved_recipe
                  and _plain(recipe[k]) != _plain(saved_recipe[k])]
        if diffs:
            flag, new, old = diffs[0]
            raise ValueError(f"{flag}: {new!r} differs from {old!r}, recorded in {source}; a "
                             f"resumed run may change only the batch size and how it runs, so "
                             f"resume with the same {flag}, or train into a new --out")

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


def _plain(value: Any) -> Any:
    """Lists and tuples compare equal (a checkpoint may hold either)."""
    return list(value) if isinstance(value, (list, tuple)) else value
