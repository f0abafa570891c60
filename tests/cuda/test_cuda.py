"""The CUDA paths: LARS / LAMB kernels on the GPU against the float64 reference, a few steps of
every preset that has generated data, checkpoints moved between CPU and GPU, and NCCL.

Skipped as a whole where CUDA is unavailable (CI, the CPU development machine); select with
``pytest -m cuda tests/cuda``. Each test takes seconds on one GPU. ``LEGW_CUDA_TESTS_ON_CPU=1``
(``scripts/gpu_check.sh --dry-run``) runs them on the CPU instead, gloo for NCCL: a check of
the tests themselves before a GPU run, not of the GPU.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch

if os.environ.get("LEGW_CUDA_TESTS_ON_CPU") != "1" and not torch.cuda.is_available():
    pytest.skip("CUDA is not available", allow_module_level=True)

import torch.distributed as dist
from helpers import make_mnist_dir, make_ptb_dir, read_jsonl
from test_optimizers import CASES, GROUPS, grads_at, ids, make_params, run_ref

from legw.training import dist as legw_dist
from legw.training.config import TrainConfig
from legw.training.trainer import train

pytestmark = pytest.mark.cuda

ON_CPU = os.environ.get("LEGW_CUDA_TESTS_ON_CPU") == "1"
CUDA = torch.device("cpu") if ON_CPU else torch.device("cuda", 0)
DEVICE = CUDA.type  # the trainer's --device

# ---------------------------------------------------------------------------------- optimizers

# (rtol, atol) against the float64 reference after 4 steps. fp32: norms and updates in fp32,
# the kernels' order of operations differs from the reference's. bf16: every step rounds the
# parameters (and moments) to 8 mantissa bits, ~0.4 % of a weight of size 1.
TOLERANCE = {torch.float32: (1e-4, 1e-5), torch.bfloat16: (3e-2, 3e-2)}


def run_on(device: torch.device, cls, defaults: dict, steps: int, dtype: torch.dtype,
           fused: bool, tensor_lr: bool = False) -> list[torch.Tensor]:
    """``cls`` over the shared parameters and gradients of ``test_optimizers``, on ``device``."""
    ps = [torch.nn.Parameter(p.detach().to(device, dtype)) for p in make_params()]
    hyper = dict(defaults)
    if tensor_lr:
        hyper["lr"] = torch.tensor(float(hyper["lr"]), device=device)
    opt = cls([{"params": [ps[i] for i in idx], **over} for idx, over in GROUPS],
              fused=fused, **hyper)
    for t in range(steps):
        for p, g in zip(ps, grads_at(t)):
            p.grad = g.to(device, dtype)
        opt.step()
    return [p.detach().double().cpu() for p in ps]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
@pytest.mark.parametrize("cls,defaults", CASES, ids=ids)
def test_optimizer_matches_float64_reference(cls, defaults, fused, dtype):
    if ON_CPU and fused and dtype == torch.bfloat16 and cls.__name__ == "LARS":
        pytest.skip("LARS refuses torch's CPU bf16 fused SGD kernel (wrong in torch 2.13)")
    got = run_on(CUDA, cls, defaults, 4, dtype, fused)
    want = run_ref(cls, GROUPS, defaults, steps=4)
    rtol, atol = TOLERANCE[dtype]
    for p, w in zip(got, want):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, w, rtol=rtol, atol=atol)


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
@pytest.mark.parametrize("cls,defaults", [CASES[0], CASES[-1]], ids=ids)
def test_tensor_lr_on_the_device(cls, defaults, fused):
    # a CUDA 0-dim LR is read by the kernels on the device: same result as the float LR
    got = run_on(CUDA, cls, defaults, 4, torch.float32, fused, tensor_lr=True)
    plain = run_on(CUDA, cls, defaults, 4, torch.float32, fused)
    for a, b in zip(got, plain):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------- trainer


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"), n_train=192, n_test=64)


@pytest.fixture(scope="module")
def ptb_dir(tmp_path_factory) -> Path:
    return make_ptb_dir(tmp_path_factory.mktemp("ptb"))


def _config(task: str, data: Path, out: Path, **kw) -> TrainConfig:
    # mnist: 192 samples at batch 64 = 3 steps per epoch, one epoch; ptb: stopped at 3 steps
    base = dict(task=task, data_dir=str(data), out_dir=str(out), global_batch_size=64,
                epochs=1.0, max_steps=3, quiet=True, num_threads=1, device=DEVICE)
    if task == "ptb-small":
        base.update(global_batch_size=4, epochs=13.0)
    return TrainConfig(**{**base, **kw})


def _train_records(run: Path) -> list[dict]:
    return [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "train"]


@pytest.mark.parametrize("task", ["fashion-mnist-lstm", "fashion-mnist-resnet", "ptb-small"])
def test_presets_train_a_few_steps(task, mnist_dir, ptb_dir, tmp_path):
    data = ptb_dir if task == "ptb-small" else mnist_dir
    summary = train(_config(task, data, tmp_path / "run"))
    assert summary["steps"] == 3
    assert summary["status"] == ("stopped" if task == "ptb-small" else "completed")
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    records = _train_records(tmp_path / "run")
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert all(torch.isfinite(torch.tensor(v)).item() for v in summary["final"].values())


@pytest.mark.parametrize("first,second", [(DEVICE, "cpu"), ("cpu", DEVICE)])
def test_checkpoint_moves_between_cpu_and_gpu(first, second, mnist_dir, tmp_path):
    # 192 samples at batch 32: 6 steps per epoch, 2 epochs; 2 steps on one device, the rest on
    # the other; the LRs written are the recipe's at every step
    kw = dict(global_batch_size=32, epochs=2.0, evaluate=False)
    out = tmp_path / "run"
    train(_config("fashion-mnist-lstm", mnist_dir, out, device=first, max_steps=2, **kw))
    config = _config("fashion-mnist-lstm", mnist_dir, out, device=second, max_steps=None,
                     resume=True, **kw)
    summary = train(config)
    assert summary["status"] == "completed" and summary["steps"] == 12
    records = _train_records(out)
    assert [r["step"] for r in records] == list(range(12))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    recipe = config.resolve().recipe(192)
    assert recipe.total_steps == 12
    assert [r["lr"] for r in records] == pytest.approx(
        [recipe.lr_at_step(s) for s in range(12)], rel=1e-12)


# -------------------------------------------------------------------------------------- NCCL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nccl_world_size_one_all_reduce():
    # legw's dist.init joins a group only for world size > 1 (torchrun with several ranks), so
    # a one-GPU machine checks NCCL itself: a TCP store on localhost, one all-reduce through
    # legw's helper, and the trainer-side helpers see the group
    assert not dist.is_initialized()
    store = dist.TCPStore("127.0.0.1", _free_port(), 1, is_master=True)
    backend = "gloo" if ON_CPU else "nccl"
    dist.init_process_group(backend, store=store, rank=0, world_size=1,
                            device_id=None if ON_CPU else CUDA)
    try:
        assert dist.get_backend() == backend
        t = torch.arange(4.0, device=CUDA)
        legw_dist.all_reduce_mean(t)
        if not ON_CPU:
            torch.cuda.synchronize()
        assert torch.equal(t.cpu(), torch.arange(4.0))
        assert legw_dist.is_main() and legw_dist.gather_to_main({"a": 1}) == [{"a": 1}]
    finally:
        legw_dist.cleanup()
    assert not dist.is_initialized()
    assert "RANK" not in os.environ  # nothing leaked into later trainer tests


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_sharded_lars_and_lamb_on_nccl_match_plain_tensors(name):
    # FSDP2 on a one-GPU NCCL group: the parameters are DTensors, the fused kernels run on their
    # local shards and the trust ratio's norms go through the mesh's all-reduce; the weights must
    # be those of the same optimizer on plain tensors (tests/optim/test_sharded.py runs world
    # sizes 2 and 4 on gloo)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from legw.optim import LAMB, LARS, param_groups

    store = dist.TCPStore("127.0.0.1", _free_port(), 1, is_master=True)
    backend = "gloo" if ON_CPU else "nccl"
    dist.init_process_group(backend, store=store, rank=0, world_size=1,
                            device_id=None if ON_CPU else CUDA)
    try:
        def build():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.LayerNorm(7),
                                       torch.nn.Tanh(), torch.nn.Linear(7, 3)).to(CUDA)

        def optimizer(model):
            groups, _ = param_groups(model, weight_decay=1e-2)
            return LARS(groups, lr=0.5) if name == "lars" else LAMB(groups, lr=1e-2)

        sharded, plain = build(), build()
        mesh = init_device_mesh(DEVICE, (1,))
        for layer in (sharded[0], sharded[3]):
            fully_shard(layer, mesh=mesh)
        fully_shard(sharded, mesh=mesh)
        opts = [optimizer(sharded), optimizer(plain)]
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):
            x, y = torch.randn(8, 6, generator=gen).to(CUDA), torch.randn(8, 3, generator=gen)
            for model, opt in zip((sharded, plain), opts):
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(x), y.to(CUDA)).backward()
                opt.step()
        for (k, a), b in zip(sharded.state_dict().items(), plain.state_dict().values()):
            a = a.full_tensor() if hasattr(a, "full_tensor") else a
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
    finally:
        legw_dist.cleanup()
