"""``AdaptiveScaler`` and ``RampScaler``: ``--scaling adaptive`` and ``--batch-ramp`` in your own
training loop.

The rule of :mod:`legw.adaptive` (the gain ``r`` from the gradient noise sets the LR multiplier
and how fast the base recipe's position ``tau`` advances; training ends when ``tau`` reaches
the base budget), packaged for a hand-written loop. The loop accumulates gradients over
micro-batches (or runs under DDP, or both); the scaler reads every micro-batch's gradient norm
from parameter hooks as backward produces it, so the noise costs no extra pass::

    scaler = AdaptiveScaler(model, optimizer, base, global_batch_size=8192,
                            micro_batch_size=128, dataset_size=len(train_set))
    while not scaler.done:
        optimizer.zero_grad(set_to_none=True)
        for x, y in micro_batches():            # scaler.accumulation_steps of them per rank
            (loss_fn(model(x), y) / scaler.accumulation_steps).backward()
        scaler.step()       # measure, set the LR, clip, optimizer.step(), advance tau

Per step, with ``A`` micro-batches of ``b`` samples on each of ``W`` ranks (``B = b W A``)::

    |G_b|^2  = mean over the W*A micro-gradients of their squared norm  (hooks, before DDP's
                                                                          all-reduce)
    |G_B|^2  = squared norm of the step's gradient (p.grad, after the all-reduce)
    lr       = base_lr(tau) * r ** P            r from the window of earlier steps (1 at first)
    tau     += 1 in the base warmup (LEGW's rule; warmup="gain": r), else r

``legw train --scaling adaptive`` runs the same protocol on the same
:class:`~legw.adaptive.meter.NoiseMeter` (tested to agree step for step).
Not covered: ``torch.amp.GradScaler`` (its scaled gradients would be read as the noise; bf16
autocast is fine) and an elastic resume at another batch (``legw train`` does that).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.distributed as dist

from legw.adaptive.meter import NoiseMeter
from legw.adaptive.noise import OnlineNoiseScale
from legw.adaptive.ramp import BatchRamp, RampRule
from legw.adaptive.rule import AdaptiveSchedule, default_lr_power, default_noise_window
from legw.hyper import check_rule
from legw.lr_scheduler import hyperparameter_bases, set_hyperparameters, set_lr
from legw.schedule import BaseRecipe


def _check_loop_arguments(max_grad_norm: float | None, optimizer_scaling: str,
                          **sizes: Any) -> int:
    """The checks both scalers make on their arguments (``ValueError`` naming the argument);
    returns the world size."""
    check_rule(optimizer_scaling)
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name}: must be a positive integer, got {v!r}")
    if max_grad_norm is not None and not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm: must be a positive number, got {max_grad_norm!r}")
    return dist.get_world_size() if dist.is_initialized() else 1


def _default_lr_power(optimizer: torch.optim.Optimizer) -> float:
    """:func:`default_lr_power` by the optimizer's class (Accelerate's wrapper holds one)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    return default_lr_power(type(inner).__name__.lower())


