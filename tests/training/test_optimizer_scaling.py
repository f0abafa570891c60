"""legw train --optimizer-scaling srr: the scaled betas, epsilon and weight decay reach the
optimizer, the run record and the resume check."""

import json
import math

import pytest
import torch
from helpers import make_mnist_dir

from legw.training.config import TrainConfig
from legw.training.trainer import train


def _spec(**kw):
    fields = dict(task="fashion-mnist-lstm", global_batch_size=512, base_batch_size=128,
                  optimizer="adamw", base_lr=1e-3, weight_decay=0.01)
    return TrainConfig(**{**fields, **kw}).resolve(1)


def test_srr_scales_adams_moments_epsilon_and_decay_at_k_4():
    spec = _spec(optimizer_scaling="srr")
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt, _ = spec.build_optimizer(model, lr=1e-3)
    decayed = [g for g in opt.param_groups if g["weight_decay"] > 0]
    assert decayed[0]["betas"] == pytest.approx((0.6, 0.996))      # 1 - 4 (1 - beta)
    assert decayed[0]["eps"] == pytest.approx(1e-8 / 2)             # / sqrt(4)
    assert decayed[0]["weight_decay"] == pytest.approx(0.01 * 2)    # x k / sqrt(k)
    plain, _ = _spec().build_optimizer(model, lr=1e-3)  # the default: only the LR moves
    assert plain.param_groups[0]["betas"] == (0.9, 0.999)
    assert max(g["weight_decay"] for g in plain.param_groups) == 0.01
    lamb = _spec(optimizer="lamb", optimizer_scaling="srr").hyperparameters()
    assert lamb.eps == pytest.approx(1e-6 / 2) and lamb.betas == pytest.approx((0.6, 0.996))


def test_srr_is_refused_where_the_batch_changes_during_the_run():
    with pytest.raises(ValueError, match="--optimizer-scaling: not yet with --scaling adaptive"):
        _spec(optimizer_scaling="srr", scaling="adaptive", micro_batch_size=128)
    with pytest.raises(ValueError, match="--optimizer-scaling: not yet"):
        _spec(optimizer_scaling="srr", batch_ramp="seesaw")


def test_a_run_records_its_scaled_hyperparameters_and_resumes_only_with_the_same_rule(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
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
