"""Pieces the framework integration tests share: a tiny model and data set, an LR recorder
that reads the LR at each real optimizer step, and a 2-process (gloo) launcher."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from helpers import env


def lr_recorder(optimizer: torch.optim.Optimizer) -> list[float]:
    """The LR of param group 0 at every ``optimizer.step()``, read as the step starts.

    A step pre-hook on the optimizer itself, so it sees the LR each update runs at, whatever
    wrapper (Trainer, LightningOptimizer, AcceleratedOptimizer) calls the step.
    """
    seen: list[float] = []
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: seen.append(float(opt.param_groups[0]["lr"])))
    return seen


def tiny_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.LayerNorm(16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 3))


def tiny_data(n: int, seed: int = 1) -> torch.utils.data.TensorDataset:
    """``n`` samples of 6 features and a class in {0, 1, 2} that depends on them."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return torch.utils.data.TensorDataset(x, y)


def run_two_processes(script: str, out: Path, timeout: float = 240) -> list[dict]:
    """Run ``script OUT`` on 2 processes (torchrun, gloo on CPU); each rank writes
    ``OUT/rank{r}.json``, returned in rank order."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", script, str(out)]
    done = subprocess.run(cmd, env=env(threads=1), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
