"""Two ``torchrun`` launchers on this host as two nodes (``--nnodes 2``, c10d rendezvous):
2 x 1 and 2 x 2 processes against one process on the same samples, under DDP and FSDP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from helpers import env, final_params, make_mnist_dir, read_jsonl

from legw.training.config import TrainConfig
from legw.training.trainer import train

# 256 samples, 8 steps per epoch at B = 32; 3 steps. One process: micro 32; 2 x 1: micro 8 x
# 2 ranks x 2 accumulation steps; 2 x 2: micro 8 x 4 ranks -- the same 32 samples per step.
B, STEPS = 32, 3
FLAGS = ("--batch-size", str(B), "--micro-batch-size", "8", "--epochs", "3", "--base-lr", "0.5",
         "--base-warmup-epochs", "0.5", "--max-steps", str(STEPS), "--threads", "1", "--quiet",
         "--no-eval")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_mnist_dir(tmp_path_factory.mktemp("multinode") / "data")


@pytest.fixture(scope="module")
def one(data, tmp_path_factory) -> Path:
    """The reference: one process, the whole batch in one micro-step."""
    out = tmp_path_factory.mktemp("multinode") / "one"
    train(TrainConfig(task="fashion-mnist-lstm", global_batch_size=B, epochs=3.0, base_lr=0.5,
                      base_warmup_epochs=0.5, max_steps=STEPS, num_threads=1, quiet=True,
                      evaluate=False, data_dir=str(data), out_dir=str(out)))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def two_nodes(nproc_per_node: int, out: Path, *args: str, timeout: float = 150) -> None:
    """``legw ARGS`` under two torchrun launchers started together, each one node of
    ``nproc_per_node`` processes; node 0 hosts the rendezvous store. Both must exit 0."""
    port, job = _free_port(), f"legw-{uuid.uuid4().hex[:12]}"
    out.mkdir(parents=True)
    procs, logs = [], []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--nproc-per-node", str(nproc_per_node), "--node-rank", str(node),
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}",
               "--rdzv-id", job, "--rdzv-conf", f"is_host={int(node == 0)}",
               "-m", "legw", *args]
        log = open(out.parent / f"{out.name}-node{node}.log", "w+")  # noqa: SIM115
        logs.append(log)
        procs.append(subprocess.Popen(cmd, env=env(), stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))  # a group: kill the workers too
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    text = []
    for node, log in enumerate(logs):
        log.seek(0)
        text.append(f"--- node {node}:\n{log.read()[-3000:]}")
        log.close()
    assert codes == [0, 0], f"exit codes {codes}\n" + "\n".join(text)
    assert not any("terminate called" in t for t in text), "\n".join(text)  # the teardown flake


def _train_records(out: Path) -> list[dict]:
    return [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "train"]


def _assert_same_records(out: Path, one: Path) -> None:
    """The same LR per step exactly and the same loss up to the summation order."""
    got, want = _train_records(out), _train_records(one)
    assert [(r["step"], r["lr"]) for r in got] == [(r["step"], r["lr"]) for r in want]
    assert len(got) == STEPS
    for a, b in zip(got, want):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), a["step"]


# ~20 s each on 2 loaded cores (two launchers and their workers, each importing torch): the
# 2 x 2 DDP run by default, the others with -m slow
@pytest.mark.parametrize("nproc_per_node", [pytest.param(1, marks=pytest.mark.slow), 2],
                         ids=["2x1", "2x2"])
def test_two_nodes_ddp_match_one_process(nproc_per_node, data, one, tmp_path):
    out = tmp_path / "ddp"
    two_nodes(nproc_per_node, out, "train", "fashion-mnist-lstm", "--data-dir", str(data),
              *FLAGS, "--out", str(out))
    _assert_same_records(out, one)
    a, b = final_params(out), final_params(one)
    assert a.keys() == b.keys()
    for name in a:  # the same mean gradient, reduced in another order
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_nodes_fsdp_match_one_process(data, one, tmp_path):
    # 2 x 2 ranks: FSDP2 shards every parameter 4 ways (its checkpoints are directories of
    # shards, so the records' losses are compared, not the weights)
    out = tmp_path / "fsdp"
    two_nodes(2, out, "train", "fashion-mnist-lstm", "--data-dir", str(data), *FLAGS,
              "--sharding", "fsdp", "--out", str(out))
    _assert_same_records(out, one)
    assert (out / "checkpoints" / f"step-{STEPS:09d}" / ".metadata").is_file()
