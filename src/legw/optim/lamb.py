"""LAMB: layer-wise adaptive moments for batch training, multi-tensor.

You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
arXiv 1904.00962; semantics of the TF-Addons reference and NVIDIA's NVLAMB (bias correction on,
no global gradient clipping inside the optimizer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from legw.optim import _common as C


class LAMB(torch.optim.Optimizer):
    r"""LAMB with the trust ratio computed for every layer (tensor) at once.

    For each parameter tensor ``w`` with gradient ``g`` at step ``t`` (1-based)::

        m = beta1 * m + (1 - beta1) * g            m_hat = m / (1 - beta1^t)
        v = beta2 * v + (1 - beta2) * g^2          v_hat = v / (1 - beta2^t)
        u = m_hat / (sqrt(v_hat) + eps) + weight_decay * w
        trust = ||w|| / ||u||                      (1 if ||w|| or ||u|| is 0)
        w = w - lr * trust * u

    A group adapts when ``adapt and (weight_decay != 0 or always_adapt)``; otherwise
    ``trust = 1``, which is Adam with decoupled weight decay (AdamW, with the decay scaled by
    ``lr`` as in ``torch.optim.AdamW``), or plain Adam when ``weight_decay == 0``.

    Args:
        params: parameters or param groups (dicts); every hyperparameter below can be
            overridden per group.
        lr: learning rate.
        betas: ``(beta1, beta2)`` moment coefficients.
        eps: added to ``sqrt(v_hat)`` (1e-6 as in the LAMB paper's reference code).
        weight_decay: decoupled weight decay ``lambda`` inside ``u``.
        bias_correction: divide the moments by ``1 - beta^t`` (on, as in NVLAMB).
        adapt: apply the trust ratio to this group (``False`` -> plain Adam(W) update).
        always_adapt: adapt even when ``weight_decay == 0``.
        max_trust: variant "ratio clamp": ``trust <- min(trust, max_trust)`` (None = off).
        trust_clip: variant "LARC clipping": ``trust <- min(trust / lr, 1)``.

    State per parameter: ``step`` (a Python int), ``exp_avg`` and ``exp_avg_sq`` in the
    parameter's dtype. Norms are computed in float32 (float64 for float64 parameters).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        bias_correction: bool = True,
        *,
        adapt: bool = True,
        always_adapt: bool = False,
        max_trust: float | None = None,
        trust_clip: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
            bias_correction=bias_correction, adapt=adapt, always_adapt=always_adapt,
            max_trust=max_trust, trust_clip=trust_clip,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        C.check_common(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        for i, name in enumerate(("betas[0]", "betas[1]")):
            C.check_number({name: betas[i]}, name, 0.0, 1.0, hi_open=True)
        C.check_number(group, "eps", 0.0)
        C.check_flag(group, "bias_correction")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = C.params_with_grad(group, "LAMB")
            for idx in C.buckets(params).values():
                ps = [params[i] for i in idx]
                self._update(ps, [p.grad for p in ps], group)
        return loss

    def _update(self, params: list[Tensor], grads: list[Tensor], group: dict[str, Any]) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        steps = []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            steps.append(state["step"])
        exp_avg = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sq = [self.state[p]["exp_avg_sq"] for p in params]
        if group["bias_correction"]:
            bc1 = [1 - beta1**t for t in steps]
            bc2 = [1 - beta2**t for t in steps]
        else:
            bc1 = bc2 = [1.0] * len(steps)

        # Phase 1: the moments.
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)

        # Phase 2: u = m_hat / (sqrt(v_hat) + eps) + wd * w, written as
        # c * m / (sqrt(v) + eps * sqrt(bc2)) + wd * w with c = sqrt(bc2) / bc1,
        # which saves the two passes that de-bias m and v separately.
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_add_(denom, [eps * math.sqrt(b) for b in bc2])
        c = [math.sqrt(b2) / b1 for b1, b2 in zip(bc1, bc2)]
        if wd != 0:
            u = torch._foreach_mul(params, wd)
            torch._foreach_addcdiv_(u, exp_avg, denom, c)
        else:
            u = torch._foreach_div(exp_avg, denom)
            torch._foreach_mul_(u, c)
        del denom

        # Phase 3: trust ratio and step.
        if C.adapts(group):
            w_norm, u_norm = C.norms(params), C.norms(u)
            trust = C.trust_ratio(w_norm, u_norm, w_norm, u_norm)
            trust = C.limit_trust(trust, lr, group["max_trust"], group["trust_clip"])
            torch._foreach_addcmul_(params, u, list((trust * -lr).unbind(0)))
        else:
            torch._foreach_add_(params, u, alpha=-lr)
