"""Two processes under torchrun (gloo) against one process: same samples, same updates."""

import json

import pytest
import torch
from helpers import final_params, make_mnist_dir, read_jsonl, run, torchrun_cmd

from legw.training.config import TrainConfig
from legw.training.trainer import train


def test_two_processes_at_micro_b_equal_one_process_at_2b(tmp_path):
    data = make_mnist_dir(tmp_path / "data")  # 256 samples: 8 steps per epoch at 32
    common = ["--data-dir", str(data), "--batch-size", "32", "--epochs", "3", "--base-lr",
              "0.5", "--base-warmup-epochs", "0.5", "--max-steps", "6", "--threads", "1",
              "--quiet"]
    # 2 ranks x micro 8 x 2 accumulation steps = 32 per step
    done = run(torchrun_cmd(2, "train", "fashion-mnist-lstm", *common, "--micro-batch-size", "8",
                            "--out", str(tmp_path / "ddp")))
    assert done.returncode == 0, done.stderr[:3000]
    config = TrainConfig(task="fashion-mnist-lstm", global_batch_size=32, epochs=3.0,
                         base_lr=0.5, base_warmup_epochs=0.5, max_steps=6, num_threads=1,
                         quiet=True, data_dir=str(data), out_dir=str(tmp_path / "one"))
    summary = train(config)

    a, b = final_params(tmp_path / "ddp"), final_params(tmp_path / "one")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    resolved = json.loads((tmp_path / "ddp" / "config.json").read_text())["resolved"]
    assert (resolved["world_size"], resolved["accumulation_steps"]) == (2, 2)
    # the schedule position counts optimizer steps, not micro-steps or ranks
    recipe = config.resolve().base.scale(32, 256)
    lrs = [(r["step"], r["lr"]) for r in read_jsonl(tmp_path / "ddp" / "metrics.jsonl")
           if r["kind"] == "train"]
    assert lrs == [(s, recipe.lr_at_step(s)) for s in range(6)]
    ddp_summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp_summary["final"]["test_accuracy"] == pytest.approx(
        summary["final"]["test_accuracy"], abs=1 / 64)
