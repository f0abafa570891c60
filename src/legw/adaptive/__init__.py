"""The adaptive wing: batch scaling with a gain measured from the gradient noise while training.

- :mod:`~legw.adaptive.noise`: the pure estimator of ``B_noise = tr(Sigma) / |G|^2``
  (McCandlish et al. 2018), offline from draws and online over a window of steps;
- :mod:`~legw.adaptive.rule`: the pure rule, :func:`gain` and :class:`AdaptiveSchedule`
  (the AdaScale gain sets the LR and how fast the base recipe is replayed);
- :mod:`~legw.adaptive.meter`: :class:`NoiseMeter`, the torch edge that measures a step's
  micro-batch and full gradient norms (hooks, the all-reduce, clipping);
- :mod:`~legw.adaptive.ramp`: the pure batch ramp (:class:`BatchRamp`: the batch grows with the
  noise, by Seesaw, or by fixed points; the LR follows it);
- :mod:`~legw.adaptive.scaler`: :class:`AdaptiveScaler` and :class:`RampScaler`, meter + rule
  for your own loop.

``import legw.adaptive`` imports no torch: the torch-facing names load on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from legw.adaptive.noise import (
    NoiseScaleEstimate,
    OnlineNoiseScale,
    estimate_from_norms,
    unbiased_terms,
)
from legw.adaptive.ramp import BatchRamp, RampRule
from legw.adaptive.rule import (
    ADAPTIVE_WARMUPS,
    NORMALISED_OPTIMIZERS,
    AdaptiveSchedule,
    default_lr_power,
    default_noise_window,
    gain,
)

_LAZY = {"NoiseMeter": "legw.adaptive.meter", "Measurement": "legw.adaptive.meter",
         "AdaptiveScaler": "legw.adaptive.scaler", "RampScaler": "legw.adaptive.scaler"}

__all__ = ["ADAPTIVE_WARMUPS", "NORMALISED_OPTIMIZERS", "AdaptiveSchedule", "BatchRamp",
           "NoiseScaleEstimate", "RampRule",
           "OnlineNoiseScale", "default_lr_power", "default_noise_window", "estimate_from_norms",
           "gain", "unbiased_terms", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'legw.adaptive' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
