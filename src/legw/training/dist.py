"""Small named helpers for torch.distributed: one code path for 1 and N processes.

Under ``torchrun`` the environment carries ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without
it the run is a single process and every helper here is a no-op.
"""

from __future__ import annotations

import gc
import os
import sys
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def detect() -> DistEnv:
    """Read the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistEnv()
    env = DistEnv(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                  local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not 0 <= env.rank < env.world_size:
        raise ValueError(f"RANK: must lie in [0, WORLD_SIZE={env.world_size}), got {env.rank}")
    return env


def init(env: DistEnv, device: torch.device) -> None:
    """Join the process group: ``nccl`` on CUDA, ``gloo`` on CPU (no-op for one process).

    The group's keys in torchrun's store are prefixed with the restart count: after
    ``torchrun --max-restarts`` restarts a job whose rank died, the store still holds the dead
    ranks' addresses under the unprefixed keys, and a new rank that reads one before its peer
    rewrites it connects to a closed port (gloo: "connectFullMesh ... Connection refused").
    """
    if env.is_distributed and not dist.is_initialized():
        store, rank, world_size = next(dist.rendezvous("env://", env.rank, env.world_size))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                store=dist.PrefixStore(f"legw/attempt-{attempt}", store),
                                rank=rank, world_size=world_size)


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks, in place; returns ``t``."""
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Average ``t`` over ranks, in place; returns ``t``."""
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def gather_to_main(obj: object) -> list[object] | None:
    """Every rank's ``obj`` as a list on rank 0 (``None`` elsewhere); ``[obj]`` for one process."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    """Leave the process group and free it here (safe to call when none was joined).

    Call it once nothing of the run holds the group any more (``train()`` collects its trainer
    first: DDP's reducer, the FSDP modules). A gloo group that outlives
    ``destroy_process_group`` lives until interpreter shutdown, which it sometimes aborts
    ("terminate called without an active exception", exit status -6): its worker threads are
    joined only when the group is freed, and a worker still releasing the last collective's
    work drops tensors that own a Python object, for which it takes the GIL; once shutdown has
    begun, CPython ends such a thread with ``pthread_exit``, whose unwinding through a
    ``noexcept`` destructor calls ``std::terminate``. Freed here, the group joins its threads
    while the interpreter is whole. torch itself keeps references past
    ``destroy_process_group``: :func:`_unpin` drops them.
    """
    if dist.is_initialized():
        dist.destroy_process_group()
        _unpin()


def _unpin() -> None:
    """Drop the references to process groups that torch keeps after ``destroy_process_group``
    (torch 2.13), so that the groups are freed now rather than at interpreter shutdown:

    - ``torch.distributed.nn.functional``'s default arguments ``group=group.WORLD``, evaluated
      when the module is first imported -- by DDP or DTensor, after ``init_process_group`` --
      and so bound to this job's default group for good (ten functions). They become
      ``None`` (the default group at call time), what an import before
      ``init_process_group`` binds.
    - each ``DeviceMesh``'s ``_pg_registry`` (group name -> group, for ``torch.compile``):
      DTensor's sharding and redistribution caches keep FSDP's mesh alive.
    """
    functional = sys.modules.get("torch.distributed.nn.functional")
    for f in vars(functional).values() if functional is not None else ():
        if callable(f) and getattr(f, "__defaults__", None):
            f.__defaults__ = tuple(None if isinstance(d, dist.ProcessGroup) else d
                                   for d in f.__defaults__)
    device_mesh = sys.modules.get("torch.distributed.device_mesh")
    mesh_type = getattr(device_mesh, "DeviceMesh", None)
    if isinstance(mesh_type, type):
        for obj in gc.get_objects():
            # type(), not isinstance(): that would ask a dead weakref proxy for its __class__
            if issubclass(type(obj), mesh_type) and isinstance(getattr(obj, "_pg_registry", None),
                                                               dict):
                obj._pg_registry.clear()


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank, as DDP's
    ``broadcast_buffers`` does each step: FSDP2 shards parameters only, so without this each
    rank would keep the statistics of its own samples, evaluate with them and checkpoint rank
    0's (a resume would then not continue the same run)."""
    buffers = list(model.buffers())
    if not (dist.is_initialized() and buffers):
        return
    # one broadcast: float64 holds every float32 value and every step count exactly
    flat = torch.cat([b.detach().double().flatten() for b in buffers])
    dist.broadcast(flat, src=0)
    for b, value in zip(buffers, flat.split([b.numel() for b in buffers])):
        b.copy_(value.view_as(b))


def fully_shard_model(model: torch.nn.Module, device: torch.device) -> list[torch.nn.Module]:
    """Shard ``model`` over all ranks with FSDP2: ``fully_shard`` on each child module that has
    parameters (the blocks: each all-gathers its weights for its own forward and backward only)
    and at the root (what is left). On a CUDA device with bfloat16 the parameters are gathered
    in bfloat16 and the gradients reduced in float32. Returns the sharded modules, root last."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy()
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    # FSDP2 warns of every block that returns a view (an in-place op on it would skip the
    # all-gather); legw's models apply none to their blocks' outputs
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    blocks = [m for m in model.children() if any(True for _ in m.parameters())]
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return [*blocks, model]
