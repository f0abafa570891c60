"""The batch-aware recipe engine: a base recipe tuned at a small batch, scaled to any batch.

This module is pure arithmetic (no torch), so the learning rate is a pure function of the
position in training and resuming -- even at another batch size -- is exact.

The method (You et al., "Large-Batch Training for LSTM and Beyond", arXiv 1901.08256): tune
peak LR ``eta0`` and warmup ``w0`` epochs at batch ``B0``; for ``B = k * B0`` use

* sqrt LR scaling:                     ``peak_lr = eta0 * k ** 0.5``
* linear-epoch gradual warmup (LEGW):  ``warmup_epochs = w0 * k``

so the warmup spans the same number of *steps* at every batch size, while the decay keeps
its shape in *epochs*.

Conventions (pinned by ``tests/test_schedule.py``):

* ``steps_per_epoch = N // B`` with ``drop_last`` (the default), ``ceil(N / B)`` without.
* ``warmup_steps = round(warmup_epochs * steps_per_epoch)``, at least 1 when
  ``warmup_epochs > 0``; ``total_steps = round(epochs * steps_per_epoch)``, at least 1 and
  more than ``warmup_steps``. ``round`` rounds halves up (``floor(x + 0.5)``), not to even.
* Warmup is linear and skips zero: ``lr(t) = peak * min(t + 1, W) / W`` for ``t < W``, so step
  0 trains at ``peak / W`` and the last warmup step ``W - 1`` reaches ``peak``.
* After warmup, with ``i = t - W`` steps since warmup and ``I = T - W`` steps left (TF
  ``lars_util`` convention for poly):

  - ``constant``:     ``peak``
  - ``poly``:         ``end + (peak - end) * (1 - i / I) ** power``
  - ``cosine``:       ``end + (peak - end) * (1 + cos(pi * i / I)) / 2``
  - ``exponential``:  ``peak * gamma ** (i / steps_per_epoch)`` (``gamma`` per epoch)
  - ``multistep``:    ``peak * gamma ** n`` with ``n`` the milestones (epochs) passed; a
    milestone at epoch ``m`` takes effect at step ``round(m * steps_per_epoch)``, which must
    not fall inside the (scaled) warmup.

  Step ``W`` is the first post-warmup step and trains at ``peak`` (poly, cosine); positions
  at or beyond ``T`` return the value at ``T`` (``end_lr`` for poly and cosine). ``gamma``
  lies in ``(0, 1]`` and ``end_lr`` may not exceed the scaled peak, so the LR never exceeds
  ``peak``.
* Fractional positions are allowed everywhere: ``lr_at_epoch(e)`` is ``lr_at_step`` evaluated
  at the real-valued step ``e * steps_per_epoch``.
* Streamed data (no sample count, e.g. tokens): ``scale(B, steps_per_epoch=S)`` takes the
  optimizer steps per epoch directly.

Warnings (:class:`RecipeWarning`, so they can be filtered or turned into errors): a warmup over
half of training (``warmup_steps > total_steps / 2``), and ``scaling="linear"`` with
``warmup="legw"``, which is not the linear-scaling baseline (use ``for_method("linear", ...)``).

Outside warmup, the LR-vs-epoch curve at ``k * B0`` is exactly ``k ** a`` times the base curve
for the constant and multistep decays (when ``steps_per_epoch`` divides evenly). Poly, cosine
and exponential are counted from the end of warmup, which ends ``k`` times later in epochs, so
their curves are *not* proportional: e.g. Table 6 at epoch 45, batch 32K vs 1K, the poly
factor is ``(1 - 35/80)**2 = 0.316`` vs ``(1 - 44.69/89.69)**2 = 0.252``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

from legw.hyper import Hyperparameters, scale_hyperparameters

SCALING_RULES = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}
"""Named LR scaling rules and the power of ``k`` each stands for."""

WARMUP_RULES = ("legw", "constant", "none")
DECAYS = ("multistep", "poly", "cosine", "exponential", "constant")

METHODS: dict[str, dict[str, str]] = {
    # sqrt LR scaling + linear-epoch gradual warmup (You et al. 2019, the paper's method)
    "legw": {"scaling": "sqrt", "warmup": "legw"},
    # linear LR scaling + warmup of constant epochs (Goyal et al. 2017)
    "linear": {"scaling": "linear", "warmup": "constant"},
    "sqrt-nowarmup": {"scaling": "sqrt", "warmup": "none"},
    # the base recipe unchanged at every batch size
    "unscaled": {"scaling": "none", "warmup": "constant"},
}
"""Named methods: the scaling and warmup rules each stands for (``legw sweep --methods`` too)."""

WARMUP_SHARE_WARNING = 0.5
"""A scaled warmup longer than this share of the training steps gives a :class:`RecipeWarning`."""


class RecipeError(ValueError):
    """An invalid recipe value: ``str(e)`` is ``"field: why"``, and ``e.field`` names the
    :class:`BaseRecipe` field (or ``global_batch_size``, ``dataset_size``, ``steps_per_epoch``)
    so a caller can name its own flag for it without parsing the text."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class RecipeWarning(UserWarning):
    """The recipe, or the loop that follows it, is probably not what was meant.

    Filter it with ``warnings.filterwarnings("ignore", category=legw.RecipeWarning)`` or make
    it an error with ``"error"``.
    """


