"""``AdaptiveScaling``: legw's adaptive rule (:class:`legw.AdaptiveScaler`) in Lightning's own loop.

    trainer = L.Trainer(accumulate_grad_batches=8, max_epochs=1000,   # the callback stops it
                        callbacks=[AdaptiveScaling(base, global_batch_size=1024,
                                                   micro_batch_size=128,
                                                   dataset_size=len(train_set))])

Lightning runs the forward and backward passes inside ``optimizer.step(closure)``, so the
callback measures and writes the LR in ``on_before_optimizer_step`` (after the step's last
backward, before Lightning's gradient clipping), advances after the step (an optimizer step
post-hook), and stops training once the base recipe's budget is used up. ``configure_optimizers``
returns the optimizer alone: the callback sets the LR of every step. Each epoch must hold a
whole number of steps (``accumulate_grad_batches`` micro-batches of ``micro_batch_size``): a
last, partial accumulation is refused by the scaler. The scaler's state is saved in
Lightning's checkpoints and restored on ``fit(ckpt_path=...)``.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from legw.adaptive.scaler import AdaptiveScaler
from legw.schedule import BaseRecipe


class AdaptiveScaling(L.Callback):
    """Adaptive batch scaling under ``lightning.Trainer``; ``scaler_kwargs`` go to
    :class:`~legw.AdaptiveScaler` (``lr_power``, ``warmup``, ``window``, ``max_grad_norm``,
    ``optimizer_scaling``).
    ``records`` holds every step's record (LR, gain, position, noise)."""

    def __init__(self, base: BaseRecipe, global_batch_size: int, micro_batch_size: int,
                 dataset_size: int, **scaler_kwargs: Any) -> None:
        self.args = (base, global_batch_size, micro_batch_size, dataset_size)
        self.scaler_kwargs = scaler_kwargs
        self.scaler: AdaptiveScaler | None = None
        self.records: list[dict[str, float]] = []
        self._restored: dict[str, Any] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(f"configure_optimizers: AdaptiveScaling drives one optimizer, got "
                             f"{len(trainer.optimizers)}")
        optimizer = trainer.optimizers[0]
        self.scaler = AdaptiveScaler(pl_module, optimizer, *self.args, **self.scaler_kwargs)
        self.scaler.check_accumulation_steps(trainer.accumulate_grad_batches,
                                             "accumulate_grad_batches")
        if self._restored is not None:
            self.scaler.load_state_dict(self._restored)
        self._post_hook = optimizer.register_step_post_hook(self._after_step)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._post_hook.remove()
        self.scaler.remove_hooks()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: Any) -> None:
        self.scaler.before_step()

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.records.append(self.scaler.after_step())

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.scaler.done:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict or None
