"""The ``adapt`` setting: LARS / LAMB adapt with their default arguments (the paper's and TF's
rule), timm's "adapt only with decay" is ``adapt="with_decay"`` and equals legw 0.1.0's
default bit for bit, and the old ``always_adapt`` spelling still works with a warning."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from test_optimizers import GROUPS, grads_at, make_params, run_opt, run_ref

from legw.optim import LAMB, LARS, build_optimizer, param_groups

ALL = [([0, 1, 2, 3], {})]
LR = {LARS: 0.5, LAMB: 0.01}
DEFAULTS = {LARS: dict(momentum=0.9, weight_decay=0.0), LAMB: dict(weight_decay=0.0)}
"""The constructor's defaults, spelled out for the float64 reference."""


def train(opt, ps, steps=4, dtype=torch.float64):
    for t in range(steps):
        for p, g in zip(ps, grads_at(t, dtype)):
            p.grad = g.clone()
        opt.step()
    return [p.detach().clone() for p in ps]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def torch_twin(cls, ps, fused: bool | None):
    """What legw 0.1.0's defaults were, to the last bit: torch's SGD(momentum) / Adam(1e-6)
    (the fused kernels on legw's default path, the multi-tensor SGD on the other)."""
    kind = {"fused": True} if fused is None else {"foreach": True}
    if cls is LARS:
        return torch.optim.SGD(ps, lr=LR[cls], momentum=0.9, **kind)
    return torch.optim.Adam(ps, lr=LR[cls], eps=1e-6, fused=True)


@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize("cls", [LARS, LAMB])
def test_defaults_adapt_every_tensor_without_weight_decay(cls, fused):
    ps = make_params()
    got = train(cls(ps, lr=LR[cls], fused=fused), ps)  # nothing but the LR
    want = run_ref(cls, ALL, {"lr": LR[cls], **DEFAULTS[cls]}, steps=4)
    for p, w in zip(got, want):
        torch.testing.assert_close(p, w, rtol=1e-10, atol=1e-12)
    plain = run_ref(cls, ALL, {"lr": LR[cls], **DEFAULTS[cls], "adapt": False}, steps=4)
    assert all(not torch.allclose(p, w) for p, w in zip(got, plain))


@pytest.mark.parametrize("cls", [LARS, LAMB])
def test_defaults_differ_from_torch_sgd_and_adam(cls):
    a, b = make_params(torch.float32), make_params(torch.float32)
    ours = train(cls(a, lr=LR[cls]), a, dtype=torch.float32)
    theirs = train(torch_twin(cls, b, None), b, dtype=torch.float32)
    assert not any(torch.allclose(p, q) for p, q in zip(ours, theirs))


@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize("cls", [LARS, LAMB])
def test_with_decay_without_decay_is_torch_bit_for_bit(cls, fused):
    # timm's rule, legw 0.1.0's default: no decay, no trust ratio
    if cls is LAMB and fused is False:
        pytest.skip("LAMB's multi-tensor chain is Adam to rounding, not bit for bit")
    a, b = make_params(torch.float32), make_params(torch.float32)
    ours = train(cls(a, lr=LR[cls], adapt="with_decay", fused=fused), a, dtype=torch.float32)
    theirs = train(torch_twin(cls, b, fused), b, dtype=torch.float32)
    assert same(ours, theirs)


@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize("cls", [LARS, LAMB])
def test_with_decay_adapts_decayed_groups_like_the_default(cls, fused):
    hyper = {"lr": LR[cls], "weight_decay": 1e-2}
    timm_rule = run_opt(cls, GROUPS, {**hyper, "adapt": "with_decay"}, steps=4, fused=fused)
    default = run_opt(cls, GROUPS, hyper, steps=4, fused=fused)
    assert same(timm_rule, default)
    # ... and a group of it without decay does not adapt, where the default's does
    groups = [([0, 2], {}), ([1, 3], {"weight_decay": 0.0})]
    timm_rule = run_opt(cls, groups, {**hyper, "adapt": "with_decay"}, steps=4, fused=fused)
    default = run_opt(cls, groups, hyper, steps=4, fused=fused)
    assert same(timm_rule[::2], default[::2]) and not torch.allclose(timm_rule[1], default[1])
    want = run_ref(cls, groups, {**DEFAULTS[cls], **hyper, "adapt": "with_decay"}, steps=4)
    for p, w in zip(timm_rule, want):
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Tanh(),
                               torch.nn.Linear(5, 3))


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_param_groups_decayed_group_follows_the_optimizer(name):
    # weight decay 0: the weights adapt by default, not under "with_decay"; the excluded
    # group (biases, LayerNorm) never. One step: later gradients would differ anyway.
    def run(**adapt):
        model = small_model()
        groups, _ = param_groups(model, 0.0)
        opt = build_optimizer(name, groups, lr=LR[LARS if name == "lars" else LAMB], **adapt)
        x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
        model(x).square().mean().backward()
        opt.step()
        return dict(model.named_parameters())

    default, timm_rule, never = run(), run(adapt="with_decay"), run(adapt=False)
    assert same(timm_rule.values(), never.values())
    for n in default:
        assert torch.equal(default[n], never[n]) == (n.endswith(".bias") or n.startswith("1.")), n