def scaling_power(scaling: str | float) -> float:
    """The exponent ``a`` of the LR scaling rule ``peak_lr = eta0 * k ** a``.

    ``scaling`` is a rule name (``sqrt``, ``linear``, ``none``), a number, or a numeric string.
    """
    if isinstance(scaling, str):
        if scaling in SCALING_RULES:
            return SCALING_RULES[scaling]
        try:
            scaling = float(scaling)
        except ValueError:
            raise RecipeError("scaling", f"unknown rule {scaling!r}; use one of "
                              f"{', '.join(SCALING_RULES)} or a number (the power of k)"
                              ) from None
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)):
        raise RecipeError("scaling", f"expected a rule name or a number, got {scaling!r}")
    if not math.isfinite(scaling):
        raise RecipeError("scaling", f"power must be finite, got {scaling!r}")
    return float(scaling)


def _require(ok: bool, field: str, value: Any, why: str) -> None:
    if not ok:
        raise RecipeError(field, f"{why}, got {value!r}")


def _round(x: float) -> int:
    """Round half up: ``2.5 -> 3`` (Python's ``round`` would give 2)."""
    return math.floor(x + 0.5)


@dataclass(frozen=True)
class BaseRecipe:
    """What a user tuned at a small batch; :meth:`scale` derives the recipe at any batch."""

    base_batch_size: int
    """Global batch size the recipe was tuned at (``B0``)."""
    peak_lr: float
    """Peak learning rate at ``base_batch_size`` (``eta0``)."""
    warmup_epochs: float
    """Warmup length at ``base_batch_size`` in epochs (``w0``); may be fractional or 0."""
    epochs: float
    """Training length in epochs; the same at every batch size."""
    decay: str = "poly"
    """Decay after warmup: one of ``multistep, poly, cosine, exponential, constant``."""
    power: float = 2.0
    """Power ``p`` of the poly decay."""
    end_lr: float = 0.0
    """Final LR of the poly and cosine decays (not scaled with the batch)."""
    milestones: tuple[float, ...] = ()
    """Epochs at which ``multistep`` multiplies the LR by ``gamma``."""
    gamma: float = 0.1
    """Factor per milestone (``multistep``) or per epoch (``exponential``)."""
    scaling: str | float = "sqrt"
    """LR scaling rule: ``sqrt`` (default), ``linear``, ``none``, or the power of ``k``."""
    warmup: str = "legw"
    """Warmup rule: ``legw`` (epochs times k), ``constant`` (same epochs), ``none``."""

    def __post_init__(self) -> None:
        try:
            milestones = tuple(float(m) for m in self.milestones)
        except (TypeError, ValueError):
            raise RecipeError("milestones", f"expected a sequence of epochs, got "
                                            f"{self.milestones!r}") from None
        object.__setattr__(self, "milestones", milestones)
        b0 = self.base_batch_size
        _require(isinstance(b0, int) and not isinstance(b0, bool) and b0 > 0,
                 "base_batch_size", b0, "must be a positive integer")
        _require(_finite(self.peak_lr) and self.peak_lr > 0, "peak_lr", self.peak_lr,
                 "must be a positive number")
        _require(_finite(self.epochs) and self.epochs > 0, "epochs", self.epochs,
                 "must be a positive number")
        _require(_finite(self.warmup_epochs) and self.warmup_epochs >= 0, "warmup_epochs",
                 self.warmup_epochs, "must be a non-negative number")
        _require(self.warmup_epochs < self.epochs or self.warmup_epochs == 0, "warmup_epochs",
                 self.warmup_epochs, f"must be shorter than training ({self.epochs} epochs)")
        _require(self.decay in DECAYS, "decay", self.decay, f"must be one of {', '.join(DECAYS)}")
        _require(self.warmup in WARMUP_RULES, "warmup", self.warmup,
                 f"must be one of {', '.join(WARMUP_RULES)}")
        scaling_power(self.scaling)
        _require(_finite(self.power) and self.power > 0, "power", self.power, "must be positive")
        _require(_finite(self.end_lr) and 0 <= self.end_lr <= self.peak_lr, "end_lr",
                 self.end_lr, "must lie in [0, peak_lr]")
        _require(_finite(self.gamma) and 0 < self.gamma <= 1, "gamma", self.gamma,
                 "must lie in (0, 1]")
        if self.decay == "multistep":
            ms = self.milestones
            _require(len(ms) > 0, "milestones", ms, "multistep decay needs at least one")
            _require(all(a < b for a, b in zip(ms, ms[1:])), "milestones", ms,
                     "must be strictly increasing")
            _require(all(_finite(m) and 0 < m < self.epochs for m in ms), "milestones", ms,
                     f"must lie strictly inside (0, {self.epochs}) epochs")
        if scaling_power(self.scaling) == 1.0 and self.warmup == "legw":
            warnings.warn(RecipeWarning(
                f"scaling={self.scaling!r} with warmup='legw' is linear LR scaling with a warmup "
                f"of k times the base epochs, not the linear-scaling baseline (Goyal et al.: "
                f"constant-epoch warmup); for that use BaseRecipe.for_method('linear', ...) or "
                f"warmup='constant'"), stacklevel=3)

    @classmethod
    def for_method(cls, method: str, **fields: Any) -> BaseRecipe:
        """The base recipe with the scaling and warmup rules of a named method (:data:`METHODS`).

        ``for_method("linear", ...)`` is linear scaling with constant-epoch warmup, as
        ``legw sweep --methods linear``; ``for_method("legw", ...)`` is sqrt scaling with LEGW.
        ``fields`` are the other :class:`BaseRecipe` fields.
        """
        _require(method in METHODS, "method", method, f"must be one of {', '.join(METHODS)}")
        for rule in ("scaling", "warmup"):
            _require(rule not in fields, rule, fields.get(rule),
                     f"is set by method {method!r}; give the method or the rules, not both")
        return cls(**fields, **METHODS[method])

    @property
    def method(self) -> str | None:
        """The name of the :data:`METHODS` entry whose rules this recipe uses, or ``None``."""
        for name, rules in METHODS.items():
            if (scaling_power(self.scaling) == scaling_power(rules["scaling"])
                    and self.warmup == rules["warmup"]):
                return name
        return None

    def k(self, global_batch_size: int) -> float:
        """The batch ratio ``B / B0``."""
        return global_batch_size / self.base_batch_size

    def scaled_peak_lr(self, global_batch_size: int) -> float:
        """``peak_lr * k ** a`` by the scaling rule (``inf`` when it overflows)."""
        try:
            return self.peak_lr * self.k(global_batch_size) ** scaling_power(self.scaling)
        except OverflowError:
            return math.inf

    def peak_and_warmup(self, global_batch_size: int) -> tuple[float, float]:
        """``(peak LR, warmup epochs)`` at ``global_batch_size``: the scaling and warmup rules."""
        k = self.k(global_batch_size)
        warmup = {"legw": self.warmup_epochs * k, "constant": self.warmup_epochs,
                  "none": 0.0}[self.warmup]
        return self.scaled_peak_lr(global_batch_size), warmup

    def scale(self, global_batch_size: int, dataset_size: int | None = None,
              drop_last: bool = True, *, steps_per_epoch: int | None = None) -> Recipe:
        """Derive the recipe at ``global_batch_size``.

        Give either ``dataset_size`` (samples per epoch: ``N // B`` steps per epoch with
        ``drop_last``, ``ceil(N / B)`` without) or, for streamed data whose size is not a
        sample count (e.g. tokens), ``steps_per_epoch`` (optimizer steps per epoch at this
        batch size; ``drop_last`` does not apply).
        """
        b, n, spe = global_batch_size, dataset_size, steps_per_epoch
        _require(isinstance(b, int) and not isinstance(b, bool) and b > 0,
                 "global_batch_size", b, "must be a positive integer")
        _require((n is None) != (spe is None), "steps_per_epoch", spe,
                 f"give exactly one of dataset_size (got {n!r}) and steps_per_epoch")
        if spe is None:
            _require(isinstance(n, int) and not isinstance(n, bool) and n > 0,
                     "dataset_size", n, "must be a positive integer")
            if drop_last:
                _require(b <= n, "global_batch_size", b,
                         f"exceeds dataset_size {n} (no full batch with drop_last)")
            spe = n // b if drop_last else -(-n // b)
        else:
            _require(isinstance(spe, int) and not isinstance(spe, bool) and spe > 0,
                     "steps_per_epoch", spe, "must be a positive integer")
        peak, warmup_epochs = self.peak_and_warmup(b)
        _require(_finite(peak) and peak > 0, "scaling", self.scaling,
                 f"gives a peak LR of {peak:g} at global_batch_size {b}")
        _require(self.end_lr <= peak or self.decay not in ("poly", "cosine"), "end_lr",
                 self.end_lr, f"must not exceed the peak LR {peak:g} at global_batch_size {b}")
        _require(self.epochs * spe < 2**63, "epochs", self.epochs,
                 f"gives more than 2^63 optimizer steps at {spe} steps per epoch")
        total = _round(self.epochs * spe)
        _require(total >= 1, "epochs", self.epochs,
                 f"gives 0 optimizer steps at {spe} steps per epoch (global_batch_size {b})")
        warmup = _round(warmup_epochs * spe)
        if warmup_epochs > 0:
            warmup = max(warmup, 1)
        _require(warmup < total or warmup == 0, "warmup_epochs", warmup_epochs,
                 f"at global_batch_size {b} the warmup ({warmup} steps) must be shorter than "
                 f"training ({total} steps); shorten the base warmup or train longer")
        if warmup > WARMUP_SHARE_WARNING * total:
            warnings.warn(RecipeWarning(
                f"at global_batch_size {b} the warmup is {warmup} of {total} steps "
                f"({warmup / total:.0%} of training, {warmup_epochs:g} of {self.epochs:g} "
                f"epochs): the peak LR is held briefly, if at all; train longer or shorten "
                f"the base warmup"), stacklevel=2)
        ms_steps = tuple(_round(m * spe) for m in self.milestones)
        if self.decay != "multistep":
            ms_steps = ()
        if ms_steps and ms_steps[0] < warmup:
            raise RecipeError("milestones", f"milestone {self.milestones[0]} falls inside "
                              f"the warmup ({warmup_epochs:g} epochs) at global_batch_size {b}")
        return Recipe(base=self, global_batch_size=b, dataset_size=n, drop_last=drop_last,
                      peak_lr=peak, warmup_epochs=warmup_epochs, steps_per_epoch=spe,
                      warmup_steps=warmup, total_steps=total, milestone_steps=ms_steps)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields; :meth:`from_dict` inverts it."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaseRecipe:
        _require(isinstance(d, dict), "recipe", d, "expected a dict")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        _require(not unknown, "recipe", sorted(unknown), "unknown fields")
        return cls(**d)


