"""Time one optimizer step under FSDP2 (gloo, CPU): legw LARS / LAMB against torch's SGD /
AdamW on the same sharded model.

Not a test. Every optimizer gets its own copy of one model -- a convolutional stem, two conv
blocks and two MLP blocks (~19M float32 values), ``fully_shard`` per block and at the root, so
its parameters are DTensors sharded on dim 0 -- and the gradients of one forward/backward. The
optimizers' ``step()`` calls are then timed in interleaved rounds, each call between two
barriers; a call's figure is the slowest rank's. legw's LARS / LAMB take whole-layer norms
(local squared norms, one all-reduce per step) and update the local shards with torch's fused
kernels; torch's optimizers run on the DTensors themselves, in each of their implementations
that accepts them (those that do not are reported and skipped), and, as the floor legw's
kernels aim at, fused on the local shards as plain tensors ("local shards": what torch's fused
kernels cost where they had a sharding rule; the all-reduce-free step of one rank).

    OMP_NUM_THREADS=1 python benchmarks/fsdp_step.py --world-size 2 --rounds 7 --steps 3

(it starts ``torch.distributed.run`` itself; or run it under ``torchrun`` directly).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable

import torch
import torch.distributed as dist
from _timing import Figures, alternate, clock
from torch import nn

from legw.optim import LAMB, LARS, param_groups

WD = {"sgd": 1e-4, "adam": 1e-2}
"""Weight decay of the SGD family (LARS's TF default) and of the Adam family (LAMB's BERT
value); biases and norm layers get none (``param_groups``), for every optimizer."""


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class MLPBlock(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.norm, self.up = nn.LayerNorm(width), nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(self.norm(x))))


def build_model(width: int = 1024, hidden: int = 4096) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), ConvBlock(64, 128), nn.MaxPool2d(2),
        ConvBlock(128, 256), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(1024, width),
        MLPBlock(width, hidden), MLPBlock(width, hidden), nn.Linear(width, 10))


def sharded_model(mesh: object) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    model = build_model()
    for block in model:
        if any(True for _ in block.parameters()):
            fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    gen = torch.Generator().manual_seed(1)  # every rank the same batch: only timing matters
    x, y = torch.randn(8, 3, 16, 16, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    nn.functional.cross_entropy(model(x), y).backward()
    return model


def optimizers() -> dict[str, Callable[[list], torch.optim.Optimizer]]:
    sgd = dict(lr=0.1, momentum=0.9)
    adam = dict(lr=1e-3)
    return {
        "legw LARS": lambda g: LARS(g, **sgd),
        "torch SGD for-loop": lambda g: torch.optim.SGD(g, **sgd, foreach=False),
        "torch SGD foreach": lambda g: torch.optim.SGD(g, **sgd, foreach=True),
        "torch SGD fused": lambda g: torch.optim.SGD(g, **sgd, fused=True),
        "legw LAMB": lambda g: LAMB(g, **adam),
        "torch AdamW for-loop": lambda g: torch.optim.AdamW(g, **adam, foreach=False),
        "torch AdamW foreach": lambda g: torch.optim.AdamW(g, **adam, foreach=True),
        "torch AdamW fused": lambda g: torch.optim.AdamW(g, **adam, fused=True),
        "torch SGD fused, local shards": lambda g: torch.optim.SGD(local(g), **sgd, fused=True),
        "torch AdamW fused, local shards": lambda g: torch.optim.AdamW(local(g), **adam,
                                                                       fused=True),
    }


def local(groups: list[dict]) -> list[dict]:
    """The groups with each DTensor parameter replaced by its local shard (a plain leaf tensor
    sharing the storage) carrying its gradient's local shard."""
    out = []
    for group in groups:
        params = []
        for p in group["params"]:
            shard = p.to_local().detach()
            shard.grad = p.grad.to_local().detach()
            params.append(shard)
        out.append({**group, "params": params})
    return out


def slowest_rank(opt: torch.optim.Optimizer) -> Callable[[], Figures]:
    """One timed ``opt.step()`` between barriers; wall and CPU seconds of the slowest rank."""
    def run() -> Figures:
        dist.barrier()
        f = clock(opt.step)
        t = torch.tensor([f["wall"], f["cpu"]], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return {"wall": t[0].item(), "cpu": t[1].item()}
    return run


def worker(args: argparse.Namespace) -> None:
    from torch.distributed.tensor import init_device_mesh

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    say = print if rank == 0 else (lambda *a, **k: None)
    opts, skipped = {}, {}
    for name, make in optimizers().items():
        if args.only and name not in args.only:
            continue
        model = sharded_model(mesh)
        groups, _ = param_groups(model, WD["sgd" if "SGD" in name or "LARS" in name else "adam"])
        opt = make(groups)
        try:
            opt.step()  # the warm-up: allocates the state outside the timing
        except Exception as e:  # noqa: BLE001 -- an implementation without DTensor support
            skipped[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            continue
        opts[name] = opt
    numel = sum(p.numel() for p in build_model().parameters())
    local = sum(p.to_local().numel() for p in model.parameters())
    say(f"FSDP2 on {world} ranks (gloo, CPU, {torch.get_num_threads()} thread(s) each), torch "
        f"{torch.__version__}: {numel:,} values, {local:,} on rank 0")
    for name, why in skipped.items():
        say(f"skipped {name}: {why}")
    timings = alternate({n: slowest_rank(o) for n, o in opts.items()}, args.rounds,
                        calls=args.steps, warmup=1)
    say("\n| optimizer | wall median ms/step | wall min | CPU median ms/step |\n|---|---|---|---|")
    for n in opts:
        say(f"| {n} | {1e3 * timings.median(n, 'wall'):.1f} | "
            f"{1e3 * min(timings.values(n, 'wall')):.1f} | {1e3 * timings.median(n, 'cpu'):.1f} |")
    say("\n| ratio | wall | CPU |\n|---|---|---|")
    for ours, family in (("legw LARS", "torch SGD"), ("legw LAMB", "torch AdamW")):
        for n in opts:
            if ours in opts and n.startswith(family):
                say(f"| {ours} / {n} | "
                    f"{timings.median(ours, 'wall') / timings.median(n, 'wall'):.2f} | "
                    f"{timings.median(ours, 'cpu') / timings.median(n, 'cpu'):.2f} |")
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world-size", type=int, default=2, help="processes (when not under torchrun)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per optimizer per round")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--only", nargs="*", default=None, help="optimizer names to run")
    args = ap.parse_args()
    if "LOCAL_RANK" in os.environ:
        worker(args)
        return
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           str(args.world_size), __file__, *sys.argv[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    sys.exit(subprocess.run(cmd, env=env).returncode)


if __name__ == "__main__":
    main()
