"""NoiseMeter: the one torch edge of the noise measurement (trainer, AdaptiveScaler, planner).
Exact values against gradients computed by hand, the pass count, clipping, and the
non-finite flag."""

from __future__ import annotations

import math

import pytest
import torch

from legw.adaptive.meter import NoiseMeter, add_grad_sq


def _model_and_micro_batches(accum: int = 4, micro: int = 3):
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 2)
    xs = [torch.randn(micro, 5) for _ in range(accum)]
    return model, xs


def _hand_gradients(model, xs):
    """Each micro-batch's mean-loss gradient, flattened, in float64."""
    grads = []
    for x in xs:
        model.zero_grad()
        model(x).square().mean().backward()
        grads.append(torch.cat([p.grad.double().flatten() for p in model.parameters()]))
    model.zero_grad()
    return grads


def test_measure_gives_the_mean_micro_norm_and_the_step_norm():
    model, xs = _model_and_micro_batches()
    grads = _hand_gradients(model, xs)
    meter = NoiseMeter(model.parameters(), accumulation_steps=len(xs))
    loss = torch.zeros(())
    for x in xs:
        micro_loss = model(x).square().mean()
        (micro_loss / len(xs)).backward()
        loss += micro_loss.detach() / len(xs)
    m = meter.measure(loss)
    small = sum(g.dot(g) for g in grads) / len(grads)
    full = sum(grads) / len(grads)
    assert m.small_sq == pytest.approx(small.item(), rel=1e-5)
    assert m.grad_norm == pytest.approx(full.norm().item(), rel=1e-5)
    assert m.big_sq == m.grad_norm ** 2 and m.loss == pytest.approx(loss.item())
    assert m.finite


def test_the_meter_resets_between_steps_and_counts_passes():
    model, xs = _model_and_micro_batches(accum=2)
    meter = NoiseMeter(model.parameters(), accumulation_steps=2)
    for x in xs:
        (model(x).square().mean() / 2).backward()
    first = meter.measure().small_sq
    model.zero_grad()
    for x in xs:
        (model(x).square().mean() / 2).backward()
    assert meter.measure().small_sq == pytest.approx(first, rel=1e-6)  # not 2x: reset
    model(xs[0]).sum().backward()  # one pass of the two
    with pytest.raises(RuntimeError, match="1 backward passes since the last step, expected "
                                           "accumulation_steps = 2"):
        meter.measure()
    model.zero_grad()
    for x in xs:  # the refused step left nothing behind
        (model(x).square().mean() / 2).backward()
    assert meter.measure().small_sq == pytest.approx(first, rel=1e-6)


def test_clipping_measures_before_it_clips_and_noise_off_has_no_hooks():
    model, xs = _model_and_micro_batches(accum=1)
    meter = NoiseMeter(model.parameters(), accumulation_steps=1, noise=False,
                       max_grad_norm=1e-3)
    assert not meter.measures_noise
    (model(xs[0]).square().mean() * 100).backward()
    unclipped = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    m = meter.measure()
    assert m.small_sq is None and m.loss is None
    assert m.grad_norm == pytest.approx(unclipped, rel=1e-6)
    clipped = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    assert clipped == pytest.approx(1e-3, rel=1e-4)


def test_a_non_finite_loss_or_gradient_is_flagged_not_raised():
    model, xs = _model_and_micro_batches(accum=1)
    meter = NoiseMeter(model.parameters(), accumulation_steps=1, noise=False)
    (model(xs[0]).sum() * math.inf).backward()
    assert not meter.measure().finite
    model.zero_grad()
    model(xs[0]).sum().backward()
    assert not meter.measure(torch.tensor(math.nan)).finite


def test_remove_detaches_the_hooks_and_a_frozen_model_is_refused():
    model, xs = _model_and_micro_batches(accum=1)
    meter = NoiseMeter(model.parameters(), accumulation_steps=1)
    meter.remove()
    model(xs[0]).sum().backward()
    assert meter.measure().small_sq is None
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter that requires a gradient"):
        NoiseMeter(model.parameters(), accumulation_steps=1)


def test_add_grad_sq_squares_a_channels_last_gradient():
    grad = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    into = torch.zeros((), dtype=torch.float64)
    add_grad_sq(into, grad)
    assert into.item() == pytest.approx((grad.double() ** 2).sum().item(), rel=1e-6)
