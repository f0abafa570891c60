"""legw: large-batch training for PyTorch.

Tune once at a small batch, then scale the batch k-fold with sqrt LR scaling and linear-epoch
gradual warmup (LEGW) on top of SGD, LARS or LAMB (You et al., arXiv 1901.08256).

``import legw`` does not import torch: the torch-facing names below load on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from legw.schedule import BaseRecipe, Recipe, RecipeWarning

_LAZY = {
    "AdaptiveScaler": "legw.adaptive.scaler",
    "LEGWScheduler": "legw.lr_scheduler",
    "apply_hyperparameters": "legw.lr_scheduler",
    "apply_recipe": "legw.lr_scheduler",
    "ema_model": "legw.ema",
    "set_hyperparameters": "legw.lr_scheduler",
    "set_lr": "legw.lr_scheduler",
}

__all__ = ["BaseRecipe", "Recipe", "RecipeWarning", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'legw' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
