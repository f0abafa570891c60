"""``TrainConfig``: every knob of a training run, declared once (type, default, docstring,
flag, group) and checked; :meth:`TrainConfig.resolve` derives every value a run uses, once, as a
:class:`~legw.training.spec.RunSpec`.

``None`` means "the task's default". Batch arithmetic (nanoGPT convention)::

    global_batch_size = micro_batch_size * world_size * accumulation_steps

The global batch is what the recipe is scaled to; the micro batch is what one forward pass
holds; accumulation steps are derived and must be a whole number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from legw.adaptive import (
    ADAPTIVE_WARMUPS,
    NORMALISED_OPTIMIZERS,
    default_lr_power,
    default_noise_window,
)
from legw.flags import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    Check,
    at_least,
    check_fields,
    flag,
    flag_name,
    interval,
)
from legw.hyper import OPTIMIZER_SCALINGS
from legw.schedule import (
    DECAYS,
    WARMUP_RULES,
    BaseRecipe,
    RecipeError,
    RecipeWarning,
    scaling_power,
)
from legw.tasks import get_task
from legw.training.spec import RunSpec

DEVICES = ("auto", "cpu", "cuda")
SHARDINGS = ("ddp", "fsdp")
SEED_LIMIT = 2**32
"""Seeds lie in ``[0, 2^32)``: numpy's range, and the data order seeds a torch generator with
``seed * 1_000_003 + epoch``, which must fit in 64 bits."""
FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: a peak LR above it cannot be written into an optimizer."""


def run_field(group: str, default: Any = None, *, recipe_field: str | None = None,
              resume_free: bool = False, study: bool = False, trial: bool = False,
              **flag_meta: Any) -> Any:
    """A :class:`TrainConfig` field, classified once in its metadata (flags, help, records,
    resume and studies derive from it):

    - ``group``: ``batch``, ``recipe`` (a :class:`~legw.schedule.BaseRecipe` field:
      ``recipe_field``, default the same name), ``optimizer`` or ``run``; the flag groups of
      ``legw train``;
    - ``resume_free``: a resumed run may change it (the batch, and how the run executes);
      every other field must resolve to the same value (:meth:`RunSpec.check_resume`);
    - ``study``: ``legw sweep`` / ``legw tune`` apply it to every run they launch;
    - ``trial``: a ``legw tune`` trial sets it itself (the LR point and its rules);
    - the rest (``name``, ``metavar``, ``choices``, ``negate``) is :func:`legw.flags.flag`'s.
    """
    meta = {**flag(**flag_meta), "group": group, "resume_free": resume_free, "study": study,
            "trial": trial}
    if group == "recipe":
        meta["recipe_field"] = recipe_field
    return field(default=default, metadata=meta)


def config_fields(**where: Any) -> tuple[str, ...]:
    """Names of the :class:`TrainConfig` fields whose metadata matches ``where``, in field
    order: ``config_fields(group="recipe")``, ``config_fields(study=True)``."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig)
                 if all(f.metadata.get(k, False) == v for k, v in where.items()))


def recipe_field(name: str) -> str:
    """The :class:`~legw.schedule.BaseRecipe` field of recipe-group field ``name``."""
    return _FIELDS[name].metadata.get("recipe_field") or name


def flag_of(name: str) -> str:
    """The flag of field ``name`` (``TASK`` for the positional task)."""
    return "TASK" if name == "task" else flag_name(TrainConfig, name)


def recipe_flag(recipe_name: str) -> str | None:
    """The flag that sets :class:`~legw.schedule.BaseRecipe` field ``recipe_name`` (``None``
    when no flag does), or ``--dataset-size`` / ``--batch-size`` for a scaling error's fields."""
    for name in config_fields(group="recipe"):
        if recipe_field(name) == recipe_name:
            return flag_of(name)
    return {"global_batch_size": flag_of("global_batch_size"),
            "dataset_size": "--dataset-size"}.get(recipe_name)


@contextlib.contextmanager
def recipe_errors_name_flags(**flags: str) -> Iterator[None]:
    """Re-raise a :class:`~legw.schedule.RecipeError` on ``peak_lr`` as
    ``"peak_lr (--base-lr): ..."``, so a command-line user learns which flag to change
    (``flags``: a command's own flag for a field, e.g. ``global_batch_size="--batch-sizes"``)."""
    try:
        yield
    except RecipeError as e:
        flag_text = flags.get(e.field) or recipe_flag(e.field)
        if flag_text is None:
            raise
        raise ValueError(f"{e.field} ({flag_text}): {e.message}") from None


