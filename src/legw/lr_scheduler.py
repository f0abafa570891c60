"""Drive a PyTorch optimizer's learning rate from a :class:`~legw.schedule.Recipe`.

The recipe is a pure function ``step -> lr``; this module only writes its value into the
optimizer's param groups. Two ways to use it:

* your own loop: ``apply_recipe(optimizer, recipe, step)`` before each ``optimizer.step()``;
* frameworks that own the loop (HF Trainer, Lightning, Accelerate, ...): :class:`LEGWScheduler`,
  a ``torch.optim.lr_scheduler.LRScheduler`` whose position is the optimizer's own step count,
  so it stays exact however often the framework calls ``scheduler.step()``.

A param group may carry ``"lr_scale"`` (default 1): its LR is ``recipe_lr * lr_scale``, e.g.
a smaller LR for a pretrained backbone. Tensor-valued group LRs are updated in place.

The other hyperparameters the batch touches (Adam's betas and epsilon, the weight decay;
:mod:`legw.hyper`) are written by :func:`apply_hyperparameters` (once, for a recipe's batch) or
:func:`set_hyperparameters` (any ``k``: the adaptive rule's gain, a ramp's batch), and by
``LEGWScheduler(..., optimizer_scaling="srr")``. Each group's values as the optimizer was built
(the base run's, tuned at ``B0``) are kept in the group under ``"legw_base"`` the first time and
every later call scales those, so the calls do not compound and a checkpointed optimizer
(whose ``state_dict`` carries the key) rescales correctly at another batch. An optimizer load
that drops the key (DCP's ``set_state_dict``) would lose them, so whoever owns the scaling
keeps a copy in its own state (:func:`hyperparameter_bases`, passed back as ``bases=``).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from legw.hyper import Hyperparameters, check_rule, scale_hyperparameters
from legw.schedule import Recipe, RecipeWarning


def _lr_scale(group: dict[str, Any], index: int) -> float:
    scale = group.get("lr_scale", 1.0)
    if (isinstance(scale, bool) or not isinstance(scale, (int, float))
            or not math.isfinite(scale) or scale < 0):
        raise ValueError(f"lr_scale: param group {index} needs a finite number >= 0, "
                         f"got {scale!r}")
    return float(scale)


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Write ``lr * group.get("lr_scale", 1)`` into every param group of ``optimizer``."""
    for i, group in enumerate(optimizer.param_groups):
        value = lr * _lr_scale(group, i)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)  # keep the tensor (capturable / compiled optimizers)
        else:
            group["lr"] = value


_SCALED = ("betas", "eps", "weight_decay")
"""The param-group keys :func:`set_hyperparameters` scales (where a group has them)."""


def base_values(group: dict[str, Any]) -> dict[str, Any]:
    """The group's base hyperparameters (betas, epsilon, weight decay as the optimizer was
    built), remembered under ``"legw_base"`` on first use."""
    if "legw_base" not in group:
        # without betas (SGD, LARS) only the decay: LARS's eps guards its trust ratio
        keys = _SCALED if "betas" in group else ("weight_decay",)
        group["legw_base"] = {key: (list(group[key]) if key == "betas" else group[key])
                              for key in keys if key in group}
    return group["legw_base"]


def hyperparameter_bases(optimizer: Optimizer) -> list[dict[str, Any]]:
    """A copy of every group's :func:`base_values`: what the owner of the scaling keeps in its
    own state (``LEGWScheduler``, the scalers, the trainer) and passes back as ``bases=``, since
    an optimizer load may bring back groups without ``"legw_base"`` (a sharded DCP load, a
    checkpoint written without legw), whose scaled values would otherwise be taken for the
    base and scaled twice."""
    return [copy.deepcopy(base_values(group)) for group in optimizer.param_groups]


def set_hyperparameters(optimizer: Optimizer, k: float, lr_ratio: float, rule: str = "srr",
                        bases: list[dict[str, Any]] | None = None) -> list[Hyperparameters]:
    """Write every param group's base betas, epsilon and weight decay scaled to a ``k``-fold
    batch whose LR is ``lr_ratio`` times the base's (:func:`legw.hyper.scale_hyperparameters`;
    ``rule="none"``: the base values). Returns each group's scaled values. A group without
    betas (SGD, LARS: its ``eps`` guards the trust ratio, not a second moment) gets only its
    decay scaled; a group with decay 0 keeps 0; an Adam-type group whose decay is an L2 term
    (``decoupled_weight_decay=False``, torch's ``Adam``) keeps its decay.

    ``bases`` (:func:`hyperparameter_bases`): the base values to scale, put back into the
    groups first; extended in place with the groups added to the optimizer since."""
    groups = optimizer.param_groups
    if bases is not None:
        if len(bases) > len(groups):
            raise ValueError(f"bases: {len(bases)} param groups' base values for an optimizer "
                             f"with {len(groups)}; was the optimizer replaced?")
        bases.extend(copy.deepcopy(base_values(g)) for g in groups[len(bases):])
        for group, base in zip(groups, bases):
            group["legw_base"] = copy.deepcopy(base)
    scaled = []
    for group in groups:
        base = base_values(group)
        betas = base.get("betas")
        h = scale_hyperparameters(
            Hyperparameters(betas=tuple(betas) if betas is not None else None,
                            eps=base.get("eps"), weight_decay=base.get("weight_decay", 0.0),
                            decay_is_l2=betas is not None
                            and group.get("decoupled_weight_decay") is False),
            k, lr_ratio, rule)
        if betas is not None:
            group["betas"] = h.betas
        if "eps" in base:
            group["eps"] = h.eps
        if "weight_decay" in base:
            group["weight_decay"] = h.weight_decay
        scaled.append(h)
    return scaled


