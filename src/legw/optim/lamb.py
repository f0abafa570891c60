"""LAMB: layer-wise adaptive moments for batch training, multi-tensor.

You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
arXiv 1904.00962; semantics of the TF-Addons reference and NVIDIA's NVLAMB (bias correction on,
no global gradient clipping inside the optimizer).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from legw.optim import _common as C
from legw.optim._base import BucketedOptimizer


class LAMB(BucketedOptimizer):
    r"""LAMB with the trust ratio computed for every layer (tensor) at once.

    For each parameter tensor ``w`` with gradient ``g`` at step ``t`` (1-based)::

        m = beta1 * m + (1 - beta1) * g            m_hat = m / (1 - beta1^t)
        v = beta2 * v + (1 - beta2) * g^2          v_hat = v / (1 - beta2^t)
        u = m_hat / (sqrt(v_hat) + eps) + weight_decay * w
        trust = ||w|| / ||u||                      (1 if ||w|| or ||u|| is 0)
        w = w - lr * trust * u

    Which groups adapt is the ``adapt`` setting: by default every group, with or without
    weight decay (the paper's reference, TF-Addons ``LAMB``, whose default decay is 0);
    ``adapt="with_decay"`` only groups with ``weight_decay != 0`` (timm's ``Lamb``; its default
    decay 0.01 makes its defaults adapt); ``adapt=False`` none. Excluding biases and
    normalization layers is the job of :func:`legw.optim.param_groups` (their group gets
    ``adapt=False``). A group that does not adapt has ``trust = 1``: Adam with decoupled
    weight decay (AdamW, with the decay scaled by ``lr`` as in ``torch.optim.AdamW``), or
    plain Adam when ``weight_decay == 0``.

    Args:
        params: parameters or param groups (dicts); every hyperparameter below can be
            overridden per group.
        lr: learning rate: a number, or a one-element tensor (a compiled ``step`` then does
            not recompile when a scheduler changes it in place).
        betas: ``(beta1, beta2)`` moment coefficients.
        eps: added to ``sqrt(v_hat)`` (1e-6 as in the LAMB paper's reference code).
        weight_decay: decoupled weight decay ``lambda`` inside ``u``.
        bias_correction: divide the moments by ``1 - beta^t`` (on, as in NVLAMB).
        adapt: which groups get the trust ratio: ``True`` (default) every group;
            ``"with_decay"`` only those with ``weight_decay != 0`` (timm's rule, and legw's
            default up to 0.1.0); ``False`` none (plain Adam(W) update).
        always_adapt: deprecated (one release): the old spelling, whose rule was
            ``adapt and (weight_decay != 0 or always_adapt)``; ``True`` is ``adapt=True``,
            ``False`` is ``adapt="with_decay"``. Warns.
        max_trust: variant "ratio clamp": ``trust <- min(trust, max_trust)`` (None = off).
        trust_clip: variant "LARC clipping": ``trust <- min(trust / lr, 1)``.
        chunk_size: CPU tensors are updated in pieces of about this many values, so the
            temporaries stay in cache (``None``: whole tensors; CUDA: always whole tensors).
        fused: use torch's fused single-pass Adam kernels (those of
            ``torch.optim.AdamW(fused=True)``). ``None`` (default): wherever the device and
            dtype have them; ``True``: required (``ValueError`` otherwise); ``False``: never.
            Same state, same result to rounding. The fused path keeps one scratch buffer the
            size of the adapted parameters between steps (not part of the state).

    State per parameter: ``step`` (a float32 CPU tensor, as in ``torch.optim.Adam``; a Python
    int from an older checkpoint is converted), ``exp_avg`` and ``exp_avg_sq`` in the
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
        self._buffers: dict[tuple[torch.device, torch.dtype], Tensor] = {}
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
            bias_correction=bias_correction, adapt=adapt, max_trust=max_trust,
            trust_clip=trust_clip,
        )
        super().__init__(params, defaults, always_adapt)

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
        if self.fused:
            C.check_fused_params(group["params"])

    def _update(self, keys: list[Tensor], params: list[Tensor], grads: list[Tensor],
                group: dict[str, Any], mesh: C.MeshNorms | None) -> None:
        lr, wd, eps = C.group_lr(group, params[0].device), group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        steps = []
        for p in keys:
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)  # as torch.optim.Adam
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif not isinstance(state["step"], Tensor):  # a checkpoint with a Python int step
                state["step"] = torch.tensor(float(state["step"]), dtype=torch.float32)
            steps.append(state["step"])
        torch._foreach_add_(steps, 1)
        exp_avg = [C.local(self.state[p]["exp_avg"]) for p in keys]
        exp_avg_sq = [C.local(self.state[p]["exp_avg_sq"]) for p in keys]
        if C.use_fused(self.fused, [params, grads, exp_avg, exp_avg_sq]):
            self._update_fused(params, grads, exp_avg, exp_avg_sq, steps, group, mesh)
            return
        # Eager: the step counts as Python numbers (CPU tensors, no device sync). Compiled: as
        # tensors, so the graph does not specialise (and recompile) on the step count.
        ts = steps if torch.compiler.is_compiling() else [t.item() for t in steps]
        if group["bias_correction"]:
            bc1 = [1 - beta1**t for t in ts]
            bc2 = [1 - beta2**t for t in ts]
        else:
            bc1 = bc2 = [1.0] * len(ts)

        # u = m_hat / (sqrt(v_hat) + eps) + wd * w is computed as
        # c * m / (sqrt(v) + eps * sqrt(bc2)) + wd * w with c = sqrt(bc2) / bc1, the same number
        # without the two passes that de-bias m and v separately.
        eps_t = [eps * _sqrt(b) for b in bc2]
        c_t = [_sqrt(b2) / b1 for b1, b2 in zip(bc1, bc2)]
        adapt = C.adapts(group)
        lists = [params, grads, exp_avg, exp_avg_sq]
        runs = C.plan(lists, self.chunk_size)

        def direction(run: list[tuple[int, int, int]], w: list[Tensor]) -> list[Tensor]:
            denom = torch._foreach_sqrt(C.take(exp_avg_sq, run))
            torch._foreach_add_(denom, [eps_t[i] for i, _, _ in run])
            c = [c_t[i] for i, _, _ in run]
            m = C.take(exp_avg, run)
            if isinstance(c[0], Tensor):  # compiled: no host scalars (inductor fuses the chain)
                u = torch._foreach_div(m, denom)
                torch._foreach_mul_(u, c)
                if wd != 0:
                    torch._foreach_add_(u, w, alpha=wd)
            elif wd != 0:
                u = torch._foreach_mul(w, wd)
                torch._foreach_addcdiv_(u, m, denom, c)
            else:
                u = torch._foreach_div(m, denom)
                torch._foreach_mul_(u, c)
            return u

        # Phase 1, run by run (cache-sized pieces on CPU, whole tensors on CUDA): the moments,
        # then u and the norms of the pieces of w and u. Without the trust ratio, the step too.
        w_pieces, u_pieces = [], []
        for run in runs:
            w, g = C.take(params, run), C.take(grads, run)
            torch._foreach_lerp_(C.take(exp_avg, run), g, 1 - beta1)
            v = C.take(exp_avg_sq, run)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, g, g, value=1 - beta2)
            u = direction(run, w)
            if adapt:
                w_pieces += torch._foreach_norm(w, 2, dtype=C.norm_dtype(w))
                u_pieces += torch._foreach_norm(u, 2, dtype=C.norm_dtype(w))
            else:
                C.add_scaled_(w, u, lr)
        if not adapt:
            return

        # Phase 2: per-tensor norms from the pieces, the trust ratio, then the step with u
        # recomputed run by run (cheaper than writing and re-reading a full-size u).
        trust = self._trust(w_pieces, u_pieces, runs, len(params), lr, group, mesh)
        scale = (trust * -lr).unbind(0)
        for run in runs:
            w = C.take(params, run)
            u = direction(run, w)
            torch._foreach_addcmul_(w, u, [scale[i] for i, _, _ in run])

    def _update_fused(self, params: list[Tensor], grads: list[Tensor], exp_avg: list[Tensor],
                      exp_avg_sq: list[Tensor], steps: list[Tensor], group: dict[str, Any],
                      mesh: C.MeshNorms | None) -> None:
        """The same step through torch's fused Adam kernels.

        ``torch._fused_adamw_`` computes ``w <- w (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps)
        = w - lr u``: LAMB's step is that kernel with the per-tensor learning rate
        ``lr * trust`` (a 0-dim tensor, so no host synchronisation). ``trust`` needs ``||u||``
        with the new moments before anything is written: phase 1 gets it run by run from
        ``torch._fused_adam_`` applied to cache-resident copies of the moments and to a scratch
        "parameter" ``wd * w`` with ``lr = -1``, which leaves ``wd * w + m_hat / (sqrt(v_hat) +
        eps) = u`` in the scratch.
        """
        lr, wd, eps = C.group_lr(group, params[0].device), group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        # Without bias correction a step of 2^62 makes 1 - beta^t == 1.0 exactly in float64 for
        # every beta < 1. The kernels read the step counts on the parameters' device.
        device = params[0].device
        if not group["bias_correction"]:
            steps = [torch.tensor(2.0**62, device=device)] * len(steps)
        step_t = [t if t.device == device else t.to(device, non_blocking=True) for t in steps]
        hyper = dict(beta1=beta1, beta2=beta2, eps=eps, amsgrad=False, maximize=False)

        if not C.adapts(group):  # AdamW (Adam when wd == 0), one kernel per tensor
            torch._fused_adamw_(params, grads, exp_avg, exp_avg_sq, [], step_t, lr=lr,
                                weight_decay=wd, **hyper)
            return

        # Phase 1, run by run (cache-sized pieces on CPU): the fused Adam kernel updates the
        # moments and, applied with lr = -1 to a scratch "parameter" that holds wd * w, leaves
        # u = wd * w + m_hat / (sqrt(v_hat) + eps) there; the norms of w and u are taken while
        # the pieces are in cache.
        runs = C.plan([params, grads, exp_avg, exp_avg_sq], self.chunk_size)
        u_all = self._scratch(params)
        w_pieces, u_pieces = [], []
        for run in runs:
            w, u = C.take(params, run), C.take(u_all, run)
            if wd != 0:  # u = wd * w in one pass (no copy, then scale)
                for wi, ui in zip(w, u):
                    torch.mul(wi, wd, out=ui)
            else:
                torch._foreach_zero_(u)
            torch._fused_adam_(u, C.take(grads, run), C.take(exp_avg, run),
                               C.take(exp_avg_sq, run), [], [step_t[i] for i, _, _ in run],
                               lr=-1.0, weight_decay=0.0, **hyper)
            w_pieces += torch._foreach_norm(w, 2, dtype=C.norm_dtype(w))
            u_pieces += torch._foreach_norm(u, 2, dtype=C.norm_dtype(w))

        # Phase 2: the trust ratio, then w -= lr * trust * u in one multi-tensor call.
        trust = self._trust(w_pieces, u_pieces, runs, len(params), lr, group, mesh)
        torch._foreach_addcmul_(params, u_all, (trust * -lr).unbind(0))

    @staticmethod
    def _trust(w_pieces: list[Tensor], u_pieces: list[Tensor],
               runs: list[list[tuple[int, int, int]]], n: int, lr: float | Tensor,
               group: dict[str, Any], mesh: C.MeshNorms | None) -> Tensor:
        """``||w|| / ||u||`` per tensor from the norms of its pieces (of a sharded tensor: of
        its local shard, summed over the mesh), with the named variants applied."""
        owner = [i for run in runs for i, _, _ in run]
        w_norm, u_norm = C.combine(w_pieces, owner, n), C.combine(u_pieces, owner, n)
        if mesh is not None:
            w_norm, u_norm = mesh.full(w_norm, u_norm)
        trust = C.trust_ratio(w_norm, u_norm, w_norm, u_norm)
        return C.limit_trust(trust, lr, group["max_trust"], group["trust_clip"])

    def _scratch(self, params: list[Tensor]) -> list[Tensor]:
        """Views shaped like ``params`` into one flat buffer kept between steps (not state)."""
        numel = sum(p.numel() for p in params)
        key = (params[0].device, params[0].dtype)
        flat = self._buffers.get(key)
        if flat is None or flat.numel() < numel:
            flat = self._buffers[key] = torch.empty(numel, dtype=key[1], device=key[0])
        out, at = [], 0
        for p in params:
            out.append(flat[at:at + p.numel()].view(p.shape))
            at += p.numel()
        return out


def _sqrt(x: float | Tensor) -> float | Tensor:
    return x.sqrt() if isinstance(x, Tensor) else math.sqrt(x)