class AdaptiveScaler:
    """Adaptive batch scaling (legw's ``--scaling adaptive``) for a hand-written loop.

    ``model``: the module whose parameters ``optimizer`` updates (the DDP wrapper or the module
    inside it). ``base``: the recipe tuned at its base batch ``B0``. ``global_batch_size`` ``B``
    must be ``micro_batch_size * world_size * accumulation_steps`` with two or more
    micro-batches in all (the noise is measured between them). ``lr_power`` defaults by the
    optimizer's class (:func:`legw.adaptive.default_lr_power`: 0.5 for Adam-type, 1 else);
    ``window`` (steps the noise is averaged over) defaults to ``1000 * B0 / B``, at least 10;
    ``max_grad_norm`` clips the global gradient norm after it is measured;
    ``optimizer_scaling="srr"`` scales the optimizer's betas, epsilon and weight decay each step
    to the gain's effective batch ``r B0`` (:mod:`legw.hyper`; the values the optimizer was built
    with are the base's). ``ValueError`` names the argument at fault.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 base: BaseRecipe, global_batch_size: int, micro_batch_size: int,
                 dataset_size: int, *, lr_power: float | None = None, warmup: str = "legw",
                 window: int | None = None, max_grad_norm: float | None = None,
                 optimizer_scaling: str = "none") -> None:
        world = _check_loop_arguments(max_grad_norm, optimizer_scaling,
                                      global_batch_size=global_batch_size,
                                      micro_batch_size=micro_batch_size,
                                      dataset_size=dataset_size)
        if global_batch_size % (micro_batch_size * world):
            raise ValueError(f"global_batch_size: {global_batch_size} is not micro_batch_size "
                             f"{micro_batch_size} x world size {world} x a whole number of "
                             "accumulation steps")
        if global_batch_size // micro_batch_size < 2:
            raise ValueError(f"micro_batch_size: the gain needs 2+ micro-batches per step to "
                             f"measure the noise; {micro_batch_size} is the whole batch "
                             f"{global_batch_size} (accumulate smaller micro-batches)")
        if global_batch_size < base.base_batch_size:
            raise ValueError(f"global_batch_size: adaptive scaling grows the batch; "
                             f"{global_batch_size} is below the base batch {base.base_batch_size}")
        if lr_power is None:
            lr_power = _default_lr_power(optimizer)
        b0 = base.base_batch_size
        window = default_noise_window(b0, global_batch_size) if window is None else window
        self.schedule = AdaptiveSchedule.for_batch(base, global_batch_size, dataset_size,
                                                   lr_power, warmup)
        self.noise = OnlineNoiseScale(micro_batch_size, global_batch_size, window)
        self.optimizer, self.optimizer_scaling = optimizer, optimizer_scaling
        self.hyperparameter_bases = hyperparameter_bases(optimizer)  # as built: the base's
        self.accumulation_steps = global_batch_size // (micro_batch_size * world)
        self.steps = 0
        self._pending: tuple[float, dict[str, float]] | None = None  # from before_step
        self.meter = NoiseMeter(model.parameters(), self.accumulation_steps,
                                max_grad_norm=max_grad_norm)

    @property
    def done(self) -> bool:
        """The base recipe's budget is used up: stop training."""
        return self.schedule.done

    @property
    def tau(self) -> float:
        """The position in the base recipe, in base steps."""
        return self.schedule.tau

    @property
    def gain(self) -> float:
        """The gain of the coming step."""
        return self.schedule.gain

    def check_accumulation_steps(self, steps: int, name: str) -> None:
        """Refuse a framework whose gradient accumulation (its setting ``name``) is not this
        scaler's ``accumulation_steps``."""
        if steps != self.accumulation_steps:
            b, micro = self.schedule.batch_size, self.noise.micro_batch_size
            raise ValueError(f"{name}: {steps}, but global_batch_size {b} = micro_batch_size "
                             f"{micro} x world size {b // (micro * self.accumulation_steps)} x "
                             f"{self.accumulation_steps}")

    def step(self) -> dict[str, float]:
        """After the step's backward passes: :meth:`before_step`, ``optimizer.step()``,
        :meth:`after_step`; returns the step's record (see :meth:`after_step`)."""
        self.before_step()
        self.optimizer.step()
        return self.after_step()

    def before_step(self) -> dict[str, float]:
        """Measure the step's noise, clip, and write its LR into the optimizer; for a framework
        that calls ``optimizer.step()`` itself (call :meth:`after_step` after it). Returns
        ``lr``, ``gain``, ``tau`` and ``grad_norm`` (before clipping).

        ``RuntimeError`` when the backward passes since the last step are not
        ``accumulation_steps``; ``FloatingPointError`` (nothing changed, the optimizer must not
        step) when the gradient norm is not finite."""
        m = self.meter.measure()
        if not m.finite:
            raise FloatingPointError(f"AdaptiveScaler: gradient norm {m.grad_norm} at step "
                                     f"{self.steps}: the run diverged")
        lr = self.schedule.lr()
        set_lr(self.optimizer, lr)
        if self.optimizer_scaling != "none":
            set_hyperparameters(self.optimizer, *self.schedule.effective_scale,
                                self.optimizer_scaling, self.hyperparameter_bases)
        record = {"lr": lr, "gain": self.schedule.gain, "tau": self.schedule.tau,
                  "grad_norm": m.grad_norm}
        self._pending = (m.small_sq, record)
        return dict(record)

    def after_step(self) -> dict[str, float]:
        """After ``optimizer.step()``: advance the position and fold the step's noise into the
        window, which sets the next step's gain. Returns :meth:`before_step`'s record with the
        noise terms (``b_noise`` once two steps are in the window)."""
        if self._pending is None:
            raise RuntimeError("AdaptiveScaler.after_step: no before_step() for this step")
        (small_sq, record), self._pending = self._pending, None
        record.update(self.noise.update(small_sq, record["grad_norm"] ** 2))
        self.schedule.advance(self.noise)
        self.steps += 1
        return record

    def state_dict(self) -> dict[str, Any]:
        """The position, the gain, the noise window and the optimizer's base hyperparameters:
        save it with the model and optimizer."""
        return {"schedule": self.schedule.state_dict(), "noise": self.noise.state_dict(),
                "steps": self.steps,
                "hyperparameter_bases": copy.deepcopy(self.hyperparameter_bases)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a run saved by :meth:`state_dict` at the same batch sizes."""
        if not self.noise.fits(state["noise"]):
            raise ValueError("state: saved at other batch sizes than this scaler's; an "
                             "adaptive run resumes at the same global and micro batch")
        self.schedule.load_state_dict(state["schedule"])
        self.noise.load_state_dict(state["noise"])
        self.steps = int(state["steps"])
        self.hyperparameter_bases = copy.deepcopy(state.get("hyperparameter_bases",
                                                            self.hyperparameter_bases))

    def remove_hooks(self) -> None:
        """Detach the gradient hooks (the scaler cannot step afterwards)."""
        self.meter.remove()


class RampScaler:
    """A batch ramp (legw's ``--batch-ramp``, :mod:`legw.adaptive.ramp`) for a hand-written loop:
    how many micro-batches each step takes, its LR, when to stop; the ``noise`` rule reads the
    gradient noise from the same :class:`~legw.adaptive.meter.NoiseMeter`::

        ramp = RampScaler(model, optimizer, base, max_batch_size=8192, micro_batch_size=64,
                          dataset_size=len(train_set), rule="noise")
        while not ramp.done:
            optimizer.zero_grad(set_to_none=True)
            for x, y in my_micro_batches(ramp.samples, ramp.accumulation_steps):
                (loss_fn(model(x), y) / ramp.accumulation_steps).backward()
            ramp.step()     # measure, set the LR, clip, optimizer.step(), grow the batch

    ``ramp.samples`` is the position in the stream of samples (epochs joined end to end: take
    this rank's share of the next ``ramp.batch_size``); every rank takes
    ``ramp.accumulation_steps`` micro-batches of ``micro_batch_size``. ``rule``: ``noise``,
    ``seesaw`` or ``"B1@E1,B2@E2,..."``; the LR follows the batch as ``(B / B_start) **
    lr_power``, by default by the optimizer's class (1 for SGD and LARS, 0.5 for Adam-type).
    ``legw train --batch-ramp`` runs the same rule on the same meter (tested to agree step for
    step). ``optimizer_scaling="srr"`` scales the optimizer's betas, epsilon and weight decay
    to each step's batch (:mod:`legw.hyper`). ``ValueError`` names the argument at fault.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 base: BaseRecipe, max_batch_size: int, micro_batch_size: int,
                 dataset_size: int, *, rule: str = "noise", factor: float = 1.0,
                 budget: str = "epochs", lr_power: float | None = None, window: int = 50,
                 max_grad_norm: float | None = None, optimizer_scaling: str = "none") -> None:
        world = _check_loop_arguments(max_grad_norm, optimizer_scaling,
                                      max_batch_size=max_batch_size,
                                      micro_batch_size=micro_batch_size,
                                      dataset_size=dataset_size)
        parsed = RampRule.parse(rule)
        unit = micro_batch_size * world
        if lr_power is None:
            lr_power = _default_lr_power(optimizer)
        self.ramp = BatchRamp(base, parsed, max_batch_size, unit, dataset_size, factor, budget,
                              lr_power)
        self.noise: OnlineNoiseScale | None = None
        if parsed.needs_noise or budget == "tau":
            if self.ramp.start_batch <= micro_batch_size:
                raise ValueError(f"micro_batch_size: the noise rule and the tau budget need "
                                 f"2+ micro-batches a step; {micro_batch_size} is the whole "
                                 f"first batch {self.ramp.start_batch}")
            self.noise = OnlineNoiseScale(micro_batch_size, max_batch_size, window)
        self.optimizer, self.micro_batch_size, self.world_size = optimizer, micro_batch_size, world
        self.optimizer_scaling = optimizer_scaling
        self.hyperparameter_bases = hyperparameter_bases(optimizer)  # as built: the base's
        self._pending: tuple[float | None, int, dict[str, float]] | None = None
        self.meter = NoiseMeter(model.parameters(), self.accumulation_steps,
                                noise=self.noise is not None, max_grad_norm=max_grad_norm)

    @property
    def done(self) -> bool:
        """The base recipe's samples are used up: stop training."""
        return self.ramp.done

    @property
    def samples(self) -> int:
        """Samples used so far: where the coming step's batch starts in the stream."""
        return self.ramp.samples

    @property
    def batch_size(self) -> int:
        """The global batch of the coming step."""
        return self.ramp.batch

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches each rank takes in the coming step."""
        return self.ramp.batch // (self.micro_batch_size * self.world_size)

    def step(self) -> dict[str, float]:
        """After the step's backward passes: :meth:`before_step`, ``optimizer.step()``,
        :meth:`after_step`; returns the step's record."""
        self.before_step()
        self.optimizer.step()
        return self.after_step()

    def before_step(self) -> dict[str, float]:
        """Measure the step, clip, and write its LR into the optimizer. Returns ``lr``,
        ``batch_size`` and ``grad_norm`` (before clipping). ``RuntimeError`` when the backward
        passes were not ``accumulation_steps``; ``FloatingPointError`` (the optimizer must not
        step) when the gradient norm is not finite."""
        batch = self.ramp.batch
        self.meter.accumulation_steps = self.accumulation_steps
        m = self.meter.measure()
        if not m.finite:
            raise FloatingPointError(f"RampScaler: gradient norm {m.grad_norm} at step "
                                     f"{self.ramp.step}: the run diverged")
        lr = self.ramp.lr()
        set_lr(self.optimizer, lr)
        if self.optimizer_scaling != "none":
            set_hyperparameters(self.optimizer, *self.ramp.effective_scale,
                                self.optimizer_scaling, self.hyperparameter_bases)
        record = {"lr": lr, "batch_size": batch, "grad_norm": m.grad_norm}
        self._pending = (m.small_sq, batch, record)
        return dict(record)

    def after_step(self) -> dict[str, float]:
        """After ``optimizer.step()``: fold the step's noise into the window and let the rule
        grow the batch. Returns :meth:`before_step`'s record with the noise terms."""
        if self._pending is None:
            raise RuntimeError("RampScaler.after_step: no before_step() for this step")
        (small_sq, batch, record), self._pending = self._pending, None
        if self.noise is not None:
            record.update(self.noise.update(small_sq, record["grad_norm"] ** 2, batch))
        self.ramp.advance_from(batch, self.noise)
        if self.ramp.budget_kind == "tau":
            record["tau"] = self.ramp.tau
        return record

    def state_dict(self) -> dict[str, Any]:
        """The position, the batch and the noise window: save it with the model."""
        return {"ramp": self.ramp.state_dict(),
                "noise": self.noise.state_dict() if self.noise else None,
                "hyperparameter_bases": copy.deepcopy(self.hyperparameter_bases)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ramp.load_state_dict(state["ramp"])
        self.hyperparameter_bases = copy.deepcopy(state.get("hyperparameter_bases",
                                                            self.hyperparameter_bases))
        if self.noise is not None and state.get("noise"):
            self.noise.load_state_dict(state["noise"])

    def remove_hooks(self) -> None:
        """Detach the gradient hooks."""
        self.meter.remove()
