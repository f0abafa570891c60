"""A batch that grows during training: the batch ramp's rules (pure Python, no torch).

A run with a ramp starts at a small global batch ``B_start`` (the base recipe's ``B0`` unless a
fixed ramp says otherwise) and grows it toward ``B_max`` (``--batch-size``), never shrinking,
in whole numbers of *units* (``unit = micro batch x world size``: one micro-batch more on every
rank). Its position is counted in **samples**, so the base recipe's shape in epochs is kept
whatever the batch does:

* the schedule is the recipe at ``B_start`` (LEGW's warmup and the peak LR scaled to
  ``B_start``) read at the epoch position ``samples / N``;
* the LR is that schedule times ``(B / B_start) ** p``; ``p`` knows the optimizer
  (:func:`legw.adaptive.rule.default_lr_power`): 1, the linear rule, for SGD and LARS -- the
  ramp keeps the batch at or below ``B_noise``, where SGD's steps scale perfectly with the
  batch, and on the LSTM the linear rule held the base where sqrt lost 1 point (study 12) --
  and 0.5 for Adam, AdamW and LAMB, whose steps are normalised by the gradient's own size.
  Seesaw is defined with 0.5 (below);
* the run ends when ``epochs x N`` samples are used (``budget="epochs"``, the default; the
  last step takes only what is left, in whole units), or (``budget="tau"``) when the base
  recipe's steps are made up in base-step equivalents: each step at batch ``B`` counts as the
  AdaScale gain ``r = (1 + B_noise/B0) / (1 + B_noise/B)`` base steps (1 at ``B0``; the
  adaptive rule's ``tau``, :mod:`legw.adaptive.rule`), and the schedule is read at ``tau``
  instead of at the samples used. At ``B = B_noise`` a step makes ``~B / (2 B0)`` base steps of
  progress, so this budget spends about twice the base's samples where the batch sits at the
  noise scale -- McCandlish's prediction of what holding the base costs there.

Three rules choose the batch:

``noise``
    ``B = factor x B_noise`` (default factor 1), with ``B_noise = tr(Sigma) / |G|^2`` measured
    over the last window of steps (:class:`legw.adaptive.noise.OnlineNoiseScale`); rounded down
    to a unit, at most doubled per step, never below the current batch, at most ``B_max``.
    Why ``B_noise``: McCandlish et al. 2018 (arXiv 1812.06162, eq. 2.11) give the steps and
    samples to reach a loss as ``S = S_min (1 + B_noise / B)`` and ``E = E_min (1 + B /
    B_noise)``. At ``B = B_noise`` both are twice their minimum, the balance point they call
    the critical batch: below it a larger batch saves steps almost for free, above it each
    halving of the steps left costs ever more samples. ``B_noise`` grows as the loss falls
    (Fashion-MNIST LSTM: 43 -> 830 over the first epoch, ~2,700 at the end), so the batch
    follows it up.

``seesaw``
    Seesaw (Meterez et al. 2025): where the base schedule would divide the LR
    by ``alpha``, multiply the batch by ``alpha`` and divide the LR by ``sqrt(alpha)`` instead.
    With the sqrt rule above this is ``B = B_start x 2 ** n``, ``n`` the number of halvings the
    schedule has made since its peak (``floor(log2(peak / lr))``), capped at ``B_max``; the LR
    is then the schedule times ``sqrt(B / B_start)``, exactly Seesaw's. Past the cap the LR
    decays as the schedule does.

``B1@E1,B2@E2,...``
    A fixed ramp (Megatron's ``--rampup-batch-size``, OLMo-core's batch-size scheduler): batch
    ``B_i`` from epoch ``E_i`` on; ``E1`` must be 0, batches non-decreasing, each at most
    ``B_max`` and a whole number of units.

:class:`BatchRamp` holds the position and the batch, and has a plain ``state_dict``.

**Token streams** (language models read with truncated BPTT): the batch is the number of
streams the epoch's tokens are cut into, and each stream's hidden state is carried from window
to window, so the batch changes only **at epoch boundaries** (``epoch_steps``: the steps of an
epoch at a batch). Within an epoch the noise window keeps measuring; at its end the rule is
applied once, with the same cap (at most doubled per change), and the next epoch is cut at the
new batch: every token is still read once per epoch. A fixed ramp's epochs must then be whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from legw.adaptive.rule import gain
from legw.schedule import BaseRecipe, Recipe

if TYPE_CHECKING:
    from legw.adaptive.noise import OnlineNoiseScale

RAMP_RULES = ("noise", "seesaw")
"""The named ramps; anything else is parsed as a fixed ramp ``B1@E1,B2@E2,...``."""

RAMP_BUDGETS = ("epochs", "tau")
"""When a ramp ends: the base recipe's epochs of samples, or its steps in base-step
equivalents (the gain of each step, from the measured noise)."""


@dataclass(frozen=True)
class RampRule:
    """A parsed ``--batch-ramp``: ``kind`` is ``noise``, ``seesaw`` or ``fixed`` (its
    ``points``: ``(batch, from_epoch)``, the first at epoch 0)."""

    kind: str
    points: tuple[tuple[int, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> RampRule:
        """``ValueError`` naming ``--batch-ramp`` for text that is no ramp."""
        if text in RAMP_RULES:
            return cls(text)
        points = []
        for item in text.split(","):
            batch, at, epoch = item.strip().partition("@")
            try:
                b, e = int(batch), float(epoch)
            except ValueError:
                b, e = 0, math.nan
            if not at or b < 1 or not 0 <= e < math.inf:
                raise ValueError(f"--batch-ramp: expected noise, seesaw or B1@E1,B2@E2,... "
                                 f"(batch @ epoch), got {item.strip()!r}")
            points.append((b, e))
        if points[0][1] != 0:
            raise ValueError(f"--batch-ramp: the first batch must start at epoch 0 "
                             f"({points[0][0]}@0), got {points[0][0]}@{points[0][1]:g}")
        for (b0, e0), (b1, e1) in zip(points, points[1:], strict=False):
            if b1 < b0 or e1 <= e0:
                raise ValueError(f"--batch-ramp: batches must not shrink and epochs must "
                                 f"increase, got {b0}@{e0:g} then {b1}@{e1:g}")
        return cls("fixed", tuple(points))

    @property
    def needs_noise(self) -> bool:
        return self.kind == "noise"

    def check_streams(self) -> None:
        """``ValueError`` for a fixed ramp that token streams cannot follow: their batch
        changes only at epoch boundaries."""
        if any(e != int(e) for _, e in self.points):
            raise ValueError(f"--batch-ramp: token streams change their batch only at epoch "
                             f"boundaries; give whole epochs, got {self}")

    def start_batch(self, base_batch_size: int) -> int:
        """The batch of the first step: the fixed ramp's first, else the base batch."""
        return self.points[0][0] if self.kind == "fixed" else base_batch_size

    def __str__(self) -> str:
        if self.kind != "fixed":
            return self.kind
        return ",".join(f"{b}@{e:g}" for b, e in self.points)


