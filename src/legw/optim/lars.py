"""LARS: layer-wise adaptive rate scaling on top of SGD with momentum, multi-tensor.

You, Gitman, Ginsburg, "Large Batch Training of Convolutional Networks", arXiv 1708.03888;
semantics of the TF TPU reference (``lars_optimizer.py``), momentum in the PyTorch convention.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from legw.optim import _common as C
from legw.optim._base import BucketedOptimizer


class LARS(BucketedOptimizer):
    r"""LARS with the trust ratio computed for every layer (tensor) at once.

    For each parameter tensor ``w`` with gradient ``g`` in a group that adapts::

        trust = eta_tc * ||w|| / (||g|| + weight_decay * ||w|| + eps)   (1 if ||w|| or ||g|| is 0)
        g'    = (g + weight_decay * w) * trust
        v     = momentum * v + g'              (first step: v = g')
        w     = w - lr * v                     (nesterov: w = w - lr * (g' + momentum * v))

    Which groups adapt is the ``adapt`` setting: by default every group, with or without
    weight decay (the paper and the TF reference); ``adapt="with_decay"`` only groups with
    ``weight_decay != 0`` (timm's ``Lars``, whose default decay 0 makes its defaults plain SGD);
    ``adapt=False`` none. Excluding biases and normalization layers is the job of
    :func:`legw.optim.param_groups` (their group gets ``adapt=False``). A group that does not
    adapt has ``trust = 1`` and its step is **exactly** ``torch.optim.SGD(lr, momentum,
    dampening=0, weight_decay, nesterov)``, operation for operation. This is PyTorch's
    momentum convention (the LR multiplies the buffer on the way out); the TF reference folds
    the LR into the buffer (``v = m v + lr g'``, ``w -= v``), which differs only while the LR
    changes.

    Args:
        params: parameters or param groups (dicts); every hyperparameter below can be
            overridden per group, e.g. ``{"params": biases, "weight_decay": 0.0, "adapt": False}``.
        lr: learning rate: a number, or a one-element tensor (as torch's SGD takes; a
            compiled ``step`` then does not recompile when a scheduler changes it in place).
        momentum: momentum coefficient ``m`` (0 disables the buffer).
        weight_decay: L2 coefficient ``lambda`` added to the gradient before scaling.
        trust_coefficient: ``eta_tc`` (0.001 in the paper and the TF reference).
        eps: added to the trust-ratio denominator (0 in the reference).
        nesterov: Nesterov momentum, as in ``torch.optim.SGD``.
        adapt: which groups get the trust ratio: ``True`` (default) every group;
            ``"with_decay"`` only those with ``weight_decay != 0`` (timm's rule, and legw's
            default up to 0.1.0); ``False`` none (plain momentum SGD).
        always_adapt: deprecated (one release): the old spelling, whose rule was
            ``adapt and (weight_decay != 0 or always_adapt)``; ``True`` is ``adapt=True``,
            ``False`` is ``adapt="with_decay"``. Warns.
        max_trust: variant "ratio clamp": ``trust <- min(trust, max_trust)`` (None = off).
        trust_clip: variant "LARC clipping" (NVIDIA apex ``LARC(clip=True)``):
            ``trust <- min(trust / lr, 1)``, so the per-layer step size is ``min(trust, lr)``.
        chunk_size: CPU tensors are updated in pieces of about this many values, so the
            temporaries stay in cache (``None``: whole tensors; CUDA: always whole tensors).
            Changes speed only, not the result.
        fused: finish the step with torch's fused single-pass SGD kernel
            (``torch._fused_sgd_``, the kernel of ``torch.optim.SGD(fused=True)``) instead of a
            chain of multi-tensor ops. ``None`` (default): wherever the device and dtype have
            it (not CPU float16 / bfloat16, where torch 2.13's fused CPU SGD kernel is wrong:
            ``C.FUSED_SGD_CPU_DTYPES``); ``True``: required (``ValueError`` otherwise);
            ``False``: never. Same state, same result to rounding; without the trust ratio the
            fused path is exactly ``torch.optim.SGD(fused=True)`` and the other exactly
            ``SGD(foreach=True)``. On the CPU with momentum and without Nesterov the trust
            ratio rides in the kernel's ``dampening`` (one pass, see
            ``_fold_trust_into_dampening``).

    State (``state[p]["momentum_buffer"]``, as ``torch.optim.SGD``) has the parameter's dtype.
    Norms are computed in float32 (float64 for float64 parameters).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 0.0,
        nesterov: bool = False,
        *,
        adapt: bool | str = True,
        always_adapt: bool | None = None,
        max_trust: float | None = None,
        trust_clip: bool = False,
        chunk_size: int | None = C.CHUNK_SIZE,
        fused: bool | None = None,
    ) -> None:
        C.check_chunk_size(chunk_size)
        C.check_fused(fused)
        self.chunk_size, self.fused = chunk_size, fused
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay,
            trust_coefficient=trust_coefficient, eps=eps, nesterov=nesterov, adapt=adapt,
            max_trust=max_trust, trust_clip=trust_clip,
        )
        super().__init__(params, defaults, always_adapt)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        C.check_common(group)
        C.check_number(group, "momentum", 0.0, 1.0, hi_open=False)
        C.check_number(group, "trust_coefficient", 0.0, lo_open=True)
        C.check_number(group, "eps", 0.0)
        C.check_flag(group, "nesterov")
        if group["nesterov"] and group["momentum"] == 0:
            raise ValueError("nesterov: needs momentum > 0, got momentum=0")
        if self.fused:
            C.check_fused_params(group["params"], C.FUSED_SGD_CPU_DTYPES)

    def _update(self, keys: list[Tensor], params: list[Tensor], grads: list[Tensor],
                group: dict[str, Any], mesh: C.MeshNorms | None) -> None:
        lr = C.group_lr(group, params[0].device)
        momentum, wd = group["momentum"], group["weight_decay"]
        adapt = C.adapts(group)

        # A zero buffer makes the first step v = 0 * m + d = d exactly, as torch's SGD.
        bufs = []
        if momentum != 0:
            for p in keys:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                bufs.append(C.local(state["momentum_buffer"]))
        fused = C.use_fused(self.fused, [params, grads, bufs], C.FUSED_SGD_CPU_DTYPES)
        lists = [params, grads, *([bufs] if bufs else [])]

        if not adapt and fused:  # exactly torch.optim.SGD(fused=True): one kernel per tensor
            torch._fused_sgd_(params, grads, bufs, weight_decay=wd, momentum=momentum, lr=lr,
                              dampening=0.0, nesterov=group["nesterov"], maximize=False,
                              is_first_step=False)
            return

        # Phase 1: one trust ratio per tensor, from whole-tensor norms (of sharded tensors:
        # the local norms summed over the mesh, one all-reduce for the bucket).
        if adapt:
            w_norm, g_norm = C.norms(params), C.norms(grads)
            if mesh is not None:
                w_norm, g_norm = mesh.full(w_norm, g_norm)
            trust = C.trust_ratio(
                group["trust_coefficient"] * w_norm, g_norm + wd * w_norm + group["eps"],
                w_norm, g_norm,
            )
            trust = C.limit_trust(trust, lr, group["max_trust"], group["trust_clip"])
            if fused and momentum != 0 and not group["nesterov"] \
                    and params[0].device.type == "cpu":
                _fold_trust_into_dampening(params, grads, bufs, trust, lr, momentum, wd)
                return
            trust = trust.unbind(0)

        # Phase 2, run by run (cache-sized pieces on CPU, whole tensors on CUDA):
        # d = (g + wd * w) * trust, then v = m * v + d; w -= lr * v (nesterov: lr * (d + m v)),
        # the latter either by the fused SGD kernel (a single pass) or by multi-tensor ops.
        for run in C.plan(lists, self.chunk_size):
            w, g = C.take(params, run), C.take(grads, run)
            if adapt:
                t = [trust[i] for i, _, _ in run]
                if wd != 0:
                    d = torch._foreach_add(g, w, alpha=wd)
                    torch._foreach_mul_(d, t)
                else:
                    d = torch._foreach_mul(g, t)
            elif wd != 0:
                d = torch._foreach_add(g, w, alpha=wd)
            else:
                d = g  # read only below
            v = C.take(bufs, run) if bufs else []
            if fused:
                torch._fused_sgd_(w, d, v, weight_decay=0.0, momentum=momentum, lr=lr,
                                  dampening=0.0, nesterov=group["nesterov"], maximize=False,
                                  is_first_step=False)
                continue
            if momentum != 0:
                torch._foreach_mul_(v, momentum)
                torch._foreach_add_(v, d)
                d = torch._foreach_add(d, v, alpha=momentum) if group["nesterov"] else v
            C.add_scaled_(w, d, lr)


def _fold_trust_into_dampening(params: list[Tensor], grads: list[Tensor], bufs: list[Tensor],
                               trust: Tensor, lr: float | Tensor, momentum: float,
                               wd: float) -> None:
    """Phase 2 on the CPU with momentum and no Nesterov: the whole update in one pass.

    torch's fused SGD kernel computes ``d = g + wd * w; v = m * v + (1 - dampening) * d;
    w -= lr * v``. With ``dampening = 1 - trust`` (one call per tensor) that is LARS's
    ``v = m * v + trust * (g + wd * w)``: ``w``, ``g`` and ``v`` are read once, as by
    ``SGD(fused=True)``, after the norms' read of ``w`` and ``g``, and no temporary is
    written. The kernel forms ``1 - dampening`` in float64, so ``trust`` is recovered to
    ~1e-16 absolute. The ratios are read on the host: free on the CPU, where the tensors are
    (so not on CUDA, where it would synchronise; there, and with Nesterov, where the kernel's
    look-ahead ``d + m * v`` would need ``d`` scaled, the run loop below does it).
    """
    for w, g, v, t in zip(params, grads, bufs, trust.tolist()):
        torch._fused_sgd_([w], [g], [v], weight_decay=wd, momentum=momentum, lr=lr,
                          dampening=1.0 - t, nesterov=False, maximize=False,
                          is_first_step=False)
