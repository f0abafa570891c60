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


def _mean_micro_sq(data, ranks: int) -> float:
    """Step 0's mean squared micro-batch gradient norm, recomputed independently: the micro
    batches of 8 samples of every rank's share of the first global batch of 32."""
    task = get_task("fashion-mnist-lstm")
    seed_everything(0)
    d: ImageData = task.load(str(data))
    torch.manual_seed(0)
    model = task.build_model(d)
    norms = []
    for rank in range(ranks):
        for x, y in ImageBatches(d.train, 32, 8, rank, ranks, seed=0).micro_batches(0, 0):
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            norms.append(sum(float(p.grad.double().square().sum())
                             for p in model.parameters()))
    assert len(norms) == 4
    return sum(norms) / len(norms)


def _small_sq(rec: dict, b: int, B: int) -> float:
    """``|g_b|^2`` back from a record: tr(Sigma) (1/b - 1/B) = |g_b|^2 - |g_B|^2."""
    return rec["grad_norm"] ** 2 + rec["noise_trace_sigma"] * (1 / b - 1 / B)


def test_accumulation_logs_b_noise_from_every_micro_batch(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    train(config(data, tmp_path / "run", micro_batch_size=8))
    recs = train_records(tmp_path / "run")
    assert "b_noise" not in recs[0] and all("b_noise" in r for r in recs[1:])
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert (resolved["noise_source"], resolved["noise_small_batch_size"]) == ("micro", 8)
    assert _small_sq(recs[0], 8, 32) == pytest.approx(_mean_micro_sq(data, 1), rel=1e-4)


def test_ddp_with_accumulation_averages_every_micro_batch_of_every_rank(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    done = run(torchrun_cmd(2, "train", "fashion-mnist-lstm", "--data-dir", str(data),
                            "--batch-size", "32", "--micro-batch-size", "8", "--epochs", "2",
                            "--base-lr", "0.5", "--base-warmup-epochs", "0.25",
                            "--max-steps", "2", "--noise-window", "3", "--threads", "1",
                            "--quiet", "--out", str(tmp_path / "ddp")))
    assert done.returncode == 0, done.stderr[:3000]
    resolved = json.loads((tmp_path / "ddp" / "config.json").read_text())["resolved"]
    assert (resolved["accumulation_steps"], resolved["noise_source"]) == (2, "micro")
    rec = train_records(tmp_path / "ddp")[0]
    # the hooks see each rank's local micro-gradients, not the all-reduced one
    assert _small_sq(rec, 8, 32) == pytest.approx(_mean_micro_sq(data, 2), rel=1e-4)


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
    assert all("noise_trace_sigma" in r for r in recs) and "b_noise" in recs[-1], recs
    # the rank gradients average to the global one: |G_16|^2 (mean over ranks) >= |G_32|^2
    assert all(r["noise_trace_sigma"] > 0 for r in recs), recs
