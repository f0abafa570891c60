"""Pieces LARS and LAMB share: the trust ratio, hyperparameter checks, tensor bucketing, and
the whole-layer norms of sharded (DTensor) parameters.

Everything here works on whole lists of tensors at once and never reads a tensor value on
the host: the zero-norm rule is a ``torch.where``, not a Python ``if``.

Sharded parameters (FSDP2's ``fully_shard``, HSDP's 2-D mesh, tensor parallelism: parameters
that are ``DTensor``s) are stepped on their local shards with the same kernels as plain
tensors. Only the trust ratio needs more than the shard: each layer's *whole* norm. A bucket's
local squared norms are summed over the mesh in one all-reduce per mesh dimension (not one per
tensor) -- a shard's share counts once, a replica's ``1/replicas`` times -- so every rank
gets the same trust ratios as one process holding the whole tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor, Partial, Replicate

from legw.optim import _adapt as A


def trust_ratio(numerator: Tensor, denominator: Tensor, w_norm: Tensor, d_norm: Tensor) -> Tensor:
    """``numerator / denominator`` per layer, or ``1`` where ``w_norm == 0`` or ``d_norm == 0``.

    The guard is the reference rule (TF LARS, TF-Addons LAMB): a layer whose weights or whose
    update are all zero takes an unscaled step, so zero-initialised layers can leave zero.
    Division by zero in the discarded branch is harmless: ``torch.where`` selects, it does not
    propagate the NaN or inf of the branch it drops.
    """
    ok = (w_norm > 0) & (d_norm > 0)
    return torch.where(ok, numerator / denominator, torch.ones_like(numerator))


def limit_trust(trust: Tensor, lr: float | Tensor, max_trust: float | None,
                trust_clip: bool) -> Tensor:
    """Apply the named trust-ratio variants, in this order.

    * ``max_trust`` (ratio clamp): ``trust <- min(trust, max_trust)``.
    * ``trust_clip`` (LARC clipping, NVIDIA apex ``LARC(clip=True)``):
      ``trust <- min(trust / lr, 1)``, so the per-layer step size ``lr * trust`` becomes
      ``min(trust, lr)``: the trust ratio acts as a per-layer learning rate that is capped at
      the global one. With ``lr == 0`` the ratio is 1 (the step is zero anyway).
    """
    if max_trust is not None:
        trust = torch.clamp(trust, max=max_trust)
    if trust_clip:
        if isinstance(lr, Tensor):  # no host read: a compiled step must not guard on the LR
            trust = torch.where(lr > 0, torch.clamp(trust / lr, max=1.0), torch.ones_like(trust))
        else:
            trust = torch.clamp(trust / lr, max=1.0) if lr > 0 else torch.ones_like(trust)
    return trust


def group_lr(group: dict[str, Any], device: torch.device) -> float | Tensor:
    """The LR of ``group`` for a bucket on ``device``: a number, or a 0-dim tensor.

    A tensor LR (as ``torch.optim.SGD(lr=torch.tensor(0.1))`` takes) is read by the kernels on
    the device, never on the host, so ``torch.compile(optimizer.step)`` does not specialise on
    its value and a scheduler that fills it in place needs no recompile. Like torch's
    optimizers, a tensor LR on another accelerator is copied to the bucket's device.
    """
    lr = group["lr"]
    if not isinstance(lr, Tensor):
        return lr
    lr = lr.view(())
    if lr.device != device and lr.device.type != "cpu":
        lr = lr.to(device)
    return lr


def add_scaled_(params: list[Tensor], updates: list[Tensor], lr: float | Tensor) -> None:
    """``params -= lr * updates``, as ``torch.optim.SGD(foreach=True)`` does it: with
    ``alpha=-lr`` in eager mode (bit-identical to torch), and as a multiply by the tensor LR
    under ``torch.compile`` (``alpha`` is a host scalar, the tensor is not read there)."""
    if isinstance(lr, Tensor) and torch.compiler.is_compiling():
        torch._foreach_add_(params, torch._foreach_mul(updates, -lr))
    else:
        torch._foreach_add_(params, updates, alpha=-lr)


def norm_dtype(tensors: Sequence[Tensor]) -> torch.dtype:
    """Norms are accumulated in float32, or float64 for float64 tensors."""
    return torch.float64 if tensors[0].dtype == torch.float64 else torch.float32


def norms(tensors: Sequence[Tensor]) -> Tensor:
    """Per-tensor L2 norms as one float32 (or float64) vector, one multi-tensor kernel."""
    return torch.stack(torch._foreach_norm(tensors, 2, dtype=norm_dtype(tensors)))


def combine(piece_norms: list[Tensor], owner: list[int], n: int) -> Tensor:
    """Norms of ``n`` tensors from the norms of their pieces (``owner[k]``: piece k's tensor)."""
    pieces = torch.stack(piece_norms)
    if len(owner) == n:  # no tensor was cut: pieces are the tensors, in order
        return pieces
    index = torch.tensor(owner, device=pieces.device)
    return torch.zeros(n, dtype=pieces.dtype, device=pieces.device) \
        .index_add_(0, index, pieces * pieces).sqrt()


def buckets(params: Sequence[Tensor]) -> dict[tuple[Any, ...], list[int]]:
    """Indices of ``params`` grouped by (device, dtype, device mesh of a DTensor): each bucket
    is one multi-tensor call (and one norm reduction)."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for i, p in enumerate(params):
        mesh = p.device_mesh if isinstance(p, DTensor) else None
        out.setdefault((p.device, p.dtype, id(mesh)), []).append(i)
    return out


def local(t: Tensor) -> Tensor:
    """This rank's shard of a DTensor (a view: writing it writes the DTensor), else ``t``."""
    return t.to_local() if isinstance(t, DTensor) else t


class MeshNorms:
    """Whole-tensor norms of a bucket of DTensor parameters from their local shards.

    ``full(*norms)`` takes per-tensor norms of the local shards (vectors over the bucket) and
    returns the norms of the whole tensors: ``sqrt(sum over the mesh of scale * local^2)`` with
    ``scale = 1 / (product of the mesh sizes the tensor is replicated over)``, all vectors
    stacked into one tensor and all-reduced once per mesh dimension.
    """

    def __init__(self, params: Sequence[DTensor]) -> None:
        self.mesh = params[0].device_mesh
        scale = []
        for p in params:
            if any(isinstance(pl, Partial) for pl in p.placements) or (
                    isinstance(p.grad, DTensor)
                    and any(isinstance(pl, Partial) for pl in p.grad.placements)):
                raise RuntimeError(
                    f"a parameter of shape {tuple(p.shape)} (or its gradient) is a partial sum "
                    f"({p.placements}); reduce it before the optimizer step: a layer-wise "
                    "trust ratio needs the layer's whole gradient")
            replicas = math.prod(self.mesh.size(d) for d, pl in enumerate(p.placements)
                                 if isinstance(pl, Replicate))
            scale.append(1.0 / replicas)
        self.scale = scale

    def full(self, *local_norms: Tensor) -> tuple[Tensor, ...]:
        sq = torch.stack(local_norms) ** 2
        sq = sq * torch.tensor(self.scale, dtype=sq.dtype, device=sq.device)
        for d in range(self.mesh.ndim):
            if self.mesh.size(d) > 1:
                dist.all_reduce(sq, op=dist.ReduceOp.SUM, group=self.mesh.get_group(d))
        return tuple(sq.sqrt().unbind(0))


def mesh_norms(params: Sequence[Tensor]) -> MeshNorms | None:
    """A :class:`MeshNorms` for a bucket of DTensors, ``None`` for plain tensors."""
    return MeshNorms(params) if isinstance(params[0], DTensor) else None


def params_with_grad(group: dict[str, Any], name: str) -> list[Tensor]:
    """Parameters of ``group`` that have a gradient; sparse gradients are refused."""
    out = []
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(
                f"{name} does not support sparse gradients (parameter of shape "
                f"{tuple(p.shape)}); use dense gradients, e.g. nn.Embedding(sparse=False)"
            )
        out.append(p)
    return out


def check_number(group: dict[str, Any], field: str, lo: float, hi: float = math.inf,
                 *, lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise ``ValueError`` naming ``field`` unless ``group[field]`` is a real number in range."""
    value = group[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field}: expected a number, got {value!r}")
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if not math.isfinite(value) or below or above:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValueError(f"{field}: must be in {lb}{lo}, {hi}{rb}, got {value!r}")


def check_flag(group: dict[str, Any], field: str) -> None:
    if not isinstance(group[field], bool):
        raise ValueError(f"{field}: expected True or False, got {group[field]!r}")


def check_lr(group: dict[str, Any]) -> None:
    """``lr`` is a number >= 0 or a one-element floating-point tensor holding one."""
    lr = group["lr"]
    if isinstance(lr, Tensor):
        if lr.numel() != 1 or not lr.is_floating_point():
            raise ValueError(f"lr: a tensor LR must hold one floating-point value, got a "
                             f"{lr.dtype} tensor of shape {tuple(lr.shape)}")
        lr = lr.item()  # once, at construction
    check_number({"lr": lr}, "lr", 0.0)


def check_common(group: dict[str, Any]) -> None:
    """Checks of the keys LARS and LAMB share."""
    check_lr(group)
    check_number(group, "weight_decay", 0.0)
    A.check_adapt(group)
    check_flag(group, "trust_clip")
    if group["max_trust"] is not None:
        check_number(group, "max_trust", 0.0, lo_open=True)


adapts = A.adapts


CHUNK_SIZE = 131072
"""Default piece size (values) for CPU tensors: 512 KiB of float32 per piece, so the handful of
temporaries a step needs stay in a 1 MiB L2 / the L3, while the pieces stay large enough that
the per-call overhead of ~800 runs per ResNet-50 step is small (measured: 32K and 64K pieces
were slower, 256K no faster, whole tensors ~2x slower; benchmarks/optim_step.py)."""


def plan(lists: Sequence[Sequence[Tensor]], chunk_size: int | None
         ) -> list[list[tuple[int, int, int]]]:
    """Cut the tensors of one bucket into pieces ``(tensor index, start, stop)`` of flat views,
    packed into runs of about ``chunk_size`` values (one multi-tensor call per run).

    ``lists`` are parallel lists (parameters, gradients, state) of same-shaped tensors; a
    tensor is cut only when it is contiguous in every list.

    CPU only: every elementwise pass of the step then runs over a run that stays in cache, and
    main memory sees each value read and written about once per phase, as a fused kernel would.
    CUDA tensors, non-contiguous tensors and ``chunk_size=None`` give whole tensors (one run).
    """
    tensors = lists[0]
    if chunk_size is None or tensors[0].device.type != "cpu":
        return [[(i, 0, -1) for i in range(len(tensors))]]
    runs, run, filled = [], [], 0
    for i, t in enumerate(tensors):
        n = t.numel()
        if not all(ts[i].is_contiguous() for ts in lists):
            run.append((i, 0, -1))
            filled += n
        else:
            for a in range(0, n, chunk_size):
                b = min(a + chunk_size, n)
                run.append((i, a, b))
                filled += b - a
                if filled >= chunk_size:
                    runs.append(run)
                    run, filled = [], 0
        if filled >= chunk_size:
            runs.append(run)
            run, filled = [], 0
    if run:
        runs.append(run)
    return runs


def take(tensors: Sequence[Tensor], run: Sequence[tuple[int, int, int]]) -> list[Tensor]:
    """The pieces of ``run`` as views of ``tensors`` (``stop == -1``: the whole tensor)."""
    return [tensors[i] if b < 0 else tensors[i].view(-1)[a:b] for i, a, b in run]


FUSED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
"""Dtypes torch's fused SGD/Adam kernels are built for (CPU and CUDA)."""

FUSED_SGD_CPU_DTYPES = (torch.float64, torch.float32)
"""Dtypes in which torch's fused *CPU* SGD kernel is right. In torch 2.13.0,
``torch.optim.SGD(fused=True)`` on CPU float16 / bfloat16 tensors of 16 or more values is wrong
(measured: 64 values, lr 0.5, gradients ~0.1: 0.13 off the float64 result after one step, with
or without momentum, where the multi-tensor path is 0.004 off; float32 is exact; fused AdamW is
fine), so LARS takes the multi-tensor path there."""


def fused_devices() -> list[str]:
    """Device types with torch's fused optimizer kernels (``cpu``, ``cuda``, ... by version)."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return _get_fused_kernels_supported_devices()


def check_fused(fused: bool | None) -> None:
    if fused is not None and not isinstance(fused, bool):
        raise ValueError(f"fused: expected True, False or None, got {fused!r}")


def check_fused_params(params: Sequence[Tensor],
                       cpu_dtypes: Sequence[torch.dtype] = FUSED_DTYPES) -> None:
    """For ``fused=True``: every parameter must be on a fused-kernel device, in a fused dtype
    (on the CPU, one of ``cpu_dtypes``)."""
    devices = fused_devices()
    for p in params:
        dtypes = cpu_dtypes if p.device.type == "cpu" else FUSED_DTYPES
        if p.device.type not in devices or p.dtype not in dtypes:
            raise ValueError(
                f"fused: no fused kernel for a {p.dtype} parameter on {p.device.type} "
                f"(shape {tuple(p.shape)}); use fused=None (auto) or fused=False"
            )


def use_fused(fused: bool | None, lists: Sequence[Sequence[Tensor]],
              cpu_dtypes: Sequence[torch.dtype] = FUSED_DTYPES) -> bool:
    """Whether a bucket (parallel lists: parameters, gradients, state) takes the fused kernels.

    ``fused=None`` (auto): when the device and dtype have them (on the CPU: a dtype in
    ``cpu_dtypes``). Non-contiguous tensors always
    take the multi-tensor path (the fused CPU kernels walk raw memory), and so does a step
    traced by ``torch.compile``: the fused kernels have no fake-tensor implementation, and
    inductor fuses the multi-tensor chain into kernels of its own.
    """
    t = lists[0][0]
    dtypes = cpu_dtypes if t.device.type == "cpu" else FUSED_DTYPES
    if (fused is False or torch.compiler.is_compiling() or t.device.type not in fused_devices()
            or t.dtype not in dtypes):
        return False
    return all(x.is_contiguous() and x.dtype == t.dtype for ts in lists for x in ts)


def check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size: expected a positive int or None, got {chunk_size!r}")