def apply_hyperparameters(optimizer: Optimizer, recipe: Recipe, rule: str = "srr",
                          bases: list[dict[str, Any]] | None = None) -> list[Hyperparameters]:
    """:func:`set_hyperparameters` at ``recipe``'s batch: ``k = B / B0`` and its LR ratio."""
    return set_hyperparameters(optimizer, recipe.base.k(recipe.global_batch_size),
                               recipe.lr_ratio, rule, bases)


_PAST_END_HINT = (
    "the loop runs more optimizer steps than the recipe has. Scale the recipe for the loop's "
    "steps per epoch (a loader that keeps its last partial batch: drop_last=False; streamed "
    "data: steps_per_epoch=...; another world size: the new global batch size), or stop at "
    "recipe.total_steps")


def apply_recipe(optimizer: Optimizer, recipe: Recipe, step: int) -> float:
    """Set the LR of optimizer step ``step`` (0-based) from ``recipe``; return it (unscaled).

    A step at or past ``recipe.total_steps`` gives a :class:`~legw.RecipeWarning`: the loop
    runs longer than the recipe, and those steps would train at the final LR.
    """
    lr = recipe.lr_at_step(step)
    if step >= recipe.total_steps:
        warnings.warn(RecipeWarning(
            f"apply_recipe: a step at or past the end of the recipe ({recipe.total_steps} "
            f"steps) trains at its final LR {recipe.lr_at_step(recipe.total_steps):g}; "
            f"{_PAST_END_HINT}"), stacklevel=2)
    set_lr(optimizer, lr)
    return lr


