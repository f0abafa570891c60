"""LARS and LAMB on sharded parameters (gloo, CPU): FSDP2 ``fully_shard`` with uneven shards,
HSDP's 2-D mesh, a tensor-parallel (Shard(1)) layer and ``ZeroRedundancyOptimizer`` match one
process holding the whole tensors, with excluded bias/norm groups and a tensor LR, also after a
checkpoint round trip of the sharded optimizer state.

One torchrun job per world size runs every case (this file is also the ranks' script) and each
rank writes the largest difference it saw; the tests read them.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import env

from legw.optim import LAMB, LARS, param_groups

STEPS = 3
TOLERANCE = 1e-6
"""fp32: the sharded step sums a layer's squared norm over ranks in another order than one
process, and averages the gradient over ranks: differences of a few ulps per step."""


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    # dims 0 of 7, 5 and 3 do not divide by 2 or 4: uneven shards, some ranks hold no rows
    return torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.LayerNorm(7), torch.nn.Tanh(),
                               torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _optimizer(name: str, model: torch.nn.Module, tensor_lr: bool) -> torch.optim.Optimizer:
    groups, _ = param_groups(model, weight_decay=1e-2)  # bias/norm: no decay, no trust
    lr = torch.tensor(0.5) if tensor_lr else 0.5
    if name == "lars":
        return LARS(groups, lr=lr, momentum=0.9)
    return LAMB(groups, lr=lr * 0.02)


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 6, generator=gen), torch.randn(8, 3, generator=gen))
            for _ in range(STEPS)]


def _reference(name: str, tensor_lr: bool) -> dict[str, torch.Tensor]:
    model = _model()
    opt = _optimizer(name, model, tensor_lr)
    for x, y in _batches():
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: list) -> None:
    for x, y in steps:  # every rank the same batch: the averaged gradient is one process's
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _full(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().clone()
            for k, v in model.state_dict().items()}


def _diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _fsdp_case(name: str, tensor_lr: bool, mesh, checkpoint_dir: Path | None) -> float:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from torch.distributed.fsdp import fully_shard

    model = _model()
    for layer in (model[0], model[3], model[5]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = _optimizer(name, model, tensor_lr)
    batches = _batches()
    if checkpoint_dir is None:
        _train(model, opt, batches)
        return _diff(_full(model), _reference(name, tensor_lr))
    _train(model, opt, batches[:1])  # one step, save, a fresh model and optimizer, load
    dcp.save(dict(zip(("model", "optim"), get_state_dict(model, opt))),
             checkpoint_id=str(checkpoint_dir))
    model2 = _model()
    for layer in (model2[0], model2[3], model2[5]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model2, mesh=mesh)
    opt2 = _optimizer(name, model2, tensor_lr)
    state = dict(zip(("model", "optim"), get_state_dict(model2, opt2)))
    dcp.load(state, checkpoint_id=str(checkpoint_dir))
    set_state_dict(model2, opt2, model_state_dict=state["model"], optim_state_dict=state["optim"])
    _train(model2, opt2, batches[1:])
    return _diff(_full(model2), _reference(name, tensor_lr))


def _tensor_parallel_case(name: str) -> float:
    """The first layer split by rows, the second by columns (Megatron's MLP split; 7 and 7
    split unevenly), the rest replicated: each layer's trust ratio must still come from the
    whole layer. The gradients are one process's, placed as the parameters are."""
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor, init_device_mesh

    mesh = init_device_mesh("cpu", (int(os.environ["WORLD_SIZE"]),))
    model, plain = _model(), _model()
    placements = {"0.weight": Shard(0), "0.bias": Shard(0), "3.weight": Shard(1)}
    for pname, p in list(model.named_parameters()):
        dt = distribute_tensor(p.detach(), mesh, [placements.get(pname, Replicate())])
        module, attr = pname.rsplit(".", 1)
        setattr(model.get_submodule(module), attr, torch.nn.Parameter(dt))
    opt = _optimizer(name, model, False)
    for x, y in _batches():
        plain.load_state_dict(_full(model))
        plain.zero_grad()
        torch.nn.functional.mse_loss(plain(x), y).backward()
        grads = dict(plain.named_parameters())
        for pname, p in model.named_parameters():
            p.grad = distribute_tensor(grads[pname].grad, mesh, p.placements)
        opt.step()
    return _diff(_full(model), _reference(name, False))


