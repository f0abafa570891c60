"""LARS / LAMB with a tensor LR (as torch's SGD / Adam take it): the same numbers as a float LR,
on every path, and a LAMB step count that is a tensor. (LARS without the trust ratio is torch's
SGD with a tensor LR too: ``test_optim.py``.) The compiled-step side (no recompile per
LR value) is in ``tests/integrations/test_compile.py``."""

from __future__ import annotations

import copy

import pytest
import torch
from test_optimizers import CASES, FUSED, GROUPS, grads_at, ids, make_params, run_ref

from legw.optim import LAMB, LARS

LRS = [1.0, 0.25, 0.0, 0.75]  # one per step, as a scheduler would write them (0 included)


def run(cls, defaults, *, tensor: bool, fused, chunk_size, lrs=None):
    """``len(lrs)`` steps; the LR of step t is ``lrs[t]`` times the case's LR."""
    ps = make_params()
    base = defaults["lr"]
    lr = torch.tensor(base, dtype=torch.float64) if tensor else base
    opt = cls([{"params": [ps[i] for i in idx], **over} for idx, over in GROUPS],
              chunk_size=chunk_size, fused=fused, **{**defaults, "lr": lr})
    for t, factor in enumerate(lrs or [1.0] * 4):
        for group in opt.param_groups:
            if tensor:
                group["lr"].fill_(base * factor)  # in place, as legw.set_lr does
            else:
                group["lr"] = base * factor
        for p, g in zip(ps, grads_at(t)):
            p.grad = g
        opt.step()
    return ps, opt


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("chunk_size", [None, 5])
@pytest.mark.parametrize("cls,defaults", CASES, ids=ids)
def test_tensor_lr_matches_reference_and_float_lr(cls, defaults, chunk_size, fused):
    got, opt = run(cls, defaults, tensor=True, fused=fused, chunk_size=chunk_size)
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)  # kept, not replaced
    want = run_ref(cls, GROUPS, defaults, steps=4)
    for p, w in zip(got, want):
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)
    # an LR that changes every step (0 included): bit for bit the float-LR trajectory
    a, _ = run(cls, defaults, tensor=True, fused=fused, chunk_size=chunk_size, lrs=LRS)
    b, _ = run(cls, defaults, tensor=False, fused=fused, chunk_size=chunk_size, lrs=LRS)
    for p, q in zip(a, b):
        assert torch.equal(p, q)


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("cls", [LARS, LAMB])
def test_trust_clip_with_a_zero_tensor_lr_does_not_move(cls, fused):
    ps = make_params()
    before = [p.detach().clone() for p in ps]
    opt = cls(ps, lr=torch.tensor(0.0, dtype=torch.float64), weight_decay=1e-2, trust_clip=True,
              fused=fused)
    for p, g in zip(ps, grads_at(0)):
        p.grad = g
    opt.step()
    for p, b in zip(ps, before):
        assert torch.equal(p, b)


@pytest.mark.parametrize("cls", [LARS, LAMB])
@pytest.mark.parametrize("lr,why", [
    (torch.tensor([0.1, 0.2]), "shape"), (torch.tensor(1), "int64"),
    (torch.tensor(-0.1), "must be in"), (torch.tensor(float("nan")), "must be in"),
])
def test_bad_tensor_lr_names_the_field(cls, lr, why):
    with pytest.raises(ValueError, match=rf"^lr: .*{why}"):
        cls([torch.nn.Parameter(torch.ones(2))], lr=lr)


def test_one_element_tensor_lr_of_shape_1_is_accepted():
    a, b = make_params(), make_params()
    opt_a = LARS(a, lr=torch.tensor([0.5], dtype=torch.float64), weight_decay=1e-2)
    opt_b = LARS(b, lr=0.5, weight_decay=1e-2)
    for p, q, g in zip(a, b, grads_at(0)):
        p.grad, q.grad = g, g.clone()
    opt_a.step()
    opt_b.step()
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def train(opt, ps, steps):
    for t in steps:
        for p, g in zip(ps, grads_at(t)):
            p.grad = g
        opt.step()


@pytest.mark.parametrize("fused", FUSED)
def test_lamb_step_count_is_a_tensor_and_int_checkpoints_load(fused):
    hyper = dict(lr=0.01, weight_decay=1e-2, fused=fused)
    straight = make_params()
    train(LAMB(straight, **hyper), straight, range(4))

    ps = make_params()
    opt = LAMB(ps, **hyper)
    train(opt, ps, range(2))
    state = copy.deepcopy(opt.state_dict())
    steps = [s["step"] for s in state["state"].values()]
    assert all(isinstance(s, torch.Tensor) and s.dtype == torch.float32 and s.item() == 2
               for s in steps)
    for s in state["state"].values():  # as an older legw wrote it
        s["step"] = int(s["step"].item())
    twin = LAMB(ps, **hyper)
    twin.load_state_dict(state)
    train(twin, ps, range(2, 4))
    assert all(s["step"].item() == 4 for s in twin.state.values())
    for p, q in zip(ps, straight):
        assert torch.equal(p, q)