class BatchRamp:
    """The global batch and LR of each step of a run whose batch grows from ``B_start`` to
    ``max_batch`` (see the module docstring).

    Per step: read :attr:`batch` and :meth:`lr`, train on that many samples, then call
    :meth:`advance` with the samples used and, for the ``noise`` rule, the window's
    ``B_noise`` (``None`` while it is not measured yet). Stop when :attr:`done`.
    """

    def __init__(self, base: BaseRecipe, rule: RampRule, max_batch: int, unit: int,
                 dataset_size: int, factor: float = 1.0, budget: str = "epochs",
                 lr_power: float = 1.0,
                 epoch_steps: Callable[[int], int] | None = None) -> None:
        """``epoch_steps``: for token streams, the steps of an epoch at a batch; the batch then
        changes only at epoch boundaries and ``dataset_size`` is the first batch's samples
        (stream windows) per epoch."""
        start = rule.start_batch(base.base_batch_size)
        if unit < 1 or max_batch < unit:
            raise ValueError(f"--batch-size: {max_batch} is less than one micro-batch per "
                             f"rank ({unit})")
        if start % unit or start > max_batch:
            raise ValueError(f"--batch-ramp: the first batch {start} must be a multiple of the "
                             f"micro batch x world size ({unit}) and at most --batch-size "
                             f"{max_batch}; give --micro-batch-size dividing {start}")
        for b, _ in rule.points:
            if b % unit or b > max_batch:
                raise ValueError(f"--batch-ramp: batch {b} is not a multiple of the micro "
                                 f"batch x world size ({unit}) at most --batch-size "
                                 f"{max_batch}")
        if epoch_steps is not None:
            rule.check_streams()
        if not factor > 0 or not math.isfinite(factor):
            raise ValueError(f"--ramp-factor: must be a positive number, got {factor!r}")
        if budget not in RAMP_BUDGETS:
            raise ValueError(f"--ramp-budget: choose from {', '.join(RAMP_BUDGETS)}, got "
                             f"{budget!r}")
        self.budget_kind = budget
        self.base_batch = base.base_batch_size
        self.base_steps = base.scale(base.base_batch_size, dataset_size)
        """The base run: its steps per epoch and total steps (``tau``'s units and budget)."""
        self.tau = 0.0
        self.rule, self.max_batch, self.unit, self.factor = rule, max_batch, unit, factor
        self.dataset_size = dataset_size
        self.start_batch = start
        self.schedule: Recipe = base.scale(start, dataset_size)
        if not 0 <= lr_power <= 1:
            raise ValueError(f"lr_power: must lie in [0, 1], got {lr_power!r}")
        self.power = 0.5 if rule.kind == "seesaw" else lr_power  # Seesaw's rule is its sqrt
        self.budget = round(base.epochs * dataset_size)
        """Samples the run trains on: the base recipe's epochs."""
        self.base_epochs = base.epochs
        self.epoch_steps = epoch_steps
        self.samples = 0
        self.step = 0
        self.current = start
        self.epochs_done = 0
        """Whole epochs done (token streams, whose batch changes at their boundaries)."""
        self.in_epoch = 0
        """Steps done in the current epoch (token streams)."""

    # --- position -------------------------------------------------------------------------

    @property
    def epoch(self) -> float:
        """The schedule's position in epochs: samples used / samples per epoch, or (the tau
        budget) base steps made / base steps per epoch."""
        if self.budget_kind == "tau":
            return self.tau / self.base_steps.steps_per_epoch
        if self.epoch_steps is not None:
            return self.epochs_done + self.in_epoch / self.epoch_steps(self.current)
        return self.samples / self.dataset_size

    @property
    def done(self) -> bool:
        if self.budget_kind == "tau":
            return self.tau >= self.base_steps.total_steps
        if self.epoch_steps is not None:
            return self.epoch >= self.base_epochs - 1e-12
        return self.samples >= self.budget

    @property
    def batch(self) -> int:
        """The global batch of the coming step: the rule's, the last step trimmed to the
        samples left (rounded up to a unit; the epochs budget)."""
        if self.budget_kind == "tau" or self.epoch_steps is not None:
            return self.current
        left = self.budget - self.samples
        return max(self.unit, min(self.current, -(-left // self.unit) * self.unit))

    def lr(self) -> float:
        """The LR of the coming step: the schedule at ``B_start`` at this epoch position, times
        ``(batch / B_start) ** p``."""
        return self.schedule.lr_at_epoch(self.epoch) * (self.current / self.start_batch
                                                         ) ** self.power

    @property
    def effective_scale(self) -> tuple[float, float]:
        """``(k, lr_ratio)`` of the coming step for :mod:`legw.hyper`: ``k = B / B0`` and the
        LR over the base's (the schedule's peak ratio at ``B_start`` times ``(B / B_start) **
        p``); under the tau budget too, as the LR follows the batch there, not the gain."""
        return (self.current / self.base_batch,
                self.schedule.lr_ratio * (self.current / self.start_batch) ** self.power)

    # --- the rule -------------------------------------------------------------------------

    def advance(self, samples: int, b_noise: float | None = None, gain: float = 1.0) -> None:
        """After a step on ``samples`` samples: move the position, and grow the batch by the
        rule (``b_noise``: the ``noise`` rule's measurement, ``None`` while there is none;
        ``gain``: the step's progress in base steps, for the tau budget, clamped to
        ``[1, samples / B0]``)."""
        self.samples += samples
        self.step += 1
        self.tau += min(max(gain, 1.0), max(1.0, samples / self.base_batch))
        if self.epoch_steps is not None:  # token streams: the batch changes between epochs
            self.in_epoch += 1
            if self.in_epoch < self.epoch_steps(self.current):
                return
            self.epochs_done, self.in_epoch = self.epochs_done + 1, 0
        self.current = max(self.current, min(self.max_batch, self._target(b_noise)))

    def advance_from(self, samples: int, noise: OnlineNoiseScale | None) -> None:
        """:meth:`advance` with what it needs read from the noise window (``None``: no noise
        measured): the rule's ``B_noise``, ``tr(Sigma) / |G|^2`` of the window, once the window
        is full (a single noisy early estimate would ratchet the batch up for good), and, for
        the tau budget, the step's gain at ``samples`` (:func:`legw.adaptive.rule.gain`)."""
        means = noise.means() if noise is not None else None
        b_noise, step_gain = None, 1.0
        if means is not None:
            grad_sq, trace_sigma = means
            if noise.full:
                b_noise = trace_sigma / grad_sq if grad_sq != 0 else math.inf
            if self.budget_kind == "tau":
                step_gain = gain(grad_sq, trace_sigma, self.base_batch, samples)
        self.advance(samples, b_noise, step_gain)

    def _target(self, b_noise: float | None) -> int:
        if self.rule.kind == "fixed":
            return max(b for b, e in self.rule.points if e <= self.epoch + 1e-12)
        if self.rule.kind == "seesaw":
            if self.epoch < self.schedule.warmup_epochs:
                return self.current
            lr = self.schedule.lr_at_epoch(self.epoch)
            halvings = (math.floor(math.log2(self.schedule.peak_lr / lr) + 1e-9) if lr > 0
                        else 64)  # a decay to 0: the cap
            return self._units(self.start_batch * 2.0 ** min(halvings, 64))
        if b_noise is None or not math.isfinite(b_noise) or b_noise <= 0:
            return self.current
        return min(2 * self.current, self._units(self.factor * b_noise))

    def _units(self, batch: float) -> int:
        """``batch`` rounded down to whole units, at most ``max_batch``."""
        return int(min(batch, self.max_batch) // self.unit) * self.unit

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"rule": str(self.rule), "samples": self.samples, "step": self.step,
                "batch": self.current, "max_batch": self.max_batch, "factor": self.factor,
                "budget": self.budget_kind, "tau": self.tau,
                "epochs_done": self.epochs_done, "in_epoch": self.in_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; a resume on another number of ranks keeps the batch, rounded
        up to this run's unit (at most ``max_batch``) -- token streams mid-epoch only if it
        stays the same, else ``ValueError`` (their epoch is cut into that many streams)."""
        if state["rule"] != str(self.rule):
            raise ValueError(f"--batch-ramp: the checkpoint's ramp is {state['rule']!r}, this "
                             f"run's {str(self.rule)!r}")
        if state.get("budget", "epochs") != self.budget_kind:
            raise ValueError(f"--ramp-budget: the checkpoint's is {state.get('budget')!r}, "
                             f"this run's {self.budget_kind!r}")
        self.samples, self.step = int(state["samples"]), int(state["step"])
        self.tau = float(state.get("tau", 0.0))
        self.epochs_done = int(state.get("epochs_done", 0))
        self.in_epoch = int(state.get("in_epoch", 0))
        batch = -(-int(state["batch"]) // self.unit) * self.unit
        batch = max(self.start_batch, min(batch, self._units(self.max_batch)))
        if self.epoch_steps is not None and self.in_epoch and batch != int(state["batch"]):
            raise ValueError(f"--resume: a token-stream ramp stopped mid-epoch at {state['batch']}"
                             f" streams, which this run's micro batch x world size ({self.unit})"
                             " cannot split; resume on the same ranks or from an epoch's end")
        self.current = batch
