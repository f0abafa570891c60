"""``NoiseMeter``: the torch edge of the online noise measurement, one implementation for the
trainer, :class:`legw.adaptive.AdaptiveScaler` and the planner's short measurement.

Per optimizer step, with ``A`` micro-batches of ``b`` samples on each of ``W`` ranks
(``B = b W A``) and each micro-step running ``(loss_i / A).backward()``::

    |G_b|^2 = mean over the W*A micro-gradients of |g_i|^2   (parameter hooks, before DDP's
            = mean over ranks of  A * sum_i |g_i / A|^2        all-reduce; no gradient copied)
    |G_B|^2 = |grad|^2 of the step (p.grad after the all-reduce), measured before clipping

A tensor hook sees a parameter's gradient before it is added to ``.grad`` (under DDP: this
rank's, before the all-reduce), so the small-batch norms cost a dot product per parameter
and micro-step, and one all-reduce of a scalar per step (packed with the loss when the caller
gives one).

Under FSDP2 (``fully_shard``) the parameters autograd sees are the unsharded copies FSDP
swaps in, and each rank accumulates its micro-steps unsharded before one reduce-scatter per
step: there the small-batch draws are the ranks' gradients (``B / W`` samples each), read
from the reduce-scatter's input by a custom reduce-scatter (:func:`fsdp_rank_norms`) -- the
sharded analogue of DDP's per-rank gradient. Its input is the rank's own unsharded gradient
as long as FSDP does not pre-divide it, which it does only for reduce dtypes other than
float32 and bfloat16: those are refused.

The step's gradient norm is taken with the optional clipping in the same pass.
:meth:`NoiseMeter.measure` returns the four numbers the callers need; what they do with a
non-finite one (stop the run, raise) is theirs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Measurement:
    """One optimizer step's measurement, averaged over ranks."""

    loss: float | None
    """The step's mean loss (when :meth:`NoiseMeter.measure` was given one)."""
    small_sq: float | None
    """``|G_b|^2``: the mean squared norm of the micro-batch gradients (``None`` when the meter
    does not measure the noise)."""
    big_sq: float
    """``|G_B|^2``: the squared norm of the step's gradient, before clipping."""
    grad_norm: float
    """``|G_B|``, as ``clip_grad_norm_`` returns it."""

    @property
    def finite(self) -> bool:
        """False when the loss or the gradient norm is not finite: the step must not be taken."""
        return math.isfinite(self.grad_norm) and (self.loss is None or math.isfinite(self.loss))


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


