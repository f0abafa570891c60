"""``RunSpec``: a :class:`~legw.training.config.TrainConfig` resolved once, at a world size.

A config says what the user asked for (``None`` = "the task's default"); the spec holds every
value the run uses, derived in one place (:meth:`TrainConfig.resolve`)::

    global_batch_size = micro_batch_size * world_size * accumulation_steps

plus the task and its base recipe with the overrides applied, the optimizer and its
hyperparameters, the clipping threshold, where the online noise comes from and its window,
the adaptive rule's settings, and the run directory. The trainer, the run record
(``config.json``'s ``"resolved"`` block), the resume check, a sweep's run identity and
``legw plan --from-run`` read the spec instead of re-deriving these values. No torch at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from legw.schedule import BaseRecipe, Recipe
from legw.tasks import Task

if TYPE_CHECKING:
    from legw.adaptive.rule import AdaptiveSchedule
    from legw.training.config import TrainConfig

MOMENTUM_OPTIMIZERS = ("sgd", "lars")
"""Optimizers that take ``momentum`` (the Adam family has its own betas)."""
MOMENT_OPTIMIZERS = {"adam": 1e-8, "adamw": 1e-8, "lamb": 1e-6}
"""Optimizers with Adam's moments (betas) and epsilon, and their default epsilon."""


def optimizer_hyperparameters(optimizer: str, weight_decay: float,
                              betas: tuple[float, float] | None = None,
                              eps: float | None = None) -> Any:
    """``optimizer``'s batch-dependent hyperparameters at ``B0``
    (:class:`legw.hyper.Hyperparameters`): the Adam family's betas and epsilon (torch's defaults
    unless given), the decay (torch's ``Adam``: an L2 term, ``decay_is_l2``)."""
    from legw.hyper import Hyperparameters

    if optimizer not in MOMENT_OPTIMIZERS:
        return Hyperparameters(weight_decay=weight_decay)
    return Hyperparameters(betas=betas if betas is not None else (0.9, 0.999),
                           eps=eps if eps is not None else MOMENT_OPTIMIZERS[optimizer],
                           weight_decay=weight_decay, decay_is_l2=optimizer == "adam")


