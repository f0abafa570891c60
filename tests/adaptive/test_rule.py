"""Adaptive scaling: the gain on a problem with known variance, and the schedule's position."""

import math
import random

import pytest
from helpers import G2, TRACE, draw

from legw.adaptive import AdaptiveSchedule, gain
from legw.adaptive.noise import OnlineNoiseScale
from legw.schedule import BaseRecipe

BASE = BaseRecipe(base_batch_size=32, peak_lr=0.5, warmup_epochs=0.5, epochs=4)


def test_gain_is_the_adascale_ratio_bounded_by_one_and_k():
    # B_noise = tr / |G|^2 = 100: r = (1 + 100/32) / (1 + 100/256)
    assert gain(1.0, 100.0, 32, 256) == pytest.approx((1 + 100 / 32) / (1 + 100 / 256))
    assert gain(0.0, 5.0, 32, 256) == 8.0      # |G|^2 lost in the noise: r = k
    assert gain(-1.0, 5.0, 32, 256) == 8.0
    assert gain(1.0, -3.0, 32, 256) == 1.0     # no noise: a bigger batch buys nothing
    assert gain(0.0, 0.0, 32, 256) == 1.0


def test_gain_from_the_online_window_on_a_known_problem():
    rng = random.Random(1)
    b, B0, B = 8, 16, 64
    noise = OnlineNoiseScale(b, B, window=300)
    for _ in range(300):
        noise.update(*draw(rng, b, B))
    g, t = noise.means()
    truth = (TRACE / B0 + G2) / (TRACE / B + G2)  # B_noise = 80: r = 6 / 2.25
    assert gain(g, t, B0, B) == pytest.approx(truth, rel=0.15)


def test_schedule_takes_its_gain_from_the_noise_window():
    rng = random.Random(2)
    b, B = 8, 256
    s = AdaptiveSchedule.for_batch(BASE, B, dataset_size=640)
    noise = OnlineNoiseScale(b, B, window=50)
    s.set_gain_from(noise)  # an empty window: the first step trains at gain 1
    assert s.gain == 1.0
    for _ in range(50):
        noise.update(*draw(rng, b, B))
    s.set_gain_from(noise)
    assert s.gain == gain(*noise.means(), 32, B)
    assert 1.0 < s.gain < 8.0


def test_warmup_takes_the_base_steps_then_tau_advances_by_the_gain():
    s = AdaptiveSchedule.for_batch(BASE, 256, dataset_size=640)  # base: 20 steps/epoch
    assert (s.base.warmup_steps, s.base.total_steps) == (10, 80)
    lrs, steps = [], 0
    while not s.done:
        s.set_gain(4.0)
        lrs.append(s.lr())
        s.advance()
        steps += 1
    assert steps == 10 + math.ceil((80 - 10) / 4)   # warmup steps as at B0, then 4 per step
    assert lrs[0] == pytest.approx(0.5 / 10 * 4.0)    # base LR at tau=0 times the gain
    assert lrs[9] == pytest.approx(0.5 * 4.0)         # end of warmup: the peak x 4
    assert lrs[10] == pytest.approx(s.base.lr_at_step(10) * 4.0)
    sqrt = AdaptiveSchedule.for_batch(BASE, 256, dataset_size=640, lr_power=0.5)
    sqrt.set_gain(4.0)
    assert sqrt.lr() == pytest.approx(0.5 / 10 * 2.0)  # P = 0.5: times sqrt(gain)


def test_gain_k_is_legw_and_gain_one_is_the_base_run():
    fast = AdaptiveSchedule.for_batch(BASE, 256, 640)
    slow = AdaptiveSchedule.for_batch(BASE, 256, 640)
    n_fast = n_slow = 0
    while not fast.done:
        fast.set_gain(8.0)
        fast.advance()
        n_fast += 1
    while not slow.done:
        slow.set_gain(1.0)
        assert slow.lr() == pytest.approx(slow.base.lr_at_step(slow.tau))
        slow.advance()
        n_slow += 1
    assert n_slow == 80 and n_fast == 10 + math.ceil(70 / 8)


def test_state_round_trip_and_bad_values():
    s = AdaptiveSchedule.for_batch(BASE, 128, 640, lr_power=1.0)
    s.set_gain(3.0)
    s.advance()
    t = AdaptiveSchedule.for_batch(BASE, 256, 640)  # elastic: another batch, same position
    t.load_state_dict(s.state_dict())
    assert (t.tau, t.gain, t.lr_power) == (1.0, 3.0, 1.0)
    with pytest.raises(ValueError, match="gain: must lie in"):
        s.set_gain(5.0)  # k = 4
    with pytest.raises(ValueError, match="below the base batch"):
        AdaptiveSchedule.for_batch(BASE, 16, 640)
    with pytest.raises(ValueError, match="lr_power"):
        AdaptiveSchedule.for_batch(BASE, 64, 640, lr_power=2)


def test_gain_warmup_is_advanced_by_the_gain_like_adascale():
    s = AdaptiveSchedule.for_batch(BASE, 256, 640, warmup="gain")
    steps = 0
    while not s.done:
        s.set_gain(4.0)
        s.advance()
        steps += 1
    assert steps == 80 // 4  # no warmup steps of its own: 4 base steps per step throughout
    t = AdaptiveSchedule.for_batch(BASE, 256, 640)
    t.load_state_dict(s.state_dict())
    assert t.warmup == "gain"
    old = {k: v for k, v in s.state_dict().items() if k != "warmup"}  # before the option
    t.load_state_dict(old)
    assert t.warmup == "legw"
    with pytest.raises(ValueError, match="warmup: one of legw, gain"):
        AdaptiveSchedule.for_batch(BASE, 64, 640, warmup="none")
