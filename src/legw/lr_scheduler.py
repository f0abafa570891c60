"""Drive a PyTorch optimizer's learning rate from a :class:`~legw.schedule.Recipe`.

The recipe is a pure function ``step -> lr``; this module only writes its value into the
optimizer's param groups. Two ways to use it:

* your own loop: ``apply_recipe(optimizer, recipe, step)`` before each ``optimizer.step()``;
* frameworks that own the loop (HF Trainer, Lightning, ...): :class:`LEGWScheduler`, a
  ``torch.optim.lr_scheduler.LRScheduler`` stepped once after every ``optimizer.step()``.

A param group may carry ``"lr_scale"`` (default 1): its LR is ``recipe_lr * lr_scale``, e.g.
a smaller LR for a pretrained backbone. Tensor-valued group LRs are updated in place.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from legw.schedule import Recipe


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


def apply_recipe(optimizer: Optimizer, recipe: Recipe, step: int) -> float:
    """Set the LR of optimizer step ``step`` (0-based) from ``recipe``; return it (unscaled)."""
    lr = recipe.lr_at_step(step)
    set_lr(optimizer, lr)
    return lr


class LEGWScheduler(LRScheduler):
    """An ``LRScheduler`` whose LR at position ``last_epoch`` is ``recipe.lr_at_step(...)``.

    As with every PyTorch scheduler, construction sets the LR of step 0 and each
    ``scheduler.step()`` (after ``optimizer.step()``) advances one optimizer step, so the
    ``t``-th ``optimizer.step()`` (0-based) runs at ``recipe.lr_at_step(t)``; ``last_epoch``
    counts optimizer steps, not epochs (PyTorch's name).

    :meth:`state_dict` holds plain data only (position and the recipe's defining fields), so
    ``torch.load(..., weights_only=True)`` reads it. :meth:`load_state_dict` into a scheduler
    built for another recipe (e.g. another global batch size) continues at the same *epoch*
    position; :meth:`retarget` does the same mid-run. Load the optimizer's state first: the
    scheduler then overwrites the group LRs with the ones of its own recipe.
    """

    def __init__(self, optimizer: Optimizer, recipe: Recipe, last_epoch: int = -1) -> None:
        if not isinstance(recipe, Recipe):
            raise ValueError(f"recipe: expected a legw Recipe (BaseRecipe.scale(...)), "
                             f"got {type(recipe).__name__}")
        self.recipe = recipe
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lr = self.recipe.lr_at_step(self.last_epoch)
        return [lr * _lr_scale(g, i) for i, g in enumerate(self.optimizer.param_groups)]

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count,
                "recipe": self.recipe.to_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position; map it through the epoch if the saved recipe differs."""
        saved = Recipe.from_dict(state_dict["recipe"])
        step = state_dict["last_epoch"]
        if saved != self.recipe:
            step = self.recipe.step_at_epoch(saved.epoch_at_step(step))
        self.last_epoch = step
        self._step_count = state_dict.get("_step_count", 1)
        self._write_lr()

    def retarget(self, recipe: Recipe) -> None:
        """Switch to ``recipe`` (e.g. the base recipe scaled to a new batch size) at the
        current epoch position: ``last_epoch = recipe.step_at_epoch(old.epoch_at_step(t))``."""
        if not isinstance(recipe, Recipe):
            raise ValueError(f"recipe: expected a legw Recipe, got {type(recipe).__name__}")
        self.last_epoch = recipe.step_at_epoch(self.recipe.epoch_at_step(self.last_epoch))
        self.recipe = recipe
        self._write_lr()

    def _write_lr(self) -> None:
        set_lr(self.optimizer, self.recipe.lr_at_step(self.last_epoch))
        self._last_lr = [g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"]
                         for g in self.optimizer.param_groups]