def build_base_recipe(base: dict[str, Any], overrides: dict[str, Any]) -> BaseRecipe:
    """``BaseRecipe(**base)`` with the recipe-group fields given in ``overrides`` applied; an
    invalid value raises ``ValueError`` naming its flag."""
    fields = dict(base)
    for name in config_fields(group="recipe"):
        if overrides.get(name) is not None:
            fields[recipe_field(name)] = overrides[name]
    with recipe_errors_name_flags():
        return BaseRecipe(**fields)


SEED = Check("an integer in [0, 2^32)",
             lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < SEED_LIMIT)
DIRECTORY = Check("a directory", lambda v: isinstance(v, str) and bool(v.strip()))
NOISE_WINDOW = Check("0 (off) or at least 2 steps",
                     lambda v: isinstance(v, int) and not isinstance(v, bool) and v != 1
                     and v >= 0)


def check_seed(seed: Any, flag: str = "--seed") -> None:
    """``ValueError`` naming ``flag`` unless ``seed`` is an integer in ``[0, 2^32)``."""
    SEED(seed, flag)


@dataclass
class TrainConfig:
    """One training run. ``None`` means "the task's default". The field docstrings are the
    flag help of ``legw train`` (and of ``schedule``, ``sweep``, ``tune``), via ``legw.flags``;
    the metadata (:func:`run_field`) classifies each field once."""

    task: str
    """Task preset (see legw.tasks.TASKS)."""
    global_batch_size: int | None = run_field("batch", name="--batch-size", metavar="B",
                                              check=POSITIVE_INT, resume_free=True)
    """Global batch size: samples per optimizer step over all processes (default: the base
    batch)."""
    micro_batch_size: int | None = run_field("batch", metavar="b", check=POSITIVE_INT,
                                             resume_free=True)
    """Samples per forward pass on one process (default: B / world size); B / (b x world size)
    micro-steps are accumulated per optimizer step."""
    base_batch_size: int | None = run_field("recipe", metavar="B0", check=POSITIVE_INT,
                                            study=True, trial=True)
    """Global batch size the base recipe was tuned at (default: the task's)."""
    base_lr: float | None = run_field("recipe", recipe_field="peak_lr", metavar="LR",
                                      study=True, trial=True)
    """Peak LR at the base batch size (default: the task's)."""
    base_warmup_epochs: float | None = run_field("recipe", recipe_field="warmup_epochs",
                                                 metavar="W0", study=True, trial=True)
    """Warmup epochs at the base batch size (default: the task's)."""
    epochs: float | None = run_field("recipe", study=True)
    """Training length in epochs, the same at every batch size (default: the recipe's)."""
    decay: str | None = run_field("recipe", choices=DECAYS, study=True)
    """Decay after warmup (default: the recipe's)."""
    power: float | None = run_field("recipe", study=True)
    """Power of the poly decay (default: the recipe's, 2)."""
    end_lr: float | None = run_field("recipe", study=True)
    """Final LR of the poly and cosine decays (default: 0)."""
    milestones: tuple[float, ...] | None = run_field("recipe", metavar="EPOCH", study=True)
    """Epochs at which multistep decay multiplies the LR by gamma (after the scaled warmup)."""
    gamma: float | None = run_field("recipe", study=True)
    """Factor per milestone (multistep) or per epoch (exponential), in (0, 1]."""
    scaling: str | None = run_field("recipe", metavar="RULE", trial=True)
    """LR scaling with k = B / B0: sqrt (peak LR x k^0.5), linear, none, the power of k, or
    adaptive (the gain measured from the gradient noise sets the LR and the number of steps;
    see legw.adaptive) (default: the recipe's, sqrt)."""
    warmup: str | None = run_field("recipe", choices=WARMUP_RULES, trial=True)
    """Warmup rule: legw (warmup epochs x k), constant (same epochs) or none (default: the
    recipe's)."""
    optimizer: str | None = run_field("optimizer")
    """Optimizer: sgd, adam, adamw, lars or lamb (default: the task's)."""
    weight_decay: float | None = run_field("optimizer", check=NON_NEGATIVE, study=True)
    """Weight decay; bias and normalisation parameters get none (default: the task's)."""
    momentum: float | None = run_field("optimizer", check=interval(0, 1, "[)"), study=True)
    """Momentum of sgd and lars (default: the task's)."""
    clip_grad_norm: float | None = run_field("optimizer", metavar="C", check=NON_NEGATIVE,
                                             study=True)
    """Clip the global gradient norm to C; 0 turns clipping off (default: the task's)."""
    optimizer_scaling: str = run_field("optimizer", "none", choices=OPTIMIZER_SCALINGS,
                                       study=True)
    """Scale the optimizer's other batch-dependent hyperparameters with k = B / B0: srr
    (Adam/AdamW/LAMB betas 1 - k (1 - beta) and epsilon / sqrt(k), Malladi et al. 2022; weight
    decay kept at its timescale in epochs, lambda x k / (LR ratio), but Adam's L2 term) or none
    (default: only the LR and warmup follow the batch; legw.hyper)."""
    sharding: str = run_field("run", "ddp", choices=SHARDINGS, study=True)
    """How the ranks hold the model: ddp (a replica each; DistributedDataParallel) or fsdp
    (parameters, gradients and optimizer state sharded; FSDP2's fully_shard per block and at
    the root, checkpoints sharded with torch.distributed.checkpoint): docs/distributed.md."""
    seed: int = run_field("run", 0, check=SEED)
    """Seed of the model initialisation, the data order and dropout (default 0)."""
    device: str = run_field("run", "auto", choices=DEVICES, resume_free=True, study=True)
    """auto (CUDA when available), cpu or cuda."""
    out_dir: str | None = run_field("run", name="--out", metavar="DIR", check=DIRECTORY,
                                    resume_free=True)
    """Run directory (default: runs/TASK-bB-sSEED)."""
    resume: bool = run_field("run", False, resume_free=True)
    """Continue from the newest checkpoint in the run directory."""
    data_dir: str | None = run_field("run", metavar="DIR", check=DIRECTORY, resume_free=True)
    """Directory with the data set files (default: the loader's own location)."""
    quiet: bool = run_field("run", False, resume_free=True)
    """No progress bar and no start-up lines: a log line per epoch, and errors."""
    max_steps: int | None = run_field("run", metavar="N", check=POSITIVE_INT,
                                      resume_free=True, study=True)
    """Stop after N optimizer steps; the schedule still spans all epochs."""
    checkpoint_every: int = run_field("run", 0, metavar="STEPS", check=NON_NEGATIVE_INT,
                                      resume_free=True, study=True)
    """Also checkpoint every STEPS optimizer steps (default 0: at each epoch end only)."""
    keep_checkpoints: int = run_field("run", 2, metavar="K", check=at_least(1),
                                      resume_free=True)
    """Checkpoints to keep, the newest (default 2)."""
    num_threads: int | None = run_field("run", name="--threads", metavar="N",
                                        check=POSITIVE_INT, resume_free=True)
    """torch intra-op threads per process (default: torch's choice)."""
    eval_every: float = run_field("run", 0.0, metavar="EPOCHS", check=NON_NEGATIVE,
                                  resume_free=True, study=True)
    """Also evaluate every EPOCHS epochs, e.g. 0.25 (default 0: at each epoch end only); in
    epochs, not steps, so runs at different batch sizes are evaluated at the same points."""
    adaptive_lr_power: float | None = run_field("run", metavar="P", check=interval(0, 1),
                                                study=True)
    """With --scaling adaptive, the LR multiplier is gain^P (default by optimizer: 1, AdaScale's,
    for SGD and LARS; 0.5, the sqrt rule, for Adam, AdamW and LAMB, which the full gain blew
    up: docs/adaptive.md)."""
    adaptive_warmup: str = run_field("run", "legw", choices=ADAPTIVE_WARMUPS, study=True)
    """With --scaling adaptive, how the base warmup is replayed: legw (default), its steps at
    every batch; gain, advanced by the gain like the rest of the recipe (AdaScale's)."""
    noise_window: int | None = run_field("run", metavar="STEPS", check=NOISE_WINDOW,
                                       study=True)
    """Steps over which the online gradient noise scale B_noise (logged per step to
    metrics.jsonl) is smoothed; 0 turns it off. Measured when a step has two or more
    micro-gradients: gradient accumulation or DDP ranks (default 50; with --scaling adaptive,
    1000 x B0 / B steps but at least 10: a horizon of 1000 base batches, as AdaScale's)."""
    batch_ramp: str | None = run_field("batch", metavar="RAMP")
    """Grow the global batch during training, from the base batch up to --batch-size: noise
    (to the measured gradient noise scale B_noise), seesaw (double it wherever the base
    schedule halves the LR) or B1@E1,B2@E2,... (batch B_i from epoch E_i); the LR follows by
    the --scaling rule, the run ends at the base recipe's epochs (docs/batch-ramp.md)."""
    ramp_factor: float = run_field("batch", 1.0, metavar="F", check=POSITIVE)
    """With --batch-ramp noise, grow the batch to F x B_noise (default 1: the critical batch)."""
    ramp_budget: str = run_field("batch", "epochs", choices=("epochs", "tau"))
    """When a --batch-ramp run ends: epochs, at the base recipe's epochs of samples (default);
    tau, when the base recipe's steps are made up, each step counting its gain measured from
    the gradient noise (the adaptive rule's position; needs the noise measured)."""
    channels_last: bool = run_field("run", False, resume_free=True, study=True)
    """Keep the model's 4-D weights and the image batches in channels-last (NHWC) memory:
    convolutions run ~1.4x faster on the CPU (docs/training.md); models without them are
    unaffected. Results agree with the default layout up to float rounding."""
    evaluate: bool = run_field("run", True, name="--no-eval", negate=True, resume_free=True)
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
        check_fields(self)  # each field's check= and choices, naming its flag
        if self.batch_ramp is not None:
            from legw.adaptive.ramp import RampRule

            RampRule.parse(self.batch_ramp)
        if self.optimizer is not None:
            from legw.optim import OPTIMIZERS

            if self.optimizer not in OPTIMIZERS:
                raise ValueError(f"--optimizer: unknown {self.optimizer!r}; choose from "
                                 f"{', '.join(OPTIMIZERS)}")
        base = self._base_recipe()  # recipe overrides are checked here, naming the flag
        b = self.global_batch_size or base.base_batch_size
        peak = base.scaled_peak_lr(b)
        if peak > FLOAT32_MAX:
            raise ValueError(f"--base-lr: the peak LR at batch {b} is {peak:g}, beyond "
                             f"float32; use a smaller base LR (or --scaling)")

    def _base_recipe(self) -> BaseRecipe:
        """The task's base recipe with the overrides applied; an adaptive run keeps sqrt +
        LEGW as its rules (the gain replaces them)."""
        fields = dataclasses.asdict(self)
        if self.scaling == "adaptive":
            fields.update(scaling="sqrt", warmup="legw")
        try:
            return build_base_recipe(get_task(self.task).recipe.to_dict(), fields)
        except ValueError as e:
            if str(e).startswith("milestones") and self.epochs is not None:
                raise ValueError(f"{e} (with --epochs give --milestones too, or cut a run "
                                 "short with --max-steps)") from None
            raise

    def resolve(self, world_size: int = 1, *, adaptive_flag: str = "--scaling adaptive",
                noise_remedy: str = "give --micro-batch-size (e.g. the base batch) or "
                                    "several ranks, and keep --noise-window > 0") -> RunSpec:
        """Every value this run uses on ``world_size`` processes, derived once.

        ``ValueError`` (naming the flag) when the batch does not split into micro-batches over
        the ranks, or when ``--scaling adaptive`` cannot train: below the base batch, or above
        it with no step that has the two or more micro-gradients its gain is measured from
        (the message starts with ``adaptive_flag`` and ends with ``noise_remedy``: a sweep
        names its own flags). A normalised-update optimizer (Adam, AdamW, LAMB) given the full
        gain gets a :class:`~legw.RecipeWarning` (it blew LAMB up: docs/adaptive.md)."""
        task, base = get_task(self.task), self._base_recipe()
        b = self.global_batch_size or base.base_batch_size
        if self.micro_batch_size is None and b % world_size:
            raise ValueError(f"--batch-size: {b} is not divisible by the world size "
                             f"{world_size}")
        rule = None
        if self.batch_ramp is not None:
            from legw.adaptive.ramp import RampRule

            rule = RampRule.parse(self.batch_ramp)
        micro = self.micro_batch_size or self._default_micro(rule, base, b, world_size)
        if b % (micro * world_size):
            raise ValueError(f"--batch-size {b} is not --micro-batch-size {micro} x world size "
                             f"{world_size} x a whole number of accumulation steps")
        accum = b // (micro * world_size)
        ramp = self._check_ramp(rule, task, base, b, world_size, micro)
        optimizer = self.optimizer or task.optimizer
        adaptive = self.scaling == "adaptive"
        if self.noise_window is not None:
            window = self.noise_window
        else:
            window = default_noise_window(base.base_batch_size, b) if adaptive else 50
        fsdp = self.sharding == "fsdp"
        if fsdp and world_size < 2:
            raise ValueError("--sharding fsdp: shards over 2 or more processes; run it under "
                             "torchrun --nproc-per-node N (N >= 2), or use --sharding ddp")
        if window == 0:
            source = None
        elif fsdp:  # each rank's gradient, read before the reduce-scatter
            source = "rank"
        elif ramp is not None:  # every step's micro-gradients, whatever its accumulation
            source = "micro" if ramp.start_batch(base.base_batch_size) > micro else None
        else:
            source = "micro" if accum >= 2 else "rank" if world_size >= 2 else None
        if ramp is not None and ramp.needs_noise and source is None:
            raise ValueError("--batch-ramp noise: follows the gradient noise, measured from "
                             "two or more micro-gradients a step: keep --noise-window > 0 and "
                             "a --micro-batch-size below the first batch")
        ramp_power = None
        if ramp is not None:  # the LR rule of a ramp knows the optimizer (legw.adaptive.ramp)
            ramp_power = (default_lr_power(optimizer) if self.scaling is None
                          else scaling_power(self.scaling))
        if ramp is not None and self.ramp_budget == "tau" and source is None:
            raise ValueError("--ramp-budget tau: counts each step's gain from the gradient "
                             "noise, measured from two or more micro-gradients a step: keep "
                             "--noise-window > 0 and a --micro-batch-size below the first "
                             "batch")
        power = None
        if adaptive:
            power = (default_lr_power(optimizer) if self.adaptive_lr_power is None
                     else self.adaptive_lr_power)
            _check_adaptive(b, base.base_batch_size, source, optimizer, power, adaptive_flag,
                            noise_remedy)
        clip = task.clip_grad_norm if self.clip_grad_norm is None else self.clip_grad_norm
        return RunSpec(
            config=self, task=task, base=base, world_size=world_size, global_batch_size=b,
            micro_batch_size=micro, accumulation_steps=accum, optimizer=optimizer,
            weight_decay=task.weight_decay if self.weight_decay is None else self.weight_decay,
            momentum=task.momentum if self.momentum is None else self.momentum,
            clip_grad_norm=clip or None, noise_source=source, noise_window=window,
            adaptive_lr_power=power, adaptive_warmup=self.adaptive_warmup if adaptive else None,
            run_dir=self.out_dir or f"runs/{self.task}-b{b}-s{self.seed}", batch_ramp=ramp,
            ramp_factor=self.ramp_factor, ramp_budget=self.ramp_budget,
            ramp_lr_power=ramp_power, optimizer_scaling=self.optimizer_scaling)

    @staticmethod
    def _default_micro(rule: Any, base: BaseRecipe, b: int, world_size: int) -> int:
        """The micro batch when none is given: ``B / W``; with a batch ramp (``rule``), the
        first batch over the ranks (halved on one process for the noise ramp, which needs two
        micro-gradients a step)."""
        if rule is None:
            return b // world_size
        start = rule.start_batch(base.base_batch_size)
        parts = world_size * (2 if rule.needs_noise and world_size == 1 else 1)
        if start % parts:
            raise ValueError(f"--batch-ramp: the first batch {start} does not split into "
                             f"{parts} micro-batches; give --micro-batch-size")
        return start // parts

    def _check_ramp(self, rule: Any, task: Any, base: BaseRecipe, b: int, world_size: int,
                    micro: int) -> Any:
        """The parsed ``--batch-ramp`` (``None`` without one), checked against the run."""
        if rule is None:
            return None
        if self.scaling == "adaptive":
            raise ValueError("--batch-ramp: grows the batch itself; use it with --scaling sqrt "
                             "or linear, not adaptive")
        if task.kind != "image":
            rule.check_streams()
        if rule.needs_noise and self.sharding == "fsdp":
            raise ValueError("--batch-ramp noise: not with --sharding fsdp yet (its noise is "
                             "read per rank, whose share changes with the batch); use ddp")
        start = rule.start_batch(base.base_batch_size)
        unit = micro * world_size
        if start % unit or start > b:
            raise ValueError(f"--batch-ramp: the first batch {start} must be a multiple of "
                             f"--micro-batch-size x world size ({unit}) and at most "
                             f"--batch-size {b}")
        return rule

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


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _check_adaptive(batch: int, base_batch: int, source: str | None, optimizer: str,
                    power: float, flag_text: str, noise_remedy: str) -> None:
    if batch < base_batch:
        raise ValueError(f"{flag_text}: adaptive scaling grows the batch; {batch} is below "
                         f"the base {base_batch}")
    if batch > base_batch and source is None:
        raise ValueError(f"{flag_text}: the gain needs the gradient noise, measured when a "
                         f"step has 2+ micro-gradients: {noise_remedy}")
    if optimizer in NORMALISED_OPTIMIZERS and power > 0.5:
        warnings.warn(RecipeWarning(
            f"{flag_text} with {optimizer} and --adaptive-lr-power {power:g}: its step is "
            f"normalised by the gradient's own magnitude, and the full gain blew LAMB up at "
            f"batch 8192 (docs/adaptive.md); leave --adaptive-lr-power at its default (0.5 "
            f"for {optimizer})"), stacklevel=3)
