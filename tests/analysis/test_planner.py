"""legw plan's library: the cost model, the noise profile, the plan, and the Python path for a
model legw has never seen (the command: tests/commands/test_plan.py)."""

import json
import math

import pytest
import torch
from torch import nn

from legw.analysis import planner
from legw.analysis.comm import constant_rate
from legw.schedule import BaseRecipe

BASE = BaseRecipe(base_batch_size=32, peak_lr=0.1, warmup_epochs=0.1, epochs=10)


def flat(bn: float, fraction: float = 1.0) -> planner.NoiseProfile:
    return planner.NoiseProfile([0.0, fraction], [bn], fraction, 16, 32, 100)


def test_constant_noise_gives_the_mccandlish_ratio():
    p = flat(1000.0)
    assert planner.epochs_factor(p, 32, 32) == pytest.approx(1.0)
    for B in (64, 1000, 8192):
        assert planner.epochs_factor(p, B, 32) == pytest.approx((1 + B / 1000) / (1 + 32 / 1000))
    # far above B_noise the steps stop falling: epochs grow linearly with B
    assert planner.epochs_factor(p, 2 ** 20, 32) / planner.epochs_factor(p, 2 ** 19, 32) == \
        pytest.approx(2.0, rel=1e-3)


def test_growing_noise_is_integrated_along_the_run():
    p = planner.NoiseProfile([0.0, 0.5, 1.0], [100.0, 1000.0], 1.0, 16, 32, 100)
    expected = 0.5 * (1 + 3200 / 100) / (1 + 32 / 100) + 0.5 * (1 + 3200 / 1000) / (1 + 0.032)
    assert planner.epochs_factor(p, 3200, 32) == pytest.approx(expected, rel=1e-6)
    assert p.at(0.2) == 100.0 and p.at(0.7) == 1000.0 and p.at(1.5) == 1000.0


def records_with(bn_by_step, g=1.0):
    return [{"kind": "train", "step": s, "noise_grad_sq": g, "noise_trace_sigma": g * bn}
            for s, bn in enumerate(bn_by_step)] + [{"kind": "eval", "step": 1}]


def test_profile_bins_the_measured_steps():
    recs = records_with([100.0] * 50 + [300.0] * 50)
    p = planner.noise_profile(recs, total_steps=400, small_batch_size=16, batch_size=32, bins=2)
    assert p.values == [pytest.approx(100.0), pytest.approx(300.0)]
    assert p.edges == [0.0, 50 / 400, 100 / 400]
    assert p.measured_fraction == 0.25 and p.critical_batch_size == pytest.approx(300.0)


def test_profile_merges_slices_where_the_signal_is_lost_and_refuses_no_data():
    recs = records_with([100.0] * 4)
    recs[0]["noise_grad_sq"] = recs[1]["noise_grad_sq"] = -0.5  # first bin: |G|^2 sum < 0
    p = planner.noise_profile(recs, 4, 16, 32, bins=2)
    assert p.edges == [0.0, 1.0] and p.values == [pytest.approx(400 / 1.0)]
    with pytest.raises(ValueError, match="no online noise measurements"):
        planner.noise_profile([{"kind": "train", "step": 0}], 4, 16, 32)


def test_plan_rows_recipe_recommendation_and_warnings():
    plan = planner.make_plan(flat(100.0, 0.5), BASE, 6400, batch_sizes=[32, 128, 512],
                             workers=[1, 4], model_bytes=4e6,
                             compute_time=constant_rate(1000.0))
    rows = {(r["global_batch_size"], r["workers"]): r for r in plan["rows"]}
    r = rows[(512, 4)]
    factor = (1 + 512 / 100) / (1 + 32 / 100)
    assert r["epochs"] == pytest.approx(10 * factor)
    recipe = BaseRecipe(32, 0.1, 0.1, 10 * factor).scale(512, 6400)
    assert (r["steps"], r["peak_lr"], r["warmup_steps"]) == \
        (recipe.total_steps, pytest.approx(0.4), recipe.warmup_steps)
    assert r["time_s"] == pytest.approx(recipe.total_steps * r["step_s"])
    assert r["worker_hours"] == pytest.approx(r["time_s"] * 4 / 3600)
    best = plan["recommended"]
    limit = plan["cost_limit_worker_hours"]
    assert limit == pytest.approx(2 * min(x["worker_hours"] for x in plan["rows"]))
    assert best["worker_hours"] <= limit
    assert best["time_s"] == min(x["time_s"] for x in plan["rows"] if x["worker_hours"] <= limit)
    assert any("batch 512: equal-epoch scaling will lose accuracy" in w for w in plan["warnings"])
    assert any("first 50.0%" in w for w in plan["warnings"])
    assert "recommended: batch" in planner.format_plan(plan)