class NoiseMeter:
    """Measure each optimizer step of ``params``: the loss, ``|G_b|^2``, ``|G_B|^2`` and the
    gradient norm (clipped to ``max_grad_norm`` when given).

    ``accumulation_steps`` is ``A``, the backward passes each rank runs per step.
    ``noise=False`` skips the hooks (the meter then only reduces the loss and takes the
    gradient norm); with ``noise=True`` the step must have two or more micro-gradients in all
    (``A >= 2`` or several ranks) for ``|G_b|^2`` and ``|G_B|^2`` to differ in batch size.
    """

    def __init__(self, params: Iterable[torch.Tensor], accumulation_steps: int, *,
                 noise: bool = True, max_grad_norm: float | None = None,
                 fsdp_modules: Iterable[torch.nn.Module] = ()) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("model: has no parameter that requires a gradient")
        self.accumulation_steps, self.max_grad_norm = accumulation_steps, max_grad_norm
        device = self.params[0].device
        self._sq = torch.zeros((), device=device)
        fsdp_modules = list(fsdp_modules)
        self._calls = [0] * (len(fsdp_modules) or len(self.params))
        if not noise:
            self._handles = []
        elif fsdp_modules:  # one reduce-scatter per module and step: its input is the rank's
            self.accumulation_steps = 1
            self._handles = fsdp_rank_norms(fsdp_modules, self._sq, self._calls)
        else:
            self._handles = [p.register_hook(self._hook(i)) for i, p in enumerate(self.params)]

    @property
    def measures_noise(self) -> bool:
        return bool(self._handles)

    def _hook(self, index: int):  # noqa: ANN202 -- a tensor hook
        sq, calls = self._sq, self._calls  # not self: the hooks must not keep the meter alive

        def hook(grad: torch.Tensor) -> None:
            add_grad_sq(sq, grad)
            calls[index] += 1  # per parameter: one unused in a pass must not hide the pass

        return hook

    def measure(self, loss: torch.Tensor | None = None) -> Measurement:
        """After the step's backward passes (and DDP's all-reduce), before ``optimizer.step()``:
        average ``loss`` (a scalar tensor) and ``|G_b|^2`` over ranks in one all-reduce, take
        the gradient norm (clipping it when configured) and reset for the next step.

        ``RuntimeError`` when the hooks saw other than ``accumulation_steps`` backward passes."""
        stats = []
        if loss is not None:
            stats.append(loss.detach().reshape(()).float())
        if self._handles:  # taken and reset together: a refused step leaves nothing behind
            passes = max(self._calls)
            stats.append(self._sq * self.accumulation_steps)  # A * sum_i |g_i / A|^2 (or the
            # rank's |g_r|^2 under FSDP, where the step has one draw per rank)
            self._sq.zero_()
            self._calls[:] = [0] * len(self._calls)
            if passes != self.accumulation_steps:
                raise RuntimeError(f"NoiseMeter: {passes} backward passes since the last step, "
                                   f"expected accumulation_steps = {self.accumulation_steps}")
        values = _mean_over_ranks(torch.stack(stats)).tolist() if stats else []
        if self.max_grad_norm is not None:
            norm = _item(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm))
        else:
            norm = _item(torch.nn.utils.get_total_norm(
                [p.grad for p in self.params if p.grad is not None]))
        return Measurement(loss=values[0] if loss is not None else None,
                           small_sq=values[-1] if self._handles else None,
                           big_sq=norm * norm, grad_norm=norm)

    def remove(self) -> None:
        """Detach the hooks (the meter measures no noise afterwards)."""
        for h in self._handles:
            h.remove()
        self._handles = []


# torch's FSDP2 calls reduce_scatter_single since 2.12; reduce_scatter_tensor before it
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def _item(norm: torch.Tensor) -> float:
    """A total norm as a number (of sharded gradients torch returns a replicated DTensor)."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def fsdp_rank_norms(modules: list[torch.nn.Module], into: torch.Tensor, calls: list[int]
                    ) -> list[Any]:
    """Make every FSDP2 module's reduce-scatter add ``|input|^2`` (this rank's unsharded
    gradient of the module, zero-padded) to ``into`` before it reduces, and count its calls in
    ``calls``. Returns handles whose ``remove()`` restores torch's reduce-scatter."""
    from torch.distributed.fsdp._fully_shard._fsdp_api import ReduceScatter

    class RankNorms(ReduceScatter):
        def __init__(self, index: int) -> None:
            self.index = index

        def allocate(self, size: Any, *, dtype: torch.dtype, device: torch.device
                     ) -> torch.Tensor:
            if dtype not in (torch.float32, torch.bfloat16, torch.float64):
                raise RuntimeError(f"--sharding fsdp: the noise is read from the reduce-scatter "
                                   f"input, which FSDP pre-divides in {dtype}; reduce in "
                                   "float32 or bfloat16")
            return torch.empty(*size, dtype=dtype, device=device)

        def __call__(self, output_tensor: torch.Tensor, input_tensor: torch.Tensor,
                     group: Any, op: Any, async_op: bool = False) -> Any:
            add_grad_sq(into, input_tensor)
            calls[self.index] += 1
            return _reduce_scatter(output_tensor, input_tensor, op=op, group=group,
                                   async_op=async_op)

    handles = []
    for i, module in enumerate(modules):
        module.set_custom_reduce_scatter(RankNorms(i))
        handles.append(_Restore(module))
    return handles


class _Restore:
    """Puts torch's default reduce-scatter back on an FSDP module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def remove(self) -> None:
        from torch.distributed.fsdp._fully_shard._fsdp_collectives import DefaultReduceScatter

        self.module.set_custom_reduce_scatter(DefaultReduceScatter())


def _mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` averaged over the default process group (unchanged on one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t
