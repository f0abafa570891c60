"""The trainer's online gradient noise scale: logged when a step has several micro-gradients,
from the right norms, at no change to the training."""

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import final_params, make_mnist_dir, read_jsonl, run, torchrun_cmd

from legw.data.sets import ImageData
from legw.tasks import get_task
from legw.training.batches import ImageBatches
from legw.training.config import TrainConfig
from legw.training.trainer import seed_everything, train


def config(data, out, **kw) -> TrainConfig:
    base = dict(task="fashion-mnist-lstm", global_batch_size=32, epochs=2.0, base_lr=0.5,
                base_warmup_epochs=0.25, num_threads=1, quiet=True, data_dir=str(data),
                out_dir=str(out), max_steps=4, noise_window=3)
    return TrainConfig(**{**base, **kw})


def train_records(out):
    return [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "train"]


def test_accumulation_logs_b_noise_from_the_first_micro_batch(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    train(config(data, tmp_path / "run", micro_batch_size=8))
    recs = train_records(tmp_path / "run")
    assert "b_noise" not in recs[0] and all("b_noise" in r for r in recs[1:])
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert (resolved["noise_source"], resolved["noise_small_batch_size"]) == ("micro", 8)

    # step 0's small-batch norm, recomputed independently: the first micro-batch of 8 samples
    task = get_task("fashion-mnist-lstm")
    seed_everything(0)
    d: ImageData = task.load(str(data))
    torch.manual_seed(0)
    model = task.build_model(d)
    x, y = ImageBatches(d.train, 32, 8, 0, 1, seed=0).micro_batches(0, 0)[0]
    F.cross_entropy(model(x), y).backward()
    expected = sum(float(p.grad.double().square().sum()) for p in model.parameters())
    big = recs[0]["grad_norm"] ** 2
    small = big + recs[0]["noise_trace_sigma"] * (1 / 8 - 1 / 32)
    assert small == pytest.approx(expected, rel=1e-4)


def test_one_micro_gradient_per_step_logs_nothing_and_off_means_off(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    train(config(data, tmp_path / "whole"))
    assert all("b_noise" not in r for r in train_records(tmp_path / "whole"))
    train(config(data, tmp_path / "off", micro_batch_size=8, noise_window=0))
    assert all("noise_grad_sq" not in r for r in train_records(tmp_path / "off"))
    # measuring changes nothing in the training itself
    train(config(data, tmp_path / "on", micro_batch_size=8))
    a, b = final_params(tmp_path / "on"), final_params(tmp_path / "off")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_ranks_give_the_small_batch_without_accumulation(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    done = run(torchrun_cmd(2, "train", "fashion-mnist-lstm", "--data-dir", str(data),
                            "--batch-size", "32", "--epochs", "2", "--max-steps", "4",
                            "--noise-window", "3", "--threads", "1", "--quiet",
                            "--out", str(tmp_path / "ddp")))
    assert done.returncode == 0, done.stderr[:3000]
    resolved = json.loads((tmp_path / "ddp" / "config.json").read_text())["resolved"]
    assert (resolved["accumulation_steps"], resolved["noise_source"],
            resolved["noise_small_batch_size"]) == (1, "rank", 16)
    recs = train_records(tmp_path / "ddp")
    assert all("noise_trace_sigma" in r for r in recs) and "b_noise" in recs[-1]
    # the rank gradients average to the global one: |G_16|^2 (mean over ranks) >= |G_32|^2
    assert all(r["noise_trace_sigma"] > 0 for r in recs)
