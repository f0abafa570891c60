"""Every optimizer hyperparameter the batch touches, not only the LR (pure Python, no torch).

legw scales the peak LR (``sqrt(k)``) and the warmup (``k`` times the epochs) of a base recipe
tuned at ``B0`` to a batch ``B = k B0``. :func:`scale_hyperparameters` scales the rest, each
rule derived for a ``k``-fold batch:

**Adam's moments and epsilon, the square-root scaling rule** (Malladi, Lyu, Panigrahi, Arora,
"On the SDEs and Scaling Rules for Adaptive Gradient Algorithms", NeurIPS 2022, arXiv
2205.10287, the square-root scaling rule)::

    eta -> sqrt(k) eta,   1 - beta_i -> k (1 - beta_i),   eps -> eps / sqrt(k)

so that the Adam (RMSprop) SDE, and with it the trajectory in continuous time, is the same at
both batches. The moments' horizons ``1 / (1 - beta_i)`` count steps; ``k`` times fewer steps
need ``k`` times shorter horizons. The rule comes from an SDE approximation that needs
``k (1 - beta_i)`` well below 1 (a moment averaged over many steps); at ``k (1 - beta_i) >= 1``
it would make ``beta_i <= 0``. There legw clamps ``1 - beta_i`` at
:data:`MAX_ONE_MINUS_BETA` (``beta_i >= 0.5``) and reports the clamp (``clamped``), rather than
train with a moment that forgets everything at once; a base ``beta_i`` already below 0.5 (e.g.
``beta1 = 0``) is held where it is, never raised by the clamp. LAMB keeps Adam's moments inside its
layer-wise trust ratio, so the same rule applies to its ``betas`` and ``eps``.

**Weight decay: the timescale in epochs** (Wang & Aitchison 2024, arXiv 2405.13698; Bergsma et
al. 2025, "Power Lines", arXiv 2505.13738): the weights are an exponential moving average of
recent updates over ``tau_iter = 1 / (eta lambda)`` steps, i.e. ``tau = B / (eta lambda D)``
epochs of ``D`` samples. Keeping ``tau`` when ``B -> k B`` and ``eta -> r eta``::

    lambda -> lambda k / r        (sqrt LR rule: lambda -> sqrt(k) lambda; linear: unchanged)

This holds where the decay acts on the weights directly: AdamW's decoupled ``lr * lambda``, SGD's
``lambda w`` (added to the gradient, un-preconditioned); approximately for LARS and LAMB, whose
decay sits inside the layer-wise trust ratio. It does **not** apply to an L2 penalty that an
Adam-type optimizer preconditions with the gradient (torch's ``Adam``, ``decoupled_weight_decay
=False``): that term is part of the loss, which the square-root rule keeps as it is, so its
``lambda`` is not scaled (``decay_is_l2``).

**A model EMA** (Busbridge et al., "How to Scale Your EMA", NeurIPS 2023, arXiv 2307.13813):
its momentum per step ``rho`` averages over ``1 / (1 - rho)`` steps; ``k`` times fewer steps::

    rho -> rho ** k

``scale_hyperparameters`` returns the scaled values; the run spec carries them (``legw train
--optimizer-scaling srr``), ``legw schedule`` prints them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

OPTIMIZER_SCALINGS = ("none", "srr")
"""``none``: only the LR and warmup follow the batch (legw's default so far); ``srr``: the rules
above (Adam's moments and epsilon, the decay's timescale, the EMA)."""

MAX_ONE_MINUS_BETA = 0.5
"""``1 - beta`` is clamped here when ``k (1 - beta)`` would exceed it (``beta >= 0.5``)."""


@dataclass(frozen=True)
class Hyperparameters:
    """The batch-dependent optimizer hyperparameters of one run (``None``: not used)."""

    betas: tuple[float, float] | None = None
    """Adam / AdamW / LAMB's moment decays."""
    eps: float | None = None
    """Adam / AdamW / LAMB's denominator epsilon."""
    weight_decay: float = 0.0
    decay_is_l2: bool = False
    """The decay is an L2 term an Adam-type optimizer preconditions with the gradient (torch's
    ``Adam``): part of the loss, kept by the square-root rule, so not scaled."""
    ema_decay: float | None = None
    """A model EMA's momentum per step."""
    clamped: tuple[str, ...] = ()
    """The values the square-root rule could not scale fully (past its validity limit)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas) if self.betas is not None else None
        d["clamped"] = list(self.clamped)
        return d


def check_rule(rule: str, name: str = "optimizer_scaling") -> None:
    """``ValueError`` naming ``name`` unless ``rule`` is one of :data:`OPTIMIZER_SCALINGS`."""
    if rule not in OPTIMIZER_SCALINGS:
        raise ValueError(f"{name}: choose from {', '.join(OPTIMIZER_SCALINGS)}, got {rule!r}")


def _check(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise ValueError(f"{name}: must lie in [{low:g}, {high:g}), got {value!r}")


def scale_beta(beta: float, k: float) -> tuple[float, bool]:
    """``1 - k (1 - beta)``, clamped to ``1 - MAX_ONE_MINUS_BETA`` (and whether it was); the
    clamp only stops a beta falling, so a base beta below it stays (``beta1 = 0`` stays 0)."""
    one_minus, limit = k * (1.0 - beta), max(MAX_ONE_MINUS_BETA, 1.0 - beta)
    if one_minus > limit * (1 + 1e-12):  # (1 - 0.99) x 50 is 0.5000000000000004
        return 1.0 - limit, True
    return 1.0 - one_minus, False


def scale_hyperparameters(base: Hyperparameters, k: float, lr_ratio: float,
                          rule: str = "srr") -> Hyperparameters:
    """``base`` (tuned at ``B0``) at the batch ``k B0`` whose LR is ``lr_ratio`` times the base's
    (``sqrt(k)`` under legw's default rule): the module docstring's rules (``rule="srr"``), or
    ``base`` unchanged (``"none"``). ``k < 1`` (a smaller batch) scales the other way."""
    check_rule(rule, "--optimizer-scaling")
    for name, v in (("k", k), ("lr_ratio", lr_ratio)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise ValueError(f"{name}: must be a positive number, got {v!r}")
    if base.betas is not None:
        for i, b in enumerate(base.betas):
            _check(f"betas[{i}]", b, 0.0, 1.0)
    if base.ema_decay is not None:
        _check("ema_decay", base.ema_decay, 0.0, 1.0)
    if rule == "none":
        return base
    clamped = []
    betas = None
    if base.betas is not None:
        scaled = [scale_beta(b, k) for b in base.betas]
        betas = (scaled[0][0], scaled[1][0])
        clamped += [f"betas[{i}]" for i, (_, hit) in enumerate(scaled) if hit]
    return Hyperparameters(
        betas=betas,
        eps=None if base.eps is None else base.eps / math.sqrt(k),
        weight_decay=base.weight_decay * (1.0 if base.decay_is_l2 else k / lr_ratio),
        decay_is_l2=base.decay_is_l2,
        ema_decay=None if base.ema_decay is None else base.ema_decay ** k,
        clamped=tuple(clamped))
