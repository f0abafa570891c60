"""Tiny generated data sets and run helpers shared by the trainer tests."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from legw.data.idx import write_idx

REPO = Path(__file__).resolve().parents[1]


def make_mnist_dir(root: Path, n_train: int = 256, n_test: int = 64, seed: int = 0) -> Path:
    """IDX files shaped like (Fashion-)MNIST: class c lights up rows 2c..2c+3, plus noise."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c:2 * c + 4, :] += 150
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def make_ptb_dir(root: Path, n_train: int = 3000, n_eval: int = 600, seed: int = 0) -> Path:
    """ptb.{train,valid,test}.txt from a small Markov chain over 30 words."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(30)]
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid", n_eval), ("test", n_eval)):
        lines, line, w = [], [], 0
        for _ in range(n):
            w = (w + int(rng.integers(1, 4))) % len(words)
            line.append(words[w])
            if len(line) == 12:
                lines.append(" " + " ".join(line) + " ")
                line = []
        (root / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def env(threads: int = 1) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "tests"),
                                       e.get("PYTHONPATH", "")])
    e["OMP_NUM_THREADS"] = str(threads)
    e.pop("RANK", None)
    e.pop("WORLD_SIZE", None)
    return e


def legw_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "legw", *args]


def torchrun_cmd(nproc: int, *args: str) -> list[str]:
    # --standalone: a local rendezvous on a free port (no clash with other jobs on the machine)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(nproc), "-m", "legw", *args]


def run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def final_params(run_dir: Path) -> dict[str, torch.Tensor]:
    from legw.training.checkpoint import list_checkpoints, load

    return load(list_checkpoints(run_dir)[-1])["model"]


# Per-sample gradients with a known mean and covariance, for the noise-scale estimators.
D, G2, TRACE = 20, 0.05, 4.0  # per-sample gradients: mean |G|^2 = G2, tr(Sigma) = TRACE


def draw(rng: random.Random, b: int, B: int) -> tuple[float, float]:
    """|G_b|^2 of the first b samples and |G_B|^2 of all B, per-sample gradients
    N(G, TRACE/D * I) in D dimensions."""
    g = [math.sqrt(G2 / D)] * D
    sd = math.sqrt(TRACE / D)
    samples = [[gi + rng.gauss(0, sd) for gi in g] for _ in range(B)]
    mean = lambda rows: [sum(c) / len(rows) for c in zip(*rows)]  # noqa: E731
    sq = lambda v: sum(x * x for x in v)  # noqa: E731
    return sq(mean(samples[:b])), sq(mean(samples))


def one_line_error(capsys, argv: list[str]) -> str:
    """Run ``legw ARGV`` in-process; assert it failed as a user error (exit 2, one line on
    stderr, no traceback) and return that line."""
    from legw.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("legw"), err
    return err.strip()
