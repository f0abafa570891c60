"""Hooks that read each micro-batch's squared gradient norm as backward produces it.

The small-batch half of the online noise measurement (legw.gradient_noise): the trainer, the
planner's short measurement and :class:`legw.adaptive_scaler.AdaptiveScaler` share them. A
tensor hook sees a parameter's gradient before it is added to ``.grad`` (under DDP: this rank's,
before the all-reduce), so no gradient is copied and no extra pass is run.
"""

from __future__ import annotations

import functools
from typing import Any

import torch


def add_grad_sq(into: torch.Tensor, grad: torch.Tensor) -> None:
    """``into += |grad|^2``, on ``into``'s device and in its dtype (no host synchronisation)."""
    grad = grad.detach()
    if grad.dim() == 4 and not grad.is_contiguous() \
            and grad.is_contiguous(memory_format=torch.channels_last):
        grad = grad.permute(0, 2, 3, 1)  # --channels-last: NHWC in memory, flattened as a view
    flat = grad.reshape(-1)
    if flat.dtype != into.dtype:
        flat = flat.to(into.dtype)
    into.add_(torch.dot(flat, flat))


def hook_grad_sq(params: Any, into: torch.Tensor) -> list[Any]:
    """Hooks that add to ``into`` the squared norm of the gradient each backward produces for
    ``params``, before it is added to ``.grad`` (under DDP: this rank's, before the
    all-reduce). After ``A`` micro-steps of ``(loss_i / A).backward()`` ``into`` holds
    ``sum_i |g_i / A|^2``, so ``mean_i |g_i|^2 = A * into``; no gradient is copied. Returns
    the hook handles."""
    hook = functools.partial(add_grad_sq, into)
    return [p.register_hook(hook) for p in params if p.requires_grad]