def _zero_case(name: str) -> float:
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    model = _model()
    ddp = DistributedDataParallel(model)
    cls = LARS if name == "lars" else LAMB
    kw = {"lr": 0.5, "momentum": 0.9} if name == "lars" else {"lr": 0.01}
    groups, _ = param_groups(model, weight_decay=1e-2)
    opt = ZeroRedundancyOptimizer(groups[0]["params"], optimizer_class=cls,
                                  weight_decay=1e-2, **kw)
    opt.add_param_group({**groups[1], "weight_decay": 0.0, "adapt": False})
    ref = _model()
    ref_groups, _ = param_groups(ref, weight_decay=1e-2)
    ref_opt = cls(ref_groups, **kw)
    for x, y in _batches():
        for m, o in ((ddp, opt), (ref, ref_opt)):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            o.step()
    return _diff({k: v.detach() for k, v in model.state_dict().items()}, ref.state_dict())


def _partial_refused(mesh) -> float:
    """A gradient still a partial sum cannot give a layer's norm: refused, nothing written."""
    from torch.distributed.tensor import DTensor, Partial, Shard, distribute_tensor

    w = torch.nn.Parameter(distribute_tensor(torch.ones(4, 2), mesh, [Shard(0)]))
    w.grad = DTensor.from_local(torch.ones(4, 2), mesh, [Partial()])
    opt = LARS([w], lr=0.1, weight_decay=1e-2)
    try:
        opt.step()
    except RuntimeError as e:
        return 0.0 if "partial sum" in str(e) and bool((w.to_local() == 1).all()) else 1.0
    return 1.0


def worker(out: Path) -> None:
    import torch.distributed as dist
    from torch.distributed.tensor import init_device_mesh

    from legw.training.dist import cleanup

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    results = {}
    for name in ("lars", "lamb"):
        results[f"fsdp-{name}"] = _fsdp_case(name, False, mesh, None)
        results[f"fsdp-{name}-tensor-lr"] = _fsdp_case(name, True, mesh, None)
        results[f"fsdp-{name}-checkpoint"] = _fsdp_case(name, False, mesh, out / f"ckpt-{name}")
        results[f"zero-{name}"] = _zero_case(name)
        results[f"tp-{name}"] = _tensor_parallel_case(name)
        if world == 4:
            hsdp = init_device_mesh("cpu", (2, 2), mesh_dim_names=("replicate", "shard"))
            results[f"hsdp-{name}"] = _fsdp_case(name, False, hsdp, None)
    results["partial-refused"] = _partial_refused(mesh)
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    dist.barrier()
    mesh = hsdp = None  # noqa: F841 -- the meshes, and the cases' FSDP modules, freed
    gc.collect()
    cleanup()  # not destroy_process_group alone: gloo may abort at exit (legw.training.dist)


@pytest.fixture(scope="module", params=[2, pytest.param(4, marks=pytest.mark.slow)],
                ids=["world2", "world4"])
def sharded_results(request, tmp_path_factory):
    world = request.param
    out = tmp_path_factory.mktemp(f"sharded{world}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           str(world), __file__, str(out)]
    done = subprocess.run(cmd, env=env(threads=1), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return world, [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


def test_sharded_lars_and_lamb_match_one_process(sharded_results):
    world, ranks = sharded_results
    expected = {f"{kind}-{name}" for kind in ("fsdp", "zero", "tp") for name in ("lars", "lamb")}
    expected |= {f"fsdp-{n}-{v}" for n in ("lars", "lamb") for v in ("tensor-lr", "checkpoint")}
    expected.add("partial-refused")
    if world == 4:
        expected |= {"hsdp-lars", "hsdp-lamb"}
    for results in ranks:
        assert set(results) == expected
        worst = {k: v for k, v in results.items() if not v <= TOLERANCE}
        assert not worst, f"world size {world}: differences above {TOLERANCE}: {worst}"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(Path(__file__).parents[1]))
    worker(Path(sys.argv[1]))
