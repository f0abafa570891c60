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


def test_adams_l2_decay_is_part_of_the_loss_and_keeps_its_value():
    model = torch.nn.Linear(3, 3)
    coupled = torch.optim.Adam(model.parameters(), weight_decay=0.1)
    decoupled = torch.optim.AdamW(model.parameters(), weight_decay=0.1)
    (h,) = set_hyperparameters(coupled, k=4, lr_ratio=2)
    assert coupled.param_groups[0]["weight_decay"] == 0.1 and h.decay_is_l2
    assert coupled.param_groups[0]["betas"] == pytest.approx((0.6, 0.996))
    set_hyperparameters(decoupled, k=4, lr_ratio=2)
    assert decoupled.param_groups[0]["weight_decay"] == pytest.approx(0.2)


def _without_legw_base(state):
    """``state`` as a load that knows only torch's keys brings it back (DCP's set_state_dict)."""
    groups = [{k: v for k, v in g.items() if k != "legw_base"} for g in state["param_groups"]]
    return {**state, "param_groups": groups}


def test_the_scheduler_keeps_the_base_when_the_optimizer_load_drops_it():
    opt = _adamw()
    sched = LEGWScheduler(opt, BASE.scale(512, 60_000), optimizer_scaling="srr")
    state, opt_state = sched.state_dict(), _without_legw_base(opt.state_dict())
    fresh = _adamw()
    again = LEGWScheduler(fresh, BASE.scale(512, 60_000), optimizer_scaling="srr")
    fresh.load_state_dict(opt_state)  # scaled values, no base: they must not be scaled again
    again.load_state_dict(state)
    assert fresh.param_groups[0]["betas"] == pytest.approx((0.96, 0.996))
    assert fresh.param_groups[0]["weight_decay"] == pytest.approx(0.2)
    # built after the load (the base it sees is scaled): the state's base wins on load
    late = _adamw()
    late.load_state_dict(opt_state)
    LEGWScheduler(late, BASE.scale(512, 60_000), optimizer_scaling="srr").load_state_dict(state)
    assert late.param_groups[0]["betas"] == pytest.approx((0.96, 0.996))


def test_a_none_scheduler_loading_an_srr_state_puts_back_the_base_values():
    opt = _adamw()
    sched = LEGWScheduler(opt, BASE.scale(512, 60_000), optimizer_scaling="srr")
    state, opt_state = sched.state_dict(), opt.state_dict()
    fresh = _adamw()
    plain = LEGWScheduler(fresh, BASE.scale(512, 60_000))
    fresh.load_state_dict(opt_state)
    plain.load_state_dict(state)
    assert fresh.param_groups[0]["betas"] == pytest.approx((0.99, 0.999))
    assert fresh.param_groups[0]["weight_decay"] == pytest.approx(0.1)


def test_a_param_group_added_later_is_scaled_from_its_own_values():
    opt = _adamw()
    sched = LEGWScheduler(opt, BASE.scale(512, 60_000), optimizer_scaling="srr")
    head = torch.nn.Linear(4, 2)
    opt.add_param_group({"params": head.parameters(), "betas": (0.9, 0.99)})
    opt.step()
    sched.step()
    assert opt.param_groups[2]["betas"] == pytest.approx((0.6, 0.96))
    assert opt.param_groups[0]["betas"] == pytest.approx((0.96, 0.996))  # not compounded
    assert sched.state_dict()["hyperparameter_bases"][2]["betas"] == [0.9, 0.99]
