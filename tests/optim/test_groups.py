"""``param_groups`` (layer exclusion) and ``build_optimizer`` (names, hyperparameters)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from legw.optim import OPTIMIZERS, build_optimizer, param_groups


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.ln = nn.LayerNorm(2)
        self.scale = nn.Parameter(torch.ones(2, 2))  # 2-D, not in a norm layer: decayed
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)
        self.tied = self.fc  # shared module: its parameters appear once


def names(groups, model):
    lookup = {id(p): n for n, p in model.named_parameters()}
    return [sorted(lookup[id(p)] for p in g["params"]) for g in groups]


def test_default_excludes_biases_and_norm_layers():
    model = Net()
    groups, report = param_groups(model, 1e-4)
    assert names(groups, model) == [
        ["conv.weight", "fc.weight", "scale"],
        ["bn.bias", "bn.weight", "fc.bias", "ln.bias", "ln.weight"],
    ]
    # the decayed group takes the optimizer's own adapt; the excluded one never adapts
    assert [(g["weight_decay"], g.get("adapt")) for g in groups] == [(1e-4, None), (0.0, False)]
    assert report.frozen == ["frozen.weight", "frozen.bias"]
    text = str(report)
    assert "3 tensors" in text and "5 tensors" in text and "frozen.bias" in text
    assert "bn.weight" in text.split("excluded")[1]


def test_norm_layer_with_2d_parameter_is_excluded():
    class Odd(nn.GroupNorm):
        def __init__(self) -> None:
            super().__init__(1, 2)
            self.extra = nn.Parameter(torch.ones(2, 2))

    model = nn.Sequential(nn.Linear(2, 2), Odd())
    groups, _ = param_groups(model, 0.1)
    assert names(groups, model) == [["0.weight"], ["0.bias", "1.bias", "1.extra", "1.weight"]]


def test_exclude_patterns_and_callable():
    model = Net()
    groups, _ = param_groups(model, 1e-4, exclude=["*.bias", "scale"])
    assert names(groups, model)[1] == ["bn.bias", "fc.bias", "ln.bias", "scale"]
    groups, report = param_groups(model, 1e-4, exclude=lambda n, p: n.startswith("conv"))
    assert names(groups, model)[1] == ["conv.weight"]
    assert "conv.weight" in report.excluded
    groups, _ = param_groups(model, 1e-4, exclude=lambda n, p: False)
    assert len(groups) == 1  # empty groups are left out


@pytest.mark.parametrize("bad", [dict(weight_decay=-1.0), dict(exclude="bias"),
                                 dict(exclude=[1, 2]), dict(weight_decay=True)])
def test_param_groups_bad_input(bad):
    kwargs = {"weight_decay": 1e-4, **bad}
    wd = kwargs.pop("weight_decay")
    with pytest.raises(ValueError, match="weight_decay|exclude"):
        param_groups(Net(), wd, **kwargs)


def test_excluded_group_untouched_by_trust_and_decay():
    # LARS on the excluded group equals SGD on it, bit for bit
    from legw.optim import LARS

    m1, m2 = Net(), Net()
    m2.load_state_dict(m1.state_dict())
    g1, _ = param_groups(m1, 1e-2)
    opt1 = LARS(g1, lr=0.5)
    opt2 = torch.optim.SGD(param_groups(m2, 1e-2)[0][1]["params"], lr=0.5, momentum=0.9,
                           foreach=True)
    for m in (m1, m2):
        m.bn.weight.grad = torch.ones(4)
        m.fc.bias.grad = torch.full((2,), 0.5)
    opt1.step()
    opt2.step()
    assert torch.equal(m1.bn.weight, m2.bn.weight) and torch.equal(m1.fc.bias, m2.fc.bias)


def test_build_optimizer_names_and_types():
    p = [nn.Parameter(torch.ones(2))]
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "lars", "lamb"}
    assert type(build_optimizer("sgd", p, lr=0.1)).__name__ == "SGD"
    assert build_optimizer("sgd", p, lr=0.1).param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="unknown name 'rmsprop'.*sgd, adam, adamw, lars, lamb"):
        build_optimizer("rmsprop", p, lr=0.1)


@pytest.mark.parametrize("name", ["adam", "adamw", "lamb"])
def test_momentum_is_beta1(name):
    p = [nn.Parameter(torch.ones(2))]
    opt = build_optimizer(name, p, lr=0.1, momentum=0.8, weight_decay=0.0)
    assert tuple(opt.param_groups[0]["betas"]) == (0.8, 0.999)
    with pytest.raises(ValueError, match="momentum"):
        build_optimizer(name, p, lr=0.1, momentum=0.8, betas=(0.9, 0.99))


@pytest.mark.parametrize("name,hyper", [("adam", "nesterov"), ("sgd", "eps"),
                                        ("lars", "betas"), ("lamb", "nesterov")])
def test_unknown_hyperparameter(name, hyper):
    with pytest.raises(ValueError, match=f"{hyper}: not a hyperparameter of '{name}'"):
        build_optimizer(name, [nn.Parameter(torch.ones(2))], lr=0.1, **{hyper: True})


def test_bad_value_is_value_error():
    with pytest.raises(ValueError, match="lr"):
        build_optimizer("lars", [nn.Parameter(torch.ones(2))], lr=-1.0)
