"""Optimizers by name: ``OPTIMIZERS`` and ``build_optimizer``.

One calling convention for all five, so a trainer can write
``build_optimizer(name, groups, lr=..., momentum=..., weight_decay=...)`` for any of them:

* ``momentum`` is the SGD/LARS momentum and, for ``adam``/``adamw``/``lamb``, the first-moment
  coefficient ``beta1`` (``betas=(momentum, 0.999)``). Giving both ``momentum`` and ``betas``
  is an error.
* A hyperparameter the optimizer does not have (``nesterov`` for Adam, ``eps`` for SGD, ...)
  is a ``ValueError`` naming it and listing the accepted ones.
* The excluded group from :func:`legw.optim.param_groups` carries ``adapt=False``. LARS/LAMB
  read it; the torch optimizers keep unknown group keys untouched (it even survives
  ``state_dict``), so it is harmless there. Their excluded group still gets
  ``weight_decay=0``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

from legw.optim.lamb import LAMB
from legw.optim.lars import LARS

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def _betas(momentum: float | None, betas: tuple[float, float] | None) -> tuple[float, float]:
    if momentum is not None and betas is not None:
        raise ValueError(
            f"momentum: is beta1 for this optimizer; give momentum={momentum!r} or "
            f"betas={betas!r}, not both"
        )
    if betas is not None:
        return tuple(betas)  # type: ignore[return-value]
    return (0.9 if momentum is None else momentum, 0.999)


def sgd(params: Params, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0,
        nesterov: bool = False, dampening: float = 0.0) -> torch.optim.Optimizer:
    """``torch.optim.SGD`` with momentum (default 0.9) and coupled weight decay."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov, dampening=dampening)


def adam(params: Params, lr: float, *, momentum: float | None = None,
         betas: tuple[float, float] | None = None, eps: float = 1e-8,
         weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (L2 weight decay added to the gradient); ``momentum`` is beta1."""
    return torch.optim.Adam(params, lr=lr, betas=_betas(momentum, betas), eps=eps,
                            weight_decay=weight_decay)


def adamw(params: Params, lr: float, *, momentum: float | None = None,
          betas: tuple[float, float] | None = None, eps: float = 1e-8,
          weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """``torch.optim.AdamW`` (decoupled weight decay); ``momentum`` is beta1."""
    return torch.optim.AdamW(params, lr=lr, betas=_betas(momentum, betas), eps=eps,
                             weight_decay=weight_decay)


def lars(params: Params, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0,
         trust_coefficient: float = 0.001, eps: float = 0.0, nesterov: bool = False,
         adapt: bool | str = True, max_trust: float | None = None, trust_clip: bool = False,
         always_adapt: bool | None = None) -> torch.optim.Optimizer:
    """:class:`legw.optim.LARS` (``always_adapt``: deprecated spelling of ``adapt``)."""
    return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                trust_coefficient=trust_coefficient, eps=eps, nesterov=nesterov, adapt=adapt,
                always_adapt=always_adapt, max_trust=max_trust, trust_clip=trust_clip)


def lamb(params: Params, lr: float, *, momentum: float | None = None,
         betas: tuple[float, float] | None = None, eps: float = 1e-6,
         weight_decay: float = 0.0, bias_correction: bool = True, adapt: bool | str = True,
         max_trust: float | None = None, trust_clip: bool = False,
         always_adapt: bool | None = None) -> torch.optim.Optimizer:
    """:class:`legw.optim.LAMB`; ``momentum`` is beta1 (``always_adapt``: deprecated spelling
    of ``adapt``)."""
    return LAMB(params, lr=lr, betas=_betas(momentum, betas), eps=eps,
                weight_decay=weight_decay, bias_correction=bias_correction, adapt=adapt,
                always_adapt=always_adapt, max_trust=max_trust, trust_clip=trust_clip)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": sgd,
    "adam": adam,
    "adamw": adamw,
    "lars": lars,
    "lamb": lamb,
}
"""Optimizer name -> constructor ``(params, lr, **hyper)``."""


def build_optimizer(name: str, params: Params, lr: float, **hyper: Any) -> torch.optim.Optimizer:
    """Build optimizer ``name`` (a key of :data:`OPTIMIZERS`) over ``params``.

    Raises ``ValueError`` for an unknown name (listing the valid ones), for a hyperparameter the
    optimizer does not accept (listing the accepted ones), and for invalid values.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown name {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    ctor = OPTIMIZERS[name]
    accepted = [k for k in inspect.signature(ctor).parameters if k not in ("params", "lr")]
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        raise ValueError(
            f"{unknown[0]}: not a hyperparameter of {name!r} (accepted: {', '.join(accepted)})"
        )
    return ctor(params, lr, **hyper)