@dataclass(frozen=True)
class Recipe:
    """A base recipe scaled to one global batch size and data set: LR at every position."""

    base: BaseRecipe
    global_batch_size: int
    dataset_size: int | None
    """Samples per epoch, or ``None`` when ``steps_per_epoch`` was given directly."""
    drop_last: bool
    peak_lr: float
    warmup_epochs: float
    steps_per_epoch: int
    warmup_steps: int
    total_steps: int
    milestone_steps: tuple[int, ...] = ()

    @property
    def epochs(self) -> float:
        return self.base.epochs

    def lr_at_step(self, step: float) -> float:
        """LR of optimizer step ``step`` (0-based; real-valued positions allowed)."""
        if not step >= 0:  # also rejects NaN
            raise ValueError(f"step: must be non-negative, got {step!r}")
        w, t_end, peak = self.warmup_steps, self.total_steps, self.peak_lr
        if step < w:
            # min(): a fractional position in (W - 1, W) must not overshoot the peak.
            return peak * min(step + 1, w) / w
        b = self.base
        i = min(step, t_end) - w
        left = t_end - w
        if b.decay == "constant":
            return peak
        if b.decay == "poly":
            return b.end_lr + (peak - b.end_lr) * (1.0 - i / left) ** b.power
        if b.decay == "cosine":
            return b.end_lr + (peak - b.end_lr) * 0.5 * (1.0 + math.cos(math.pi * i / left))
        if b.decay == "exponential":
            return peak * b.gamma ** (i / self.steps_per_epoch)
        passed = sum(1 for m in self.milestone_steps if m <= step)
        return peak * b.gamma**passed

    def lr_at_epoch(self, epoch: float) -> float:
        """LR at a (fractional) epoch position.

        The position in steps is snapped to the nearest integer when it lies within 1e-9 of
        it, so float error in ``epoch * steps_per_epoch`` (2.3 * 100 = 229.99999999999997)
        cannot move a milestone or the end of warmup by a step.
        """
        step = epoch * self.steps_per_epoch
        nearest = math.floor(step + 0.5)
        if abs(step - nearest) <= 1e-9 * max(1.0, abs(step)):
            step = nearest
        return self.lr_at_step(step)

    def epoch_at_step(self, step: float) -> float:
        """The (fractional) epoch position of optimizer step ``step``."""
        return step / self.steps_per_epoch

    def step_at_epoch(self, epoch: float) -> int:
        """The optimizer step nearest to epoch position ``epoch`` (for elastic resume).

        To resume a run stopped at step ``s`` of recipe ``a`` with recipe ``b`` (another
        batch size): ``b.step_at_epoch(a.epoch_at_step(s))``.
        """
        if not epoch >= 0:
            raise ValueError(f"epoch: must be non-negative, got {epoch!r}")
        return _round(epoch * self.steps_per_epoch)

    def lrs(self) -> list[float]:
        """The LR of every optimizer step, ``total_steps`` values."""
        return [self.lr_at_step(t) for t in range(self.total_steps)]

    def to_dict(self) -> dict[str, Any]:
        """What determines this recipe, as plain data (the rest is derived again on load)."""
        d = {"base": self.base.to_dict(), "global_batch_size": self.global_batch_size}
        if self.dataset_size is None:
            return d | {"steps_per_epoch": self.steps_per_epoch}
        return d | {"dataset_size": self.dataset_size, "drop_last": self.drop_last}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        keys = {"base", "global_batch_size"}
        _require(isinstance(d, dict) and set(d) in (keys | {"dataset_size", "drop_last"},
                                                    keys | {"steps_per_epoch"}), "recipe", d,
                 "expected keys base, global_batch_size and either dataset_size, drop_last "
                 "or steps_per_epoch")
        base = BaseRecipe.from_dict(d["base"])
        if "steps_per_epoch" in d:
            return base.scale(d["global_batch_size"], steps_per_epoch=d["steps_per_epoch"])
        return base.scale(d["global_batch_size"], d["dataset_size"],
                          drop_last=bool(d["drop_last"]))

    @property
    def lr_ratio(self) -> float:
        """The peak LR over the base's (``sqrt(k)`` under the sqrt rule)."""
        return self.peak_lr / self.base.peak_lr

    def hyperparameters(self, base: Hyperparameters, rule: str = "srr") -> Hyperparameters:
        """The optimizer's other batch-dependent hyperparameters at this recipe's batch:
        ``base`` (tuned at ``B0``: betas, epsilon, weight decay, an EMA's decay) scaled by
        :func:`legw.hyper.scale_hyperparameters` with this recipe's ``k`` and LR ratio
        (``rule="none"``: unchanged)."""
        return scale_hyperparameters(base, self.base.k(self.global_batch_size), self.lr_ratio,
                                     rule)

    def summary(self) -> dict[str, Any]:
        """The derived quantities, as printed by ``legw schedule --json``."""
        return {
            "batch_size": self.global_batch_size,
            "k": self.base.k(self.global_batch_size),
            "peak_lr": self.peak_lr,
            "warmup_epochs": self.warmup_epochs,
            "warmup_steps": self.warmup_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "epochs": self.epochs,
            "decay": self.base.decay,
            "scaling": self.base.scaling,
            "warmup": self.base.warmup,
        }


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