@dataclass(frozen=True)
class RunSpec:
    """Every resolved value of one run (see the module docstring)."""

    config: TrainConfig
    """The configuration as given."""
    task: Task
    base: BaseRecipe
    """The task's base recipe with the overrides applied (an adaptive run keeps sqrt + LEGW as
    its rules: the gain replaces them)."""
    world_size: int
    global_batch_size: int
    micro_batch_size: int
    accumulation_steps: int
    optimizer: str
    weight_decay: float
    momentum: float
    clip_grad_norm: float | None
    """``None``: no clipping."""
    noise_source: str | None
    """Where the small-batch draws of the online noise come from: ``micro``, each micro-step's
    gradient (``micro_batch_size`` samples; 2+ micro-steps under DDP), ``rank``, each rank's
    gradient (``B / W`` samples; DDP without accumulation, and always under FSDP, where the
    micro-steps are accumulated unsharded before one reduce-scatter) or ``None``."""
    noise_window: int
    """Steps the online ``B_noise`` is smoothed over (0: not measured)."""
    adaptive_lr_power: float | None
    """``--scaling adaptive``: the LR multiplier is ``gain ** adaptive_lr_power``; else None."""
    adaptive_warmup: str | None
    run_dir: str
    batch_ramp: Any = None
    """``--batch-ramp``: the parsed :class:`~legw.adaptive.ramp.RampRule`, else ``None``;
    ``global_batch_size`` is then the largest batch."""
    ramp_factor: float = 1.0
    ramp_budget: str = "epochs"
    optimizer_scaling: str = "none"
    """``srr``: betas, epsilon and weight decay scaled to the batch (:mod:`legw.hyper`)."""
    ramp_lr_power: float | None = None
    """A ramp's LR is the schedule x (B / B_start) ** this: by the optimizer (1 for SGD and
    LARS, 0.5 for Adam-type), or --scaling's power when given; Seesaw's is 0.5."""

    @property
    def is_adaptive(self) -> bool:
        return self.adaptive_lr_power is not None

    @property
    def noise_batch_size(self) -> int | None:
        """Samples behind each small-batch draw of the online noise (``None``: not measured)."""
        if self.noise_source is None:
            return None
        if self.noise_source == "micro":
            return self.micro_batch_size
        return self.global_batch_size // self.world_size

    @property
    def sharding(self) -> str:
        return self.config.sharding

    @property
    def scaling(self) -> str:
        """The LR rule: ``adaptive`` or the base recipe's."""
        return "adaptive" if self.is_adaptive else self.base.scaling

    def base_hyperparameters(self) -> Any:
        """The optimizer's batch-dependent hyperparameters as tuned at ``B0``
        (:class:`legw.hyper.Hyperparameters`): torch's betas and epsilon, the weight decay."""
        return optimizer_hyperparameters(self.optimizer, self.weight_decay)

    @property
    def scales_per_step(self) -> bool:
        """The hyperparameters follow each step's effective batch (the adaptive gain, a ramp's
        batch) instead of being set once for the run's batch."""
        return self.optimizer_scaling != "none" and (self.is_adaptive
                                                     or self.batch_ramp is not None)

    def hyperparameters(self) -> Any:
        """The optimizer's batch-dependent hyperparameters at this run's batch: the base values
        scaled by ``--optimizer-scaling`` with ``k = B / B0`` and the LR rule's ratio; ``None``
        for an adaptive run or a ramp, which scales them each step at its effective batch."""
        from legw.hyper import scale_hyperparameters

        if self.scales_per_step:
            return None
        b, b0 = self.global_batch_size, self.base.base_batch_size
        return scale_hyperparameters(self.base_hyperparameters(), b / b0,
                                     self.base.scaled_peak_lr(b) / self.base.peak_lr,
                                     self.optimizer_scaling)

    def optimizer_kwargs(self) -> dict[str, Any]:
        """Hyperparameters :func:`legw.optim.build_optimizer` takes besides the LR and the
        groups: momentum for SGD and LARS. The Adam family is built with torch's betas and
        epsilon, the base values :mod:`legw.hyper` scales in the trainer."""
        if self.optimizer in MOMENTUM_OPTIMIZERS:
            return {"momentum": self.momentum}
        return {}

    def build_optimizer(self, model: Any, lr: float) -> tuple[Any, Any]:
        """``(optimizer, param report)`` for ``model`` with the base hyperparameters: decay and
        the trust ratio excluded from bias and normalisation parameters
        (:func:`legw.optim.param_groups`)."""
        from legw.optim import build_optimizer, param_groups

        groups, report = param_groups(model, self.weight_decay)
        return build_optimizer(self.optimizer, groups, lr=lr, **self.optimizer_kwargs()), report

    def recipe(self, dataset_size: int) -> Recipe:
        """The base recipe scaled to this run's batch over ``dataset_size`` samples an epoch;
        ``ValueError`` naming the flag when it is no valid schedule."""
        from legw.training.config import recipe_errors_name_flags

        with recipe_errors_name_flags():
            return self.base.scale(self.global_batch_size, dataset_size)

    def adaptive_schedule(self, dataset_size: int) -> AdaptiveSchedule | None:
        """``--scaling adaptive``: the schedule whose gain the online noise sets; else None."""
        if not self.is_adaptive:
            return None
        from legw.adaptive.rule import AdaptiveSchedule

        return AdaptiveSchedule.for_batch(self.base, self.global_batch_size, dataset_size,
                                          self.adaptive_lr_power, self.adaptive_warmup)

    def ramp(self, dataset_size: int, epoch_steps: Any = None) -> Any:
        """``--batch-ramp``: the :class:`~legw.adaptive.ramp.BatchRamp` of this run; else
        ``None`` (``epoch_steps``: a token-stream task's steps per epoch at a batch)."""
        if self.batch_ramp is None:
            return None
        from legw.adaptive.ramp import BatchRamp
        from legw.training.config import recipe_errors_name_flags

        with recipe_errors_name_flags():
            return BatchRamp(self.base, self.batch_ramp, self.global_batch_size,
                             self.micro_batch_size * self.world_size, dataset_size,
                             self.ramp_factor, self.ramp_budget, self.ramp_lr_power,
                             epoch_steps)

    def identity(self) -> dict[str, Any]:
        """What makes a run this run beyond its base recipe (compared on resume): the task,
        seed, optimizer and its hyperparameters, and an adaptive run's gain settings."""
        return {"task": self.task.name, "seed": self.config.seed, "optimizer": self.optimizer,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "clip_grad_norm": self.clip_grad_norm, "scaling": self.scaling,
                "adaptive_lr_power": self.adaptive_lr_power,
                "adaptive_warmup": self.adaptive_warmup, "sharding": self.sharding,
                # the window smooths the gain, so under adaptive scaling it sets the LR (as
                # given: the default window follows the batch, which an elastic resume changes)
                "noise_window": self.config.noise_window if self.is_adaptive else None,
                "batch_ramp": None if self.batch_ramp is None else str(self.batch_ramp),
                "ramp_factor": self.ramp_factor if self.batch_ramp is not None else None,
                "ramp_budget": self.ramp_budget if self.batch_ramp is not None else None,
                "ramp_lr_power": self.ramp_lr_power,
                "optimizer_scaling": self.optimizer_scaling}

    def to_dict(self) -> dict[str, Any]:
        """The ``"resolved"`` block of ``config.json``."""
        return {"task": self.task.name, "metric": self.task.metric,
                "global_batch_size": self.global_batch_size,
                "micro_batch_size": self.micro_batch_size, "world_size": self.world_size,
                "accumulation_steps": self.accumulation_steps, "optimizer": self.optimizer,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "clip_grad_norm": self.clip_grad_norm, "noise_source": self.noise_source,
                "noise_small_batch_size": self.noise_batch_size, "sharding": self.sharding,
                "noise_window": self.noise_window,
                "adaptive_lr_power": self.adaptive_lr_power,
                "adaptive_warmup": self.adaptive_warmup, "run_dir": self.run_dir,
                "batch_ramp": None if self.batch_ramp is None else str(self.batch_ramp),
                "optimizer_scaling": self.optimizer_scaling,
                "base_hyperparameters": self.base_hyperparameters().to_dict(),
                "hyperparameters": None if self.scales_per_step
                else self.hyperparameters().to_dict(),
                "hyperparameters_per_step": self.scales_per_step}

    def check_resume(self, saved_config: dict[str, Any], saved_recipe: dict[str, Any],
                     source: str) -> None:
        """Refuse to continue the run recorded in ``source`` (its configuration and the base
        recipe it trained with) as another one: every field that is not resume-free must
        resolve to the same value (the batch may differ: an elastic resume). ``ValueError``
        names the first flag that differs; nothing is changed."""
        from legw.training.config import TrainConfig, flag_of, recipe_flag

        known = {k: v for k, v in saved_config.items() if k in TrainConfig.__dataclass_fields__}
        if (known.get("scaling") == "adaptive") != self.is_adaptive:  # before resolving it:
            # an adaptive config resolved at a batch without noise would be refused as such
            _refuse(flag_of("scaling"), self.config.scaling, known.get("scaling"), source)
        # resolved at this run's batch (resume-free): the identity does not depend on it
        known.update(global_batch_size=self.config.global_batch_size,
                     micro_batch_size=self.config.micro_batch_size)
        try:
            saved = TrainConfig(**known).resolve(self.world_size)
        except (TypeError, ValueError) as e:
            raise ValueError(f"--resume: {source} records a configuration this version cannot "
                             f"read ({e}); train into a new --out") from None
        mine, theirs = self.identity(), saved.identity()
        if self.noise_window == saved.noise_window:  # the default given explicitly, or back
            theirs["noise_window"] = mine["noise_window"]
        diffs = [(flag_of(k), mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]]
        recipe = self.base.to_dict()
        diffs += [(recipe_flag(k), recipe[k], saved_recipe[k]) for k in recipe
                  if recipe_flag(k) and k in saved_recipe
                  and _plain(recipe[k]) != _plain(saved_recipe[k])]
        if diffs:
            _refuse(*diffs[0], source)

    def same_training(self) -> str:
        """A key equal for two specs that train identically (a sweep trains them once): the
        LR rules replaced by the peak LR and warmup epochs they give at this batch. Off the
        base batch the adaptive rule trains unlike any fixed rule; at it, it trains as LEGW."""
        d = self.config.to_dict()
        for name in ("out_dir", "scaling", "warmup"):
            d.pop(name)
        d["peak_and_warmup"] = self.base.peak_and_warmup(self.global_batch_size)
        d["adaptive"] = self.is_adaptive and self.global_batch_size != self.base.base_batch_size
        return repr(sorted(d.items()))


def _refuse(flag: str, new: Any, was: Any, source: str) -> None:
    raise ValueError(f"{flag}: {new!r} differs from {was!r}, recorded in {source}; a resumed "
                     f"run may change only the batch size and how it runs, so resume with the "
                     f"same {flag}, or train into a new --out")


def _plain(value: Any) -> Any:
    """Lists and tuples compare equal (a checkpoint may hold either)."""
    return list(value) if isinstance(value, (list, tuple)) else value
