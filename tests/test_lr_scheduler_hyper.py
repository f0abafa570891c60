"""The optimizer's other batch-dependent hyperparameters written into its param groups."""

from __future__ import annotations

import math

import pytest
import torch

from legw import BaseRecipe, LEGWScheduler
from legw.lr_scheduler import apply_hyperparameters, set_hyperparameters
from legw.optim import build_optimizer, param_groups

BASE = BaseRecipe(base_batch_size=128, peak_lr=1e-3, warmup_epochs=0.1, epochs=10)


def _adamw(weight_decay=0.1, name="adamw"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    groups, _ = param_groups(model, weight_decay)
    return build_optimizer(name, groups, lr=1e-3, betas=(0.99, 0.999), eps=1e-8)


def test_a_recipe_at_4x_scales_betas_eps_and_decay_of_every_group_from_the_base():
    opt = _adamw()
    apply_hyperparameters(opt, BASE.scale(512, 60_000))  # k = 4, LR x 2 (sqrt rule)
    decayed, plain = opt.param_groups
    assert decayed["betas"] == pytest.approx((0.96, 0.996))
    assert decayed["eps"] == pytest.approx(1e-8 / 2)
    assert decayed["weight_decay"] == pytest.approx(0.1 * 4 / 2)
    assert plain["weight_decay"] == 0.0 and plain["betas"] == pytest.approx((0.96, 0.996))
    # calls do not compound: each scales the base the optimizer was built with
    apply_hyperparameters(opt, BASE.scale(512, 60_000))
    assert decayed["betas"] == pytest.approx((0.96, 0.996))
    apply_hyperparameters(opt, BASE.scale(128, 60_000))
    assert decayed["betas"] == pytest.approx((0.99, 0.999)) and decayed["eps"] == 1e-8
    assert decayed["weight_decay"] == pytest.approx(0.1)


def test_sgd_and_lars_get_only_their_decay_scaled():
    model = torch.nn.Linear(3, 3)
    for name in ("sgd", "lars"):
        opt = build_optimizer(name, model.parameters(), lr=0.1, weight_decay=1e-4)
        eps = opt.param_groups[0].get("eps")
        set_hyperparameters(opt, k=16, lr_ratio=4)
        group = opt.param_groups[0]
        assert group["weight_decay"] == pytest.approx(4e-4) and group.get("eps") == eps
        assert "betas" not in group


def test_the_scheduler_scales_at_build_retarget_and_load_into_another_batch():
    opt = _adamw()
    sched = LEGWScheduler(opt, BASE.scale(256, 60_000), optimizer_scaling="srr")
    assert opt.param_groups[0]["betas"] == pytest.approx((0.98, 0.998))
    sched.retarget(BASE.scale(512, 60_000))
    assert opt.param_groups[0]["betas"] == pytest.approx((0.96, 0.996))
    state, opt_state = sched.state_dict(), opt.state_dict()
    assert state["optimizer_scaling"] == "srr"
    # a checkpoint of the 512 run resumed at 1024 (built, then loaded: the frameworks' order)
    fresh = _adamw()
    again = LEGWScheduler(fresh, BASE.scale(1024, 60_000), optimizer_scaling="srr")
    fresh.load_state_dict(opt_state)  # the 512 run's scaled values and the base it carries
    assert fresh.param_groups[0]["betas"] == pytest.approx((0.96, 0.996))
    again.load_state_dict(state)  # rescaled from that base for 1024
    assert fresh.param_groups[0]["betas"] == pytest.approx((0.92, 0.992))
    assert fresh.param_groups[0]["eps"] == pytest.approx(1e-8 / math.sqrt(8))
    # the default leaves the optimizer as built
    plain = _adamw()
    LEGWScheduler(plain, BASE.scale(1024, 60_000))
    assert plain.param_groups[0]["betas"] == (0.99, 0.999)
    with pytest.raises(ValueError, match="^optimizer_scaling: choose from none, srr"):
        LEGWScheduler(_adamw(), BASE.scale(256, 60_000), optimizer_scaling="full")


def test_scaled_groups_still_train_and_save_plain_data(tmp_path):
    opt = _adamw(name="lamb")
    short = BaseRecipe(base_batch_size=128, peak_lr=1e-3, warmup_epochs=0.01, epochs=10)
    sched = LEGWScheduler(opt, short.scale(8192, 600_000), optimizer_scaling="srr")
    assert opt.param_groups[0]["betas"][0] == 0.5  # k = 64: 1 - beta1 clamped at 0.5
    params = [p for g in opt.param_groups for p in g["params"]]
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    sched.step()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    assert loaded["opt"]["param_groups"][0]["legw_base"]["betas"] == [0.99, 0.999]