def test_budget_recipe_stretches_milestones():
    base = BaseRecipe(20, 1.0, 0.0, 10, decay="multistep", milestones=(4, 8), gamma=0.5)
    assert planner.budget_recipe(base, 25).milestones == (10.0, 20.0)


class TinyMLP(nn.Module):
    """A model legw has never seen."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


def test_plan_for_a_model_of_ones_own():
    torch.manual_seed(0)
    w = torch.randn(8, 3)

    def batches():
        while True:
            x = torch.randn(32, 8)
            yield x, (x @ w + 0.5 * torch.randn(32, 3)).argmax(1)

    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    plan = planner.plan_for_model(model, nn.functional.cross_entropy, batches(), opt,
                                  BASE, dataset_size=3200, steps=60, micro_batches=4,
                                  batch_sizes=[32, 256], workers=[1, 2])
    assert plan["profile"]["small_batch_size"] == 8 and plan["profile"]["steps"] == 60
    assert plan["profile"]["critical_batch_size"] > 0
    assert plan["model_bytes"] == 4 * sum(p.numel() for p in model.parameters())
    assert {r["global_batch_size"] for r in plan["rows"]} == {32, 256}
    json.dumps(plan)  # plain data


def test_measure_noise_averages_every_micro_batch_and_removes_its_hooks():
    torch.manual_seed(0)
    model = TinyMLP()
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    norms = []
    for i in range(4):  # the four micro-batch gradients at the starting weights
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i * 8:(i + 1) * 8]), y[i * 8:(i + 1) * 8]).backward()
        norms.append(sum(float(p.grad.double().square().sum()) for p in model.parameters()))
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    big = sum(float(p.grad.double().square().sum()) for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    rec = planner.measure_noise(model, nn.functional.cross_entropy, iter([(x, y)]), opt,
                                steps=1, micro_batches=4)[0]
    small = big + rec["noise_trace_sigma"] * (1 / 8 - 1 / 32)
    assert small == pytest.approx(sum(norms) / 4, rel=1e-6)
    assert all(not p._backward_hooks for p in model.parameters())


def test_critical_batch_display_keeps_two_digits_below_ten():
    from legw.analysis.planner import _size

    assert (_size(2314.4), _size(12.0), _size(0.0599)) == ("2,314", "12", "0.06")


def test_the_rules_at_the_largest_batch_and_the_recommended_one():
    # flat B_noise 1000, base batch 32, 6400 samples an epoch, 10 epochs: base 2000 steps
    plan = planner.rule_plan(flat(1000.0), BASE, 6400, 1024, 8, lambda b: 0.01 + b / 1e5)
    rules = plan["rules"]
    assert rules["legw"]["steps"] == 10 * (6400 // 1024)
    r = (1 + 1000 / 32) / (1 + 1000 / 1024)  # adaptive: the gain a step, until 2000 base steps
    assert rules["adaptive"]["steps"] == math.ceil(2000 / r)
    assert rules["adaptive"]["epochs"] == pytest.approx(rules["adaptive"]["steps"] * 1024 / 6400)
    ramp = rules["ramp"]  # 32, then doubling to 992 (1000 in units of 16), where it stays
    assert [b for _, b in ramp["ramp"]] == [32, 64, 128, 256, 512, 992]
    assert ramp["epochs"] == pytest.approx(10.0)
    assert ramp["time_s"] == pytest.approx(ramp["steps"] * 0.01 + 10 * 6400 / 1e5)
    assert rules["seesaw"]["epochs"] == pytest.approx(10.0)
    assert plan["recommended"] == min(("adaptive", "ramp", "seesaw"),
                                      key=lambda k: rules[k]["time_s"]) == "ramp"
    assert all(rules[k]["held"] for k in rules)
    no_legw = planner.rule_plan(flat(1000.0), BASE, 6400, 4096, 8, lambda b: 0.01)
    assert "legw" not in no_legw["rules"]  # its LEGW warmup (12.8 epochs) outlasts training
    below = planner.rule_plan(flat(1000.0), BASE, 6400, 64, 8, lambda b: 0.01)
    assert below["recommended"] == "legw"  # equal epochs suffice below the critical batch
    text = "\n".join(planner.format_rules(plan))
    assert "recommended rule: --batch-ramp noise" in text and "its batch from epoch: 32@0" in text


def test_a_token_stream_ramp_is_planned_with_one_batch_an_epoch():
    plan = planner.rule_plan(flat(1000.0), BASE, 6400, 1024, 8, lambda b: 0.01, streams=True)
    ramp = plan["rules"]["ramp"]["ramp"]  # (epoch, batch) where it changes: epoch boundaries
    assert [b for _, b in ramp] == [32, 64, 128, 256, 512, 992]
    assert [e for e, _ in ramp] == [0, 1, 2, 3, 4, 5]
    # 10 epochs; one at 992 streams reads 6 x 992 of its 6400 windows (the tail is dropped)
    assert 9.5 < plan["rules"]["ramp"]["epochs"] < 10.0