class LEGWScheduler(LRScheduler):
    """An ``LRScheduler`` that writes ``recipe.lr_at_step(t)``, ``t`` the optimizer's step count.

    **Position.** ``t`` is the number of ``optimizer.step()`` calls so far, counted by a step
    hook on the optimizer (``register_step_post_hook``), not the number of
    ``scheduler.step()`` calls; ``scheduler.step()`` writes the LR of step ``t`` into the
    param groups. So the ``t``-th optimizer step (0-based) runs at ``recipe.lr_at_step(t)``
    whoever steps the scheduler and however often, as long as it is stepped after each
    optimizer step: once (plain loop, HF Trainer, Lightning ``"interval": "step"``),
    ``num_processes`` times (Accelerate's ``AcceleratedScheduler``), never for the micro-steps
    of gradient accumulation. A call with no optimizer step since the last one changes
    nothing; an optimizer step that a ``GradScaler`` skipped is not counted. ``last_epoch``
    (PyTorch's name) is ``t`` after each ``scheduler.step()``; ``step(t)`` jumps to step ``t``.

    **Mismatches** give a :class:`~legw.RecipeWarning` (once each): an optimizer step past
    the end of the recipe (it would train at the final LR); several optimizer steps between
    two ``scheduler.step()`` calls (the ones in between ran at a stale LR, e.g. Lightning's
    default ``"interval": "epoch"``); ``scheduler.step()`` called before any optimizer step
    was counted (the hook does not see the optimizer's steps, or the steps were skipped).

    **Other hyperparameters.** ``optimizer_scaling="srr"`` also scales each group's betas,
    epsilon and weight decay to the recipe's batch (:func:`apply_hyperparameters`; the values
    the optimizer was built with are the base's, kept in the scheduler's state), again on
    :meth:`retarget`, on :meth:`load_state_dict` and for a param group added later. The
    default ``"none"`` leaves them as built (and puts back the base values when it loads an
    ``srr`` scheduler's state).

    **State.** :meth:`state_dict` holds plain data only (the step count and the recipe's
    defining fields), so ``torch.load(..., weights_only=True)`` reads it. Load the optimizer's
    state first, then the scheduler's: into a scheduler built for another recipe (e.g.
    another global batch size) it continues at the same *epoch* position; :meth:`retarget`
    does the same mid-run.
    """

    def __init__(self, optimizer: Optimizer, recipe: Recipe, last_epoch: int = -1,
                 optimizer_scaling: str = "none") -> None:
        if not isinstance(recipe, Recipe):
            raise ValueError(f"recipe: expected a legw Recipe (BaseRecipe.scale(...)), "
                             f"got {type(recipe).__name__}")
        check_rule(optimizer_scaling)
        self.recipe = recipe
        self.optimizer_scaling = optimizer_scaling
        self._bases = hyperparameter_bases(optimizer)  # as built: the base run's
        if optimizer_scaling != "none":
            apply_hyperparameters(optimizer, recipe, optimizer_scaling, self._bases)
        self._taken = last_epoch + 1   # optimizer steps taken: the position
        self._seen = self._taken       # ... at the previous scheduler.step()
        self._counted = 0              # optimizer steps the hook has seen (not saved)
        self._warned: set[str] = set()
        super().__init__(optimizer, last_epoch)  # runs step() once: the LR of step _taken
        self._hook = optimizer.register_step_post_hook(self._count_step)

    def _count_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        # Only counts: compiled optimizer steps trace this without a guard or a recompile.
        self._taken += 1
        self._counted += 1

    def step(self, epoch: int | None = None) -> None:
        """Write the LR of the next optimizer step (``epoch``: jump to optimizer step ``epoch``)."""
        self._step_count += 1
        if epoch is not None:
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise ValueError(f"epoch: expected an optimizer step >= 0, got {epoch!r}")
            self._taken = epoch
        elif self._step_count > 1:
            self._check_loop()
        self._seen = self._taken
        self.last_epoch = self._taken
        self._write_lr()

    def _check_loop(self) -> None:
        t, total = self._taken, self.recipe.total_steps
        if t > total:
            self._warn("past-end", f"optimizer step {t - 1} is past the end of the recipe "
                       f"({total} steps, the last is step {total - 1}) and trains at its final "
                       f"LR {self.recipe.lr_at_step(total):g}; {_PAST_END_HINT}")
        if t - self._seen > 1:
            self._warn("stale", f"{t - self._seen} optimizer steps ran since the previous "
                       f"scheduler.step(): all but the first trained at a stale LR. Step the "
                       f"scheduler after every optimizer step (Lightning: 'interval': 'step')")
        if self._counted == 0:
            self._warn("idle", "scheduler.step() was called but no optimizer step has been "
                       "counted: the position is the optimizer's step count, so the LR stays "
                       f"at step {t}. Expected if a GradScaler skipped the first steps; "
                       "otherwise the optimizer this scheduler was built on is not the one "
                       "that steps (was it replaced or copied?). To jump, use step(t) or "
                       "load_state_dict")

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(RecipeWarning(f"LEGWScheduler: {message}"), stacklevel=4)

    def get_lr(self) -> list[float]:
        lr = self.recipe.lr_at_step(self.last_epoch)
        return [lr * _lr_scale(g, i) for i, g in enumerate(self.optimizer.param_groups)]

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self._taken, "_step_count": self._step_count,
                "recipe": self.recipe.to_dict(), "optimizer_scaling": self.optimizer_scaling,
                "hyperparameter_bases": copy.deepcopy(self._bases)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position; map it through the epoch if the saved recipe differs."""
        step = state_dict["last_epoch"]
        if state_dict["recipe"] != self.recipe.to_dict():
            saved = Recipe.from_dict(state_dict["recipe"])
            step = self.recipe.step_at_epoch(saved.epoch_at_step(step))
        self._step_count = state_dict.get("_step_count", 1)
        self._move_to(step)
        if "hyperparameter_bases" in state_dict:
            self._bases = copy.deepcopy(state_dict["hyperparameter_bases"])
        saved_rule = state_dict.get("optimizer_scaling", "none")
        if self.optimizer_scaling != "none" or saved_rule != "none":
            # the optimizer's state may hold another batch's (or another rule's) values
            apply_hyperparameters(self.optimizer, self.recipe, self.optimizer_scaling,
                                  self._bases)

    def retarget(self, recipe: Recipe) -> None:
        """Switch to ``recipe`` (e.g. the base recipe scaled to a new batch size) at the
        current epoch position: ``t = recipe.step_at_epoch(old.epoch_at_step(t))``."""
        if not isinstance(recipe, Recipe):
            raise ValueError(f"recipe: expected a legw Recipe, got {type(recipe).__name__}")
        step = recipe.step_at_epoch(self.recipe.epoch_at_step(self._taken))
        self.recipe = recipe
        self._move_to(step)
        if self.optimizer_scaling != "none":
            apply_hyperparameters(self.optimizer, recipe, self.optimizer_scaling, self._bases)

    def _move_to(self, step: int) -> None:
        self._taken = self._seen = self.last_epoch = step
        self._write_lr()

    def _write_lr(self) -> None:
        if (self.optimizer_scaling != "none"
                and len(self.optimizer.param_groups) != len(self._bases)):  # a group was added
            apply_hyperparameters(self.optimizer, self.recipe, self.optimizer_scaling,
                                  self._bases)
        set_lr(self.optimizer, self.recipe.lr_at_step(self.last_epoch))
        self._last_lr = [g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"]
                         for g in self.optimizer.param_groups]
