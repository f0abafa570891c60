"""legw train --optimizer-scaling srr: the scaled betas, epsilon and weight decay reach the
optimizer, the run record and the resume check."""

import json
import math

import pytest
import torch
from helpers import make_mnist_dir, read_jsonl

from legw.training.checkpoint import list_checkpoints, load
from legw.training.config import TrainConfig
from legw.training.trainer import train


def _spec(**kw):
    fields = dict(task="fashion-mnist-lstm", global_batch_size=512, base_batch_size=128,
                  optimizer="adamw", base_lr=1e-3, weight_decay=0.01)
    return TrainConfig(**{**fields, **kw}).resolve(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"))  # 256 train samples


def _groups(run_dir):
    """The param groups of the run's last checkpoint's optimizer."""
    return load(list_checkpoints(run_dir)[-1])["optimizer"]["param_groups"]


def test_srr_scales_adams_moments_epsilon_and_decay_at_k_4(data, tmp_path):
    spec = _spec(optimizer_scaling="srr").hyperparameters()
    assert spec.betas == pytest.approx((0.6, 0.996))      # 1 - 4 (1 - beta)
    assert spec.eps == pytest.approx(1e-8 / 2)             # / sqrt(4)
    assert spec.weight_decay == pytest.approx(0.01 * 2)    # x k / sqrt(k)
    lamb = _spec(optimizer="lamb", optimizer_scaling="srr").hyperparameters()
    assert lamb.eps == pytest.approx(1e-6 / 2) and lamb.betas == pytest.approx((0.6, 0.996))
    # what the trainer's optimizer holds: the base scaled once, the decay only where it decays
    for rule, betas, decay in (("srr", (0.6, 0.996), 0.02), ("none", (0.9, 0.999), 0.01)):
        train(TrainConfig(task="fashion-mnist-lstm", global_batch_size=64, base_batch_size=16,
                          optimizer="adamw", base_lr=1e-3, weight_decay=0.01,
                          optimizer_scaling=rule, epochs=1.0, max_steps=1, num_threads=1,
                          quiet=True, data_dir=str(data), out_dir=str(tmp_path / rule)))
        groups = _groups(tmp_path / rule)
        assert all(g["betas"] == pytest.approx(betas) for g in groups)
        assert sorted(g["weight_decay"] for g in groups) == pytest.approx([0.0, decay])


def test_adaptive_runs_and_ramps_scale_them_at_each_steps_effective_batch(data, tmp_path):
    # AdamW with decay: the decay checks the LR ratio, lambda k / r, r = (k-fold LR) ** 0.5,
    # the Adam family's LR power under a ramp and the adaptive rule
    common = dict(task="fashion-mnist-lstm", base_batch_size=16, optimizer="adamw",
                  base_lr=1e-3, weight_decay=0.01, optimizer_scaling="srr", epochs=2.0,
                  base_warmup_epochs=0.1, num_threads=1, quiet=True, data_dir=str(data))
    train(TrainConfig(**common, global_batch_size=64, batch_ramp="16@0,32@1",
                      micro_batch_size=16, out_dir=str(tmp_path / "ramp")))
    # the last steps ran at 32 = 2 B0 (LR x 2 ** 0.5): 1 - 2 (1 - beta); checkpointed after
    groups = _groups(tmp_path / "ramp")
    assert all(g["betas"] == pytest.approx((0.8, 0.998)) for g in groups)
    assert sorted(g["weight_decay"] for g in groups) == pytest.approx([0.0, 0.01 * 2 ** 0.5])
    train(TrainConfig(**common, global_batch_size=64, scaling="adaptive", micro_batch_size=16,
                      noise_window=3, out_dir=str(tmp_path / "adaptive")))
    rows = [r for r in read_jsonl(tmp_path / "adaptive" / "metrics.jsonl") if r["kind"] == "train"]
    gain = rows[-1]["gain"]  # the last step's gain set its betas and decay
    assert gain > 1
    groups = _groups(tmp_path / "adaptive")
    beta1, beta2 = groups[0]["betas"]
    assert beta2 == pytest.approx(1 - gain * 0.001) and beta1 == pytest.approx(
        max(0.5, 1 - gain * 0.1))
    assert sorted(g["weight_decay"] for g in groups) == pytest.approx([0.0, 0.01 * gain ** 0.5])
    resolved = json.loads((tmp_path / "adaptive" / "config.json").read_text())["resolved"]
    assert resolved["hyperparameters_per_step"] is True
    assert resolved["hyperparameters"] is None  # scaled per step, from the base
    assert resolved["base_hyperparameters"]["betas"] == [0.9, 0.999]


def test_a_run_records_its_scaled_hyperparameters_and_resumes_only_with_the_same_rule(
        data, tmp_path):
    config = TrainConfig(task="fashion-mnist-lstm", global_batch_size=64, base_batch_size=16,
                         optimizer="adam", base_lr=1e-3, optimizer_scaling="srr", epochs=1.0,
                         max_steps=2, num_threads=1, quiet=True, data_dir=str(data),
                         out_dir=str(tmp_path / "run"))
    train(config)
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert resolved["optimizer_scaling"] == "srr"
    assert resolved["hyperparameters"]["betas"] == pytest.approx([0.6, 0.996])
    assert resolved["hyperparameters"]["eps"] == pytest.approx(1e-8 / math.sqrt(4))
    with pytest.raises(ValueError, match="--optimizer-scaling: 'none' differs from 'srr'"):
        train(TrainConfig(**{**config.to_dict(), "optimizer_scaling": "none", "resume": True,
                             "max_steps": 4}))


def test_a_resume_rescales_from_the_runs_own_base_values(data, tmp_path):
    common = dict(task="fashion-mnist-lstm", base_batch_size=16, optimizer="adamw",
                  base_lr=1e-3, weight_decay=0.01, optimizer_scaling="srr", epochs=2.0,
                  num_threads=1, quiet=True, data_dir=str(data), out_dir=str(tmp_path / "run"))
    train(TrainConfig(**common, global_batch_size=32, max_steps=2))
    ckpt = list_checkpoints(tmp_path / "run")[-1]
    state = load(ckpt)
    for group in state["optimizer"]["param_groups"]:  # as saved before legw_base existed
        del group["legw_base"]
    torch.save(state, ckpt)
    # resumed at 64 (an elastic resume): k = 4 from the base, not from k = 2's values
    train(TrainConfig(**common, global_batch_size=64, max_steps=4, resume=True))
    groups = _groups(tmp_path / "run")
    assert all(g["betas"] == pytest.approx((0.6, 0.996)) for g in groups)
    assert sorted(g["weight_decay"] for g in groups) == pytest.approx([0.0, 0.02])
    assert all(g["eps"] == pytest.approx(1e-8 / 2) for g in groups)
