"""The online noise-scale window on draws with a known gradient mean and covariance."""

import random

import pytest
from helpers import G2, TRACE, draw

from legw.adaptive.noise import OnlineNoiseScale, unbiased_terms


def test_windowed_estimate_recovers_the_true_noise_scale():
    rng = random.Random(0)
    noise = OnlineNoiseScale(micro_batch_size=8, batch_size=64, window=400)
    for _ in range(400):
        out = noise.update(*draw(rng, 8, 64))
    truth = TRACE / G2  # 80
    assert out["b_noise"] == pytest.approx(truth, rel=0.25)
    assert 0 < out["b_noise_stderr"] < 0.5 * truth
    assert abs(out["b_noise"] - truth) < 3 * out["b_noise_stderr"]


def test_each_step_logs_its_unbiased_terms_and_the_window_needs_two_draws():
    noise = OnlineNoiseScale(4, 16, window=3)
    first = noise.update(2.0, 1.0)
    assert set(first) == {"noise_grad_sq", "noise_trace_sigma"}
    g, t = unbiased_terms(2.0, 1.0, 4, 16)
    assert (first["noise_grad_sq"], first["noise_trace_sigma"]) == (g, t)
    assert (g, t) == (pytest.approx(2 / 3), pytest.approx(16 / 3))
    assert "b_noise" in noise.update(2.0, 1.0)


def test_the_window_forgets_old_steps_and_round_trips_through_state():
    noise = OnlineNoiseScale(4, 16, window=2)
    for pair in [(9.0, 1.0), (2.0, 1.0), (2.0, 1.0)]:
        out = noise.update(*pair)
    assert out["b_noise"] == pytest.approx(8.0)  # only the last two (equal) draws count
    other = OnlineNoiseScale(4, 16, window=2)
    assert other.fits(noise.state_dict())
    other.load_state_dict(noise.state_dict())
    assert other.update(2.0, 1.0) == noise.update(2.0, 1.0)
    # norms measured at another micro batch or batch would be read at the wrong sizes
    assert not OnlineNoiseScale(8, 16, window=2).fits(noise.state_dict())
    assert not OnlineNoiseScale(4, 32, window=2).fits(noise.state_dict())
    assert other.fits({"small_sq": [], "big_sq": []})  # saved before the sizes were recorded


@pytest.mark.parametrize("b, B, window", [(16, 16, 5), (0, 16, 5), (4, 16, 1)])
def test_bad_sizes_are_refused(b, B, window):
    with pytest.raises(ValueError):
        OnlineNoiseScale(b, B, window)
