"""Adaptive scaling: the base recipe replayed at batch ``B`` with a gain measured while training.

LEGW fixes the LR rule (``sqrt(k)``) and the budget (equal epochs). Past the critical batch the
equal-epoch budget is what loses accuracy (docs/results.md). The adaptive rule keeps LEGW's
warmup but lets the gradient noise set the LR and the budget. With ``k = B / B0``, the gradient
noise scale ``B_noise = tr(Sigma) / |G|^2`` measured online (:mod:`legw.adaptive.noise`) and

    r = (tr(Sigma) / B0 + |G|^2) / (tr(Sigma) / B + |G|^2)  =  (1 + B_noise/B0) / (1 + B_noise/B)

(the AdaScale gain, Johnson et al. 2020; McCandlish et al. 2018's ratio of steps at B0 and B to
make the same progress; ``1 <= r <= k``), each optimizer step at ``B``:

* trains at ``lr = base_lr(tau) * r ** lr_power`` where ``base_lr`` is the base recipe at its own
  batch ``B0`` and ``tau`` the *position* in base steps; ``lr_power`` defaults by optimizer
  (:func:`default_lr_power`: 1, AdaScale's, for SGD and LARS; 0.5 for Adam, AdamW and LAMB);
* advances ``tau`` by 1 during the base warmup -- the warmup spans the same number of steps at
  every batch, which is LEGW's rule -- and by ``r`` after it (``warmup="gain"``: by ``r``
  throughout, as AdaScale);
* ends when ``tau`` reaches the base recipe's total steps.

So below the noise scale (``r ~ k``) it trains like LEGW at equal epochs, far above it
(``r -> 1``) it takes as many steps as the base run, and in between it pays exactly the extra
steps the noise demands. The gain is read before each step from the window of previous steps
(the first step has ``r = 1``). LARS and LAMB apply their trust ratios to the direction of each
layer's update; the gain scales the global LR on top, as any schedule does.

:class:`AdaptiveSchedule` is pure Python (no torch) with a plain ``state_dict``; ``tau`` counts
base steps, which do not depend on ``B``, so a run resumed at another batch size continues at
the same position.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from legw.schedule import BaseRecipe, Recipe

if TYPE_CHECKING:
    from legw.adaptive.noise import OnlineNoiseScale

ADAPTIVE_WARMUPS = ("legw", "gain")
"""How the base warmup is replayed: ``legw``, its steps at every batch (``tau += 1`` per step,
LEGW's rule); ``gain``, advanced by the gain like the rest (AdaScale's, ``r`` times shorter)."""


NORMALISED_OPTIMIZERS = ("adam", "adamw", "lamb", "nadam", "radam", "adamax", "adagrad",
                         "rmsprop", "adafactor")
"""Optimizers (lower-case class names) whose step is divided by a running estimate of the
gradient's own magnitude."""


def default_lr_power(optimizer: str) -> float:
    """The default ``lr_power`` for ``optimizer`` (a legw optimizer name or a lower-case class
    name): 0.5 for :data:`NORMALISED_OPTIMIZERS`, 1 for the rest (SGD, LARS).

    The full gain rests on SGD's variance argument: at ``r`` times the effective batch the
    update's noise is ``r`` times smaller, so an ``r`` times larger LR keeps it (AdaScale's
    rule, the linear scaling rule on ``r``). An Adam-type step is normalised by the second
    moment, which the smaller gradient noise also shrinks, so the same argument gives the
    square root (the sqrt scaling rule for adaptive methods, Malladi et al., NeurIPS 2022).
    Measured (docs/results.md, study 11): the full gain blew LAMB up at batch 8192 under both
    this rule and fairscale's AdaScale (70.0 and 77.8 % test error), the square root held the
    base (9.93 % against 9.70 %); the other Adam-type optimizers follow the argument, not a
    measurement. LARS's trust ratio rescales each layer's update but its
    gradient direction is plain SGD with momentum; the full gain trained it at 1024 and 8192.
    """
    return 0.5 if optimizer in NORMALISED_OPTIMIZERS else 1.0


def default_noise_window(base_batch_size: int, batch_size: int) -> int:
    """Steps the gain's noise estimate is averaged over: ``1000 * B0 / B``, at least 10 -- a
    horizon of 1000 base batches, as AdaScale's smoothing (``1 - S/1000`` per step)."""
    return max(10, round(1000 * base_batch_size / batch_size))


