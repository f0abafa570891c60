"""``AdaptiveScalingCallback``: legw's adaptive rule (:class:`legw.AdaptiveScaler`) in the HF
``transformers.Trainer`` loop.

    args = TrainingArguments(..., per_device_train_batch_size=128,
                             gradient_accumulation_steps=8, num_train_epochs=1000,
                             max_grad_norm=0)      # clip in the callback: max_grad_norm=...
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[
        AdaptiveScalingCallback(base, global_batch_size=1024, micro_batch_size=128,
                                dataset_size=len(ds))])

The callback measures the noise and writes the LR in ``on_pre_optimizer_step``, advances in
``on_optimizer_step`` and stops training once the base recipe's budget is used up. The
Trainer's own scheduler still runs (its LR is overwritten before every step) and its value is
what the Trainer logs: the callback puts the LR the step ran at into ``state.log_history``
and into the logs of the callbacks after it (reporting integrations come before it and see
the scheduler's). The Trainer clips before
``on_pre_optimizer_step``, which would hide the gradient's norm from the measurement, so
``TrainingArguments.max_grad_norm`` must be 0 (the callback clips, given ``max_grad_norm``).
Each epoch must hold whole steps (the Trainer's last, partial accumulation is refused by the
scaler). The scaler's state rides in the Trainer's checkpoints and is restored on
``train(resume_from_checkpoint=...)`` when ``TrainingArguments(
restore_callback_states_from_checkpoint=True)``; the Trainer then replaces the callback with a
rebuilt one (find it in ``trainer.callback_handler.callbacks``).
"""

from __future__ import annotations

from typing import Any

import transformers
from transformers.trainer_callback import ExportableState

from legw.adaptive.scaler import AdaptiveScaler
from legw.schedule import BaseRecipe


class AdaptiveScalingCallback(transformers.TrainerCallback, ExportableState):
    """Adaptive batch scaling under ``transformers.Trainer``; ``scaler_kwargs`` go to
    :class:`~legw.AdaptiveScaler` (``lr_power``, ``warmup``, ``window``, ``max_grad_norm``,
    ``optimizer_scaling``).
    ``records`` holds every step's record (LR, gain, position, noise). ``base`` may be given
    as :meth:`BaseRecipe.to_dict`'s dict (how the Trainer rebuilds the callback on resume)."""

    def __init__(self, base: BaseRecipe | dict[str, Any], global_batch_size: int,
                 micro_batch_size: int, dataset_size: int, **scaler_kwargs: Any) -> None:
        if isinstance(base, dict):
            base = BaseRecipe.from_dict(base)
        self.args = (base, global_batch_size, micro_batch_size, dataset_size)
        self.scaler_kwargs = scaler_kwargs
        self.scaler: AdaptiveScaler | None = None
        self.records: list[dict[str, float]] = []
        self._restored: dict[str, Any] | None = None

    def state(self) -> dict[str, Any]:
        """What the Trainer saves in its checkpoints (``trainer_state.json``): the callback's
        arguments and the scaler's state."""
        base, batch, micro, n = self.args
        return {"args": {"base": base.to_dict(), "global_batch_size": batch,
                         "micro_batch_size": micro, "dataset_size": n, **self.scaler_kwargs},
                "attributes": {"_restored": self.scaler.state_dict() if self.scaler else None}}

    def on_train_begin(self, args: transformers.TrainingArguments, state: Any, control: Any,
                       model: Any = None, optimizer: Any = None, **kwargs: Any) -> None:
        if args.max_grad_norm and args.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm: the Trainer clips before the callback measures; "
                             f"set TrainingArguments(max_grad_norm=0) and give max_grad_norm="
                             f"{args.max_grad_norm:g} to AdaptiveScalingCallback")
        self.scaler = AdaptiveScaler(model, optimizer, *self.args, **self.scaler_kwargs)
        self.scaler.check_accumulation_steps(args.gradient_accumulation_steps,
                                             "gradient_accumulation_steps")
        if self._restored is not None:
            self.scaler.load_state_dict(self._restored)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.scaler.before_step()

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.records.append(self.scaler.after_step())

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.scaler.done:
            control.should_training_stop = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if logs is None or "learning_rate" not in logs or not self.records:
            return
        logs["learning_rate"] = self.records[-1]["lr"]
        if state.log_history and "learning_rate" in state.log_history[-1]:
            state.log_history[-1]["learning_rate"] = self.records[-1]["lr"]  # appended before

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.scaler.remove_hooks()
