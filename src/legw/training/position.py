"""Where a run is (optimizer step, epoch, step in the epoch) and how resuming maps it.

Resuming at the batch size a checkpoint was written with continues at the same step.
Resuming at another global batch size (*elastic resume*) keeps the **epoch position**
``epoch + step_in_epoch / steps_per_epoch`` and re-derives the schedule for the new batch::

    new step_in_epoch = round(old step_in_epoch / old steps_per_epoch * new steps_per_epoch)
    new step          = epoch * new steps_per_epoch + new step_in_epoch

so the LR continues from the recipe at the new batch size at the same point in training.
"""

from __future__ import annotations

from dataclasses import dataclass

from legw.schedule import Recipe


@dataclass
class Position:
    step: int = 0
    """Optimizer steps done."""
    epoch: int = 0
    """Current epoch (0-based)."""
    step_in_epoch: int = 0
    """Steps done in the current epoch."""
    samples_seen: int = 0
    """Training samples consumed (sum of global batch sizes)."""

    def advance(self, global_batch_size: int, steps_per_epoch: int) -> None:
        self.step += 1
        self.samples_seen += global_batch_size
        self.step_in_epoch += 1
        if self.step_in_epoch == steps_per_epoch:
            self.epoch, self.step_in_epoch = self.epoch + 1, 0

    def advance_samples(self, batch_size: int, dataset_size: int) -> None:
        """One step of a batch ramp: ``batch_size`` samples of the stream of epochs; an epoch
        ends when its ``dataset_size``-th sample is used (``step_in_epoch`` restarts at 0)."""
        self.step += 1
        self.samples_seen += batch_size
        epoch = self.samples_seen // dataset_size
        self.step_in_epoch = 0 if epoch != self.epoch else self.step_in_epoch + 1
        self.epoch = epoch

    def epoch_position(self, recipe: Recipe) -> float:
        return self.epoch + self.step_in_epoch / recipe.steps_per_epoch

    def to_dict(self, global_batch_size: int, steps_per_epoch: int) -> dict[str, int]:
        return {"step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "samples_seen": self.samples_seen, "global_batch_size": global_batch_size,
                "steps_per_epoch": steps_per_epoch}


def resume_position(saved: dict[str, int], global_batch_size: int, recipe: Recipe
                    ) -> tuple[Position, bool]:
    """The position to continue from, and whether the resume is elastic (batch changed)."""
    pos = Position(step=int(saved["step"]), epoch=int(saved["epoch"]),
                   step_in_epoch=int(saved["step_in_epoch"]),
                   samples_seen=int(saved["samples_seen"]))
    same = (saved["global_batch_size"] == global_batch_size
            and saved["steps_per_epoch"] == recipe.steps_per_epoch)
    if same:
        return pos, False
    spe = recipe.steps_per_epoch
    sie = round(pos.step_in_epoch / saved["steps_per_epoch"] * spe)
    epoch = pos.epoch
    if sie >= spe:
        epoch, sie = epoch + 1, 0
    return Position(step=epoch * spe + sie, epoch=epoch, step_in_epoch=sie,
                    samples_seen=pos.samples_seen), True