def gain(grad_sq: float, trace_sigma: float, base_batch_size: int, batch_size: int) -> float:
    """``(tr(Sigma)/B0 + |G|^2) / (tr(Sigma)/B + |G|^2)`` with both terms clamped at 0
    (an estimate below 0 means that term is lost in the noise), in ``[1, B/B0]``."""
    g, t = max(grad_sq, 0.0), max(trace_sigma, 0.0)
    k = batch_size / base_batch_size
    if g == 0 and t == 0:
        return 1.0
    r = (t / base_batch_size + g) / (t / batch_size + g)
    return min(max(r, 1.0), k)


class AdaptiveSchedule:
    """The position ``tau`` (in base steps) and LR of an adaptive run at ``batch_size``.

    ``base`` is the base recipe scaled at its own batch (``base.global_batch_size == B0``).
    """

    def __init__(self, base: Recipe, batch_size: int, lr_power: float = 1.0,
                 warmup: str = "legw") -> None:
        if base.global_batch_size != base.base.base_batch_size:
            raise ValueError(f"base: expected the recipe at its base batch "
                             f"{base.base.base_batch_size}, got batch {base.global_batch_size}")
        if batch_size < base.global_batch_size:
            raise ValueError(f"--batch-size: adaptive scaling grows the batch; {batch_size} is "
                             f"below the base batch {base.global_batch_size}")
        if not (math.isfinite(lr_power) and 0 <= lr_power <= 1):
            raise ValueError(f"lr_power: must lie in [0, 1], got {lr_power!r}")
        if warmup not in ADAPTIVE_WARMUPS:
            raise ValueError(f"warmup: one of {', '.join(ADAPTIVE_WARMUPS)}, got {warmup!r}")
        self.base, self.batch_size, self.lr_power = base, batch_size, lr_power
        self.warmup = warmup
        self.tau = 0.0
        self.gain = 1.0

    @classmethod
    def for_batch(cls, base: BaseRecipe, batch_size: int, dataset_size: int,
                  lr_power: float = 1.0, warmup: str = "legw") -> AdaptiveSchedule:
        """From the base recipe (its ``scaling`` and ``warmup`` are not used: the gain is)."""
        return cls(base.scale(base.base_batch_size, dataset_size), batch_size, lr_power, warmup)

    @property
    def done(self) -> bool:
        return self.tau >= self.base.total_steps

    @property
    def in_warmup(self) -> bool:
        return self.tau < self.base.warmup_steps

    def lr(self) -> float:
        """The LR of the coming step: the base LR at ``tau`` times ``gain ** lr_power``."""
        return self.base.lr_at_step(self.tau) * self.gain ** self.lr_power

    @property
    def effective_scale(self) -> tuple[float, float]:
        """``(k, lr_ratio)`` of the coming step for :mod:`legw.hyper`: the gain ``r`` is the
        step's effective batch ``r B0`` (its gradient noise is that batch's), so the other
        hyperparameters follow ``k = r`` at an LR ``r ** lr_power`` times the base's. In the
        base warmup (``warmup="legw"``) too, although ``tau`` counts such a step as one base
        step: the moments average the noise of the batch the step has."""
        return self.gain, self.gain ** self.lr_power

    def set_gain(self, r: float) -> None:
        """The gain of the coming step (from the noise measured so far)."""
        k = self.batch_size / self.base.global_batch_size
        if not (math.isfinite(r) and 1.0 <= r <= k * (1 + 1e-12)):
            raise ValueError(f"gain: must lie in [1, {k:g}], got {r!r}")
        self.gain = r

    def set_gain_from(self, noise: OnlineNoiseScale) -> None:
        """The gain of the coming step from ``noise``'s window of earlier steps (:func:`gain`
        of its mean ``|G|^2`` and ``tr(Sigma)``); unchanged while the window is empty."""
        means = noise.means()
        if means is not None:
            self.set_gain(gain(*means, self.base.global_batch_size, self.batch_size))

    def advance(self, noise: OnlineNoiseScale | None = None) -> None:
        """After the step: ``tau += 1`` in the base warmup (``warmup="legw"``), else
        ``+= gain``; then the next step's gain from ``noise`` (:meth:`set_gain_from`), whose
        window already holds this step's draw. One step of the protocol the trainer and
        :class:`legw.adaptive.AdaptiveScaler` share::

            lr = schedule.lr(); set_lr(optimizer, lr)       # this step's gain
            m = meter.measure(); optimizer.step()
            noise.update(m.small_sq, m.big_sq); schedule.advance(noise)
        """
        self.tau += 1.0 if self.in_warmup and self.warmup == "legw" else self.gain
        if noise is not None:
            self.set_gain_from(noise)

    def state_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "gain": self.gain, "lr_power": self.lr_power,
                "warmup": self.warmup}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tau, self.gain = float(state["tau"]), float(state["gain"])
        self.lr_power = float(state["lr_power"])
        self.warmup = state.get("warmup", "legw")  # checkpoints from before the option