@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize("cls", [LARS, LAMB])
@pytest.mark.parametrize("always,new", [(True, True), (False, "with_decay")])
def test_always_adapt_still_works_and_warns(cls, fused, always, new):
    hyper = {"lr": LR[cls], "fused": fused}
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.0}]  # noqa: E731
    a, b, c, d = (make_params() for _ in range(4))
    with pytest.warns(DeprecationWarning, match=f"always_adapt={always} is adapt={new!r}"):
        old_arg = cls(groups(a), weight_decay=1e-2, always_adapt=always, **hyper)
    with pytest.warns(DeprecationWarning, match="always_adapt \\(param group key\\)"):
        old_key = cls([{"params": b[:2]}, {"params": b[2:], "weight_decay": 0.0,
                                           "always_adapt": always}],
                      weight_decay=1e-2, adapt=True, **hyper)
    ref = cls(groups(c), weight_decay=1e-2, adapt=new, **hyper)
    keyed = cls([{"params": d[:2]}, {"params": d[2:], "weight_decay": 0.0, "adapt": new}],
                weight_decay=1e-2, **hyper)
    assert [g["adapt"] for g in old_arg.param_groups] == [new, new]
    assert "always_adapt" not in old_arg.param_groups[0]
    want = train(ref, c)
    assert same(train(old_arg, a), want)
    assert same(train(old_key, b), train(keyed, d))


def test_always_adapt_reads_a_groups_own_adapt_by_the_old_rule():
    ps = make_params()
    with pytest.warns(DeprecationWarning):
        opt = LARS([{"params": ps[:2], "adapt": True}, {"params": ps[2:], "adapt": False}],
                   lr=0.1, always_adapt=False)
    assert [g["adapt"] for g in opt.param_groups] == ["with_decay", False]


def test_build_optimizer_takes_both_spellings():
    ps = make_params()
    with pytest.warns(DeprecationWarning):
        opt = build_optimizer("lamb", ps, lr=0.01, always_adapt=False)
    assert opt.param_groups[0]["adapt"] == "with_decay"
    assert build_optimizer("lars", ps, lr=0.1, adapt=False).param_groups[0]["adapt"] is False
    with pytest.raises(ValueError, match="always_adapt: expected True or False, got 0"), \
            pytest.warns(DeprecationWarning):
        LAMB(ps, lr=0.01, always_adapt=0)


@pytest.mark.parametrize("cls", [LARS, LAMB])
def test_a_state_dict_saved_with_always_adapt_resumes_by_its_rule(cls):
    # legw 0.1.0 saved adapt=True, always_adapt=False: "adapt only with decay"
    a, b = make_params(), make_params()
    groups = lambda ps: [{"params": ps[:2], "weight_decay": 1e-2},  # noqa: E731
                         {"params": ps[2:], "weight_decay": 0.0}]
    ours = cls(groups(a), lr=LR[cls], adapt="with_decay")
    ref = cls(groups(b), lr=LR[cls], adapt="with_decay")
    train(ours, a, steps=2)
    train(ref, b, steps=2)
    saved = copy.deepcopy(ours.state_dict())
    for g in saved["param_groups"]:
        g["adapt"], g["always_adapt"] = True, False
    fresh = cls(groups(a), lr=LR[cls])  # today's default: adapt=True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checkpoint is data: no warning
        fresh.load_state_dict(saved)
    assert [g["adapt"] for g in fresh.param_groups] == ["with_decay", "with_decay"]
    assert all("always_adapt" not in g for g in fresh.param_groups)
    assert same(train(fresh, a, steps=2), train(ref, b, steps=2))


@pytest.mark.parametrize("value", ["always", 1, None, "With_Decay"])
def test_invalid_adapt_names_the_values(value):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="adapt: expected True, False or 'with_decay'"):
        LARS([p], lr=0.1, adapt=value)
    with pytest.raises(ValueError, match="adapt: expected True, False or 'with_decay'"):
        LAMB([{"params": [p], "adapt": value}], lr=0.1)
